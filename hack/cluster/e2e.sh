#!/usr/bin/env bash
# Runs the end-to-end tests on the test cluster, once per node runtime: containerd 2 (user-namespaced
# pods) and Debian's containerd 1.6 (the "older node"; tests that need user namespaces skip there).
# This is what `make test` runs after the unit tests. Needs root.
#
#   hack/cluster/e2e.sh [go test flags...]     # e.g. -run TestClusterSmoke -v
#
#   SLIPWAY_E2E_RUNTIMES  runtimes to test, in order (default "containerd2 containerd16")
#   SLIPWAY_CLUSTER_KEEP=1  leave the last cluster running (a warm re-run then skips ~10 s of up)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
runtimes=${SLIPWAY_E2E_RUNTIMES:-containerd2 containerd16}
cd "$REPO_ROOT"
status=0
for rt in $runtimes; do
  if [ -f "$RUN/runtime" ] && [ "$(cat "$RUN/runtime")" != "$rt" ]; then
    "$HACK_DIR/cluster/down.sh"
  fi
  SLIPWAY_CLUSTER_RUNTIME=$rt "$HACK_DIR/cluster/up.sh" >/dev/null
  log "go test -tags e2e ./test/e2e/... on $rt"
  SLIPWAY_CLUSTER_ENV=$ENV_FILE go test -tags e2e -count=1 -timeout 30m "$@" ./test/e2e/... || status=1
done
[ "${SLIPWAY_CLUSTER_KEEP:-0}" = 1 ] || "$HACK_DIR/cluster/down.sh"
exit $status
