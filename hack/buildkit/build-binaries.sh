#!/usr/bin/env bash
# Builds buildkitd and buildctl v$BUILDKIT_VERSION from the Go module proxy and caches them in
# $SLIPWAY_CACHE/buildkit/v$BUILDKIT_VERSION/bin. Prints that directory. A warm run does nothing.
#
# Why a wrapper module: `go install github.com/moby/buildkit/cmd/buildkitd@v` is refused because
# BuildKit's go.mod has exclude directives. Copying BuildKit's own go.mod/go.sum into a wrapper
# module keeps exactly the dependency versions BuildKit was released with.
# Cold: ~35 s of `go get` plus ~500 s of `go build` on 2 cores; the Go caches grow by ~7 GB.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

V=v$BUILDKIT_VERSION
OUT=$SLIPWAY_CACHE/buildkit/$V/bin
WRAP=$SLIPWAY_CACHE/buildkit/$V/wrap

have() {
  [ -x "$OUT/buildkitd" ] && [ -x "$OUT/buildctl" ] &&
    "$OUT/buildkitd" --version 2>/dev/null | grep -q " $V\b"
}

if ! have; then
  command -v go >/dev/null || die "go toolchain not found"
  log "building buildkitd and buildctl $V into $OUT (about 9 min on 2 cores with cold Go caches)"
  export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
  rm -rf "$WRAP"
  mkdir -p "$WRAP" "$OUT"
  cd "$WRAP"
  go mod download -json "github.com/moby/buildkit@$V" >/dev/null
  src=$(go env GOMODCACHE)/github.com/moby/buildkit@$V
  cp "$src/go.mod" go.mod
  cp "$src/go.sum" go.sum
  chmod u+w go.mod go.sum
  sed -i '1s#^module .*#module local/bkwrap#' go.mod
  go mod edit -require="github.com/moby/buildkit@$V"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "github.com/moby/buildkit/cmd/buildctl"\n\t_ "github.com/moby/buildkit/cmd/buildkitd"\n)\n' >tools.go
  go get "github.com/moby/buildkit/cmd/buildkitd@$V" "github.com/moby/buildkit/cmd/buildctl@$V"
  # Build into a temporary dir and rename, so an interrupted build never leaves a half binary
  # that `have` would accept.
  tmp=$(mktemp -d "$OUT/.tmp.XXXXXX")
  go build -trimpath -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$V" \
    -o "$tmp/" github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
  mv -f "$tmp/buildkitd" "$tmp/buildctl" "$OUT/"
  rmdir "$tmp"
  have || die "built binaries do not report $V"
fi
echo "$OUT"
