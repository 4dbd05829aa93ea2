#!/usr/bin/env bash
# `make demo` and `make demo-down`: Slipway doing its job on this machine, end to end.
#
#   sudo hack/demo/demo.sh up     # cluster, images, fake GitHub + git server, chart, a signed push, followed
#   sudo hack/demo/demo.sh down   # uninstall, stop the fake forge and the cluster
#
# Everything stays running after `up`; a second `up` reuses what runs (warm: well under a minute).
# State: $SLIPWAY_CLUSTER_DIR/demo (the fake App's key, webhook secret, the forge's log and PID).
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root (the test cluster runs kubelet and containerd)"
STATE=$CLUSTER_DIR/demo
say() { printf '\n==> %s\n' "$*"; }

forge_running() { [ -f "$STATE/forge.pid" ] && kill -0 "$(cat "$STATE/forge.pid")" 2>/dev/null; }

up() {
  say "test cluster (hack/cluster/up.sh; first run builds Kubernetes from the module proxy)"
  "$HACK_DIR/cluster/up.sh" | sed -n 's/^KUBECONFIG=/kubeconfig: /p'
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  say "Slipway's images, built with rootless BuildKit and pushed to $SLIPWAY_REGISTRY"
  "$HACK_DIR/images/slipway-images.sh" | sed 's/^/  /'

  install -d -m 0700 "$STATE"
  say "fake GitHub App and git server on $SLIPWAY_CLUSTER_GATEWAY (reachable from pods)"
  (cd "$REPO_ROOT" && go build -o "$STATE/demo" ./hack/demo)
  if ! forge_running; then
    rm -f "$STATE/forge.json"
    (cd "$REPO_ROOT" && setsid "$STATE/demo" forge -state "$STATE" -env "$ENV_FILE" >"$STATE/forge.log" 2>&1 < /dev/null &)
    for _ in $(seq 100); do [ -f "$STATE/forge.json" ] && break; sleep 0.1; done
    [ -f "$STATE/forge.json" ] || { cat "$STATE/forge.log" >&2; die "the fake forge did not start"; }
  fi
  sed 's/^/  /' "$STATE/forge.log"

  say "install the chart, send a signed push of testdata/demo/app, follow it"
  (cd "$REPO_ROOT" && "$STATE/demo" run -state "$STATE" -env "$ENV_FILE" -values "$CLUSTER_DIR/slipway-values.yaml")

  cat <<MSG

Everything is still running:
  export KUBECONFIG=$KUBECONFIG
  $SLIPWAY_CLUSTER_KUBECTL get builds -n slipway-demo-builds
  $SLIPWAY_CLUSTER_KUBECTL logs -n slipway-demo deploy/slipway
Run 'make demo' again for another push; stop everything with 'make demo-down'.
MSG
}

down() {
  if [ -f "$ENV_FILE" ] && "$HACK_DIR/cluster/status.sh" >/dev/null 2>&1; then
    # shellcheck disable=SC1090
    source "$ENV_FILE"
    say "uninstall Slipway"
    helm=$("$HACK_DIR/tool.sh" helm)
    "$helm" uninstall slipway -n slipway-demo --kubeconfig "$KUBECONFIG" --wait 2>/dev/null || true
    "$SLIPWAY_CLUSTER_KUBECTL" --kubeconfig "$KUBECONFIG" delete namespace slipway-demo slipway-demo-builds --ignore-not-found --wait=false
  fi
  if forge_running; then
    say "stop the fake forge"
    pid=$(cat "$STATE/forge.pid")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$STATE/forge.pid" "$STATE/forge.json"
  say "stop the test cluster"
  "$HACK_DIR/cluster/down.sh"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
