#!/usr/bin/env bash
# Runs the controller benchmark (see main.go) on the test cluster: brings the cluster up (or reuses
# it), builds and pushes Slipway's images, then runs the Go harness. Run as root on a quiet machine:
#   hack/bench/controller/run.sh -out docs/performance-controller.md
#   hack/bench/controller/run.sh -builds 20 -burst 50 -limit 4 -pods 5
source "$(dirname "${BASH_SOURCE[0]}")/../../lib.sh"
[ "$(id -u)" = 0 ] || die "run as root (the cluster and the image build need it)"
"$REPO_ROOT/hack/cluster/up.sh" >/dev/null
cd "$REPO_ROOT"
exec go run ./hack/bench/controller "$@"
