#!/usr/bin/env bash
# Installs a pinned Go tool from the module proxy into the cache (once) and prints its path.
#   hack/tool.sh controller-gen|helm
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  controller-gen) pkg=sigs.k8s.io/controller-tools/cmd/controller-gen; ver=v0.23.0 ;;
  helm) pkg=helm.sh/helm/v4/cmd/helm; ver=v4.3.1 ;;
  *) die "unknown tool ${1:-}" ;;
esac
dir=$SLIPWAY_CACHE/tools/$1-$ver
if [ ! -x "$dir/$1" ]; then
  log "installing $pkg@$ver"
  GOBIN=$dir GOFLAGS= go install "$pkg@$ver"
fi
echo "$dir/$1"
