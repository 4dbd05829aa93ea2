#!/usr/bin/env bash
# Builds the test cluster's container runtime, containerd v2.4.x (+ shim, ctr) and runc v1.5.x, from
# the Go module proxy and caches them. Prints the directory that holds them.
#
#   hack/cluster/runtime-binaries.sh
#
# Why build them: Debian 12 ships containerd 1.6 + runc 1.1, which cannot run user-namespaced pods
# (hostUsers: false) and which kubelet 1.37 will no longer support. Both projects build with plain
# `go install` (no replace directives). runc needs cgo and libseccomp for its seccomp filter.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

CONTAINERD_VERSION=${CONTAINERD_VERSION:-2.4.2}
RUNC_VERSION=${RUNC_VERSION:-1.5.2}
BIN_DIR=$SLIPWAY_CACHE/runtime/containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION/bin

have_all() {
  local b
  for b in containerd containerd-shim-runc-v2 ctr runc; do [ -x "$BIN_DIR/$b" ] || return 1; done
}

if ! have_all; then
  apt_install gcc libc6-dev libseccomp-dev pkg-config
  mkdir -p "$BIN_DIR"
  tmp=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOBIN=$tmp
  start=$SECONDS
  log "building runc v$RUNC_VERSION (cgo, seccomp)"
  # Run outside any module so `go install pkg@version` ignores the caller's go.mod.
  (cd "$tmp" && CGO_ENABLED=1 go install -trimpath -tags seccomp \
    -ldflags "-s -w -X main.version=$RUNC_VERSION" "github.com/opencontainers/runc@v$RUNC_VERSION")
  log "building containerd v$CONTAINERD_VERSION"
  (cd "$tmp" && CGO_ENABLED=0 go install -trimpath -tags no_btrfs \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd@v$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@v$CONTAINERD_VERSION")
  # A failed build leaves nothing half-written in BIN_DIR.
  mv "$tmp"/* "$BIN_DIR/"
  log "built runtime in $((SECONDS - start))s"
fi
echo "$BIN_DIR"
