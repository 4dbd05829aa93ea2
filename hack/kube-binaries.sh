#!/usr/bin/env bash
# Builds Kubernetes server binaries, kubectl and etcd from the Go module proxy, offline, and caches
# them. Prints the directory that holds them (usable as KUBEBUILDER_ASSETS).
#
#   hack/kube-binaries.sh kube-apiserver etcd kubectl      # what envtest needs
#   hack/kube-binaries.sh all                              # plus what the test cluster runs
#
# Why a wrapper module: k8s.io/kubernetes' go.mod replaces its staging modules with ./staging/...,
# which is ignored when it is a dependency, so `go install k8s.io/kubernetes/cmd/x@v` fails. The
# wrapper pins every staging module to its published v0.<minor>.<patch> tag instead.
# etcd: Debian's 3.4 is below kube-apiserver 1.36's minimum (3.5.24), so build v3.6 the same way.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN_DIR=$SLIPWAY_CACHE/k8s/v$K8S_VERSION/bin
WORK=$SLIPWAY_CACHE/k8s/v$K8S_VERSION/build
mkdir -p "$BIN_DIR" "$WORK/k8s" "$WORK/etcd"
# One build at a time: tests, make and the cluster scripts may all ask at once.
exec 9>"$SLIPWAY_CACHE/k8s/.lock"
flock 9

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(kube-apiserver etcd kubectl)
if [ "${want[0]}" = all ]; then
  want=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd)
fi

k8s_cmds=()
need_etcd=false
for c in "${want[@]}"; do
  case $c in
    etcd) [ -x "$BIN_DIR/etcd" ] || need_etcd=true ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl)
      [ -x "$BIN_DIR/$c" ] || k8s_cmds+=("$c") ;;
    *) die "unknown binary $c" ;;
  esac
done

export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

if [ ${#k8s_cmds[@]} -gt 0 ]; then
  cd "$WORK/k8s"
  if ! grep -q "k8s.io/kubernetes v$K8S_VERSION" go.mod 2>/dev/null; then
    go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" >/dev/null
    kdir=$(go env GOMODCACHE)/k8s.io/kubernetes@v$K8S_VERSION
    {
      echo "module local/k8sbuild"; echo
      echo "go $(awk '$1=="go"{print $2; exit}' "$kdir/go.mod")"; echo
      echo "require k8s.io/kubernetes v$K8S_VERSION"; echo
      echo "replace ("
      awk '$2=="=>" && $3 ~ /^\.\/staging\// {print $1}' "$kdir/go.mod" | while read -r m; do
        echo "	$m => $m v0.${K8S_VERSION#1.}"
      done
      echo ")"
    } >go.mod
    echo 'package main' >tools.go
  fi
  minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  ld="-s -w"
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  pkgs=()
  for c in "${k8s_cmds[@]}"; do
    pkgs+=("k8s.io/kubernetes/cmd/$c")
  done
  log "building ${k8s_cmds[*]} v$K8S_VERSION (first time: several CPU-minutes)"
  start=$SECONDS
  tmp=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
  # Same tags as upstream's server binaries; static. A failed build leaves nothing half-written.
  go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$tmp/" "${pkgs[@]}"
  mv "$tmp"/* "$BIN_DIR/" && rmdir "$tmp"
  log "built in $((SECONDS - start))s"
fi

if $need_etcd; then
  cd "$WORK/etcd"
  if ! grep -q "go.etcd.io/etcd/server/v3 v$ETCD_VERSION" go.mod 2>/dev/null; then
    rm -f go.mod go.sum
    printf 'module local/etcdbuild\n\ngo 1.26\n' >go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
  fi
  log "building etcd v$ETCD_VERSION"
  start=$SECONDS
  go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/.etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN_DIR/.etcd.tmp" "$BIN_DIR/etcd"
  log "built etcd in $((SECONDS - start))s"
fi

echo "$BIN_DIR"
