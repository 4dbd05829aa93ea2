#!/usr/bin/env bash
# Builds Slipway's three images with the project's own rootless BuildKit and pushes them to the test
# cluster's registry. Prints KEY=VALUE lines (sourceable), the images by digest:
#
#   SLIPWAY_IMAGE=10.244.0.1:15443/slipway/slipway@sha256:...            server: static binary on scratch, uid 65532
#   SLIPWAY_BUILDER_IMAGE=10.244.0.1:15443/slipway/slipway-builder@...   `slipway build` + Debian's git, uid 1000
#   SLIPWAY_BUILDKIT_IMAGE=10.244.0.1:15443/slipway/buildkit-rootless@... rootlesskit buildkitd v0.33.1, uid 1000
#   SLIPWAY_BINARY=/var/tmp/slipway-testbed/images/ctx/slipway            the binary inside them (for out-of-cluster runs)
#
#   hack/images/slipway-images.sh            # build (when inputs changed) and push; needs root and a running cluster
#   hack/images/slipway-images.sh --no-push  # build only; prints the OCI archives instead of refs
#
# The same lines go to $SLIPWAY_CLUSTER_DIR/slipway-images.env, and a Helm values file pointing at
# the images to $SLIPWAY_CLUSTER_DIR/slipway-values.yaml.
#
# How: `go build` the static binary (as the Makefile does), assemble a build context from it, our
# buildkitd/buildctl and files of Debian packages (binaries plus the shared libraries `ldd` lists),
# and build the targets of slipway.Dockerfile on a rootless buildkitd of the hack/buildkit test bed
# (its state is kept, so unchanged layers are cached). Outputs are OCI archives; file times are the
# epoch and SOURCE_DATE_EPOCH=0, so the same inputs give the same digests. A target is rebuilt only
# when its part of the context or the Dockerfile changed; all are pushed with hack/images/push.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../buildkit/common.sh"
need_root

push=true
case ${1:-} in
  --no-push) push=false ;;
  "") ;;
  *) die "usage: $0 [--no-push]" ;;
esac

WORK=$SLIPWAY_TESTBED_DIR/images
CTX=$WORK/ctx
OUT=$SLIPWAY_CACHE/images/slipway
DOCKERFILE=$HACK_DIR/images/slipway.Dockerfile
TARGETS=(slipway slipway-builder buildkit-rootless)
CLUSTER_DIR=${SLIPWAY_CLUSTER_DIR:-/var/lib/slipway-e2e-cluster}

"$HACK_DIR/buildkit/ensure.sh" >&2 # runc, rootlesskit, uidmap, busybox-static, git; buildkitd; the daemon user
apt_install ca-certificates libcap2-bin
bk_bin=$("$HACK_DIR/buildkit/build-binaries.sh")

# ------------------------------------------------------------------------------------------- binary
version=$(cd "$REPO_ROOT" && git describe --tags --always --dirty 2>/dev/null || echo dev)
install -d -m 0755 "$WORK" "$OUT"
(cd "$REPO_ROOT" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath \
  -ldflags "-s -w -X github.com/slipway-dev/slipway/internal/version.Version=$version" \
  -o "$WORK/slipway.new" ./cmd/slipway)

# ------------------------------------------------------------------------------------------- context
# put ROOT FILE [DEST]: copy FILE (following symlinks) to ROOT/DEST (default: the same path).
put() {
  local root=$1 src=$2 dst=${3:-$2}
  install -D -m "$(stat -L -c %a "$src")" "$src" "$root$dst"
}
# put_elf ROOT BIN [DEST]: BIN plus every shared library it links (by ldd), libraries under
# /usr/lib/x86_64-linux-gnu and the loader at /lib64, where glibc's loader finds them without
# an ld.so.cache.
put_elf() {
  local root=$1 bin=$2 dst=${3:-$2} lib
  put "$root" "$bin" "$dst"
  while read -r lib; do
    case $lib in
      */ld-linux-x86-64.so.2) put "$root" "$lib" /lib64/ld-linux-x86-64.so.2 ;;
      /*) put "$root" "$lib" "/usr/lib/x86_64-linux-gnu/$(basename "$lib")" ;;
    esac
  done < <(ldd "$bin" 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib64\// {print $1}')
}
etc_files() { # ROOT UID NAME HOME: passwd, group, nsswitch, CA bundle, /tmp
  local root=$1 uid=$2 name=$3 home=$4
  install -d -m 0755 "$root/etc/ssl/certs"
  printf 'root:x:0:0:root:/root:/sbin/nologin\n%s:x:%s:%s:%s:%s:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' \
    "$name" "$uid" "$uid" "$name" "$home" >"$root/etc/passwd"
  printf 'root:x:0:\n%s:x:%s:\nnobody:x:65534:\n' "$name" "$uid" >"$root/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  install -d -m 1777 "$root/tmp"
}

rm -rf "$CTX.new"
install -d -m 0755 "$CTX.new"
mv "$WORK/slipway.new" "$CTX.new/slipway"

# setcap, for the RUN step that gives newuidmap/newgidmap their capabilities (see the Dockerfile).
put_elf "$CTX.new/setcap.tmp" /sbin/setcap
install -d "$CTX.new/setcap/lib" "$CTX.new/setcap/lib64"
mv "$CTX.new/setcap.tmp/sbin/setcap" "$CTX.new/setcap/setcap"
mv "$CTX.new/setcap.tmp/usr/lib/x86_64-linux-gnu/"* "$CTX.new/setcap/lib/"
mv "$CTX.new/setcap.tmp/lib64/ld-linux-x86-64.so.2" "$CTX.new/setcap/lib64/"
rm -rf "$CTX.new/setcap.tmp"

# server: nothing but the non-root user and CA certificates next to the binary.
etc_files "$CTX.new/server" 65532 nonroot /nonexistent

# builder: git for `slipway build`'s fetch (git, and git-remote-http(s) for http/https remotes),
# with an empty template dir so that `git init` does not warn.
b=$CTX.new/builder
etc_files "$b" 1000 user /tmp
put_elf "$b" /usr/bin/git
put_elf "$b" /usr/lib/git-core/git-remote-http
ln -s ../../bin/git "$b/usr/lib/git-core/git"
ln -s git-remote-http "$b/usr/lib/git-core/git-remote-https"
install -d -m 0755 "$b/usr/share/git-core/templates"

# buildkit-rootless: see the Dockerfile.
k=$CTX.new/buildkit
etc_files "$k" 1000 user /home/user
# newuidmap maps the pod's ids 1001..65535 below uid 1000's own: inside a user-namespaced pod
# (hostUsers: false) only 65536 ids exist, so upstream's user:100000:65536 cannot be mapped there.
echo "user:1001:64535" >"$k/etc/subuid"
echo "user:1001:64535" >"$k/etc/subgid"
put "$k" "$bk_bin/buildkitd" /usr/local/bin/buildkitd
put "$k" "$bk_bin/buildctl" /usr/local/bin/buildctl
put_elf "$k" /usr/bin/rootlesskit
put_elf "$k" "$(command -v runc)" /usr/bin/runc
for m in newuidmap newgidmap; do
  put_elf "$k" "/usr/bin/$m"
  chmod 0755 "$k/usr/bin/$m" # no setuid bit: the RUN step gives file capabilities instead
done
install -D -m 0755 /bin/busybox "$k/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ -e "$k/bin/$applet" ] || ln -s busybox "$k/bin/$applet"
done
# /home and /run are root's; only uid 1000's own directories are COPY --chown'ed into them.
install -d -m 0755 "$k/home" "$k/run/user"
install -d -m 0755 "$CTX.new/home-user/.local/share/buildkit" "$CTX.new/home-user/.config/buildkit"
install -d -m 0700 "$CTX.new/run-user"

# Only a target whose inputs changed is rebuilt. Its hash covers names, modes, link targets and
# contents of the context dirs it copies (the slipway binary changes with the source and the
# version string), and the Dockerfile.
declare -A target_dirs=(
  [slipway]="slipway server"
  [slipway-builder]="slipway builder"
  [buildkit-rootless]="buildkit home-user run-user setcap"
)
target_inputs() {
  # shellcheck disable=SC2086 # word splitting of the dir list is intended
  (cd "$1" && { find ${target_dirs[$2]} -printf '%p %m %l\n' | LC_ALL=C sort
    find ${target_dirs[$2]} -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    cat "$DOCKERFILE"; }) | sha256sum | cut -d' ' -f1
}
# Every file's mtime is the epoch, and SOURCE_DATE_EPOCH=0 fixes the image config's dates, so the
# COPY layers are the same for the same context even on a fresh daemon.
find "$CTX.new" -exec touch -h -d @0 {} +
rm -rf "$CTX"
mv "$CTX.new" "$CTX"

addr=""
for t in "${TARGETS[@]}"; do
  inputs=$(target_inputs "$CTX" "$t")
  [ -s "$OUT/$t.tar" ] && [ "$(cat "$OUT/$t.inputs" 2>/dev/null)" = "$inputs" ] && continue
  if [ -z "$addr" ]; then
    # A daemon of its own (state kept between runs, so unchanged layers are cached), stopped
    # again when done. buildctl runs as root, which may use the daemon's 0660 socket.
    addr=$("$HACK_DIR/buildkit/buildkitd.sh" start "$WORK" images)
    trap '"$HACK_DIR/buildkit/buildkitd.sh" stop "$WORK" images >&2 || true' EXIT
  fi
  # RUN steps write files with the time of the build: rewrite-timestamp clamps them to
  # SOURCE_DATE_EPOCH (it recompresses the layers, ~6 s, so only where a RUN step is).
  rewrite=false
  [ "$t" = buildkit-rootless ] && rewrite=true
  log "building $t"
  rm -f "$OUT/$t.inputs"
  "$BK_BIN/buildctl" --addr "$addr" build --progress=quiet --frontend dockerfile.v0 \
    --local context="$CTX" --local dockerfile="$(dirname "$DOCKERFILE")" \
    --opt filename="$(basename "$DOCKERFILE")" --opt target="$t" --opt build-arg:SOURCE_DATE_EPOCH=0 \
    --output "type=oci,dest=$OUT/$t.tar.tmp,name=localhost/slipway/$t:dev,rewrite-timestamp=$rewrite" >&2
  mv "$OUT/$t.tar.tmp" "$OUT/$t.tar"
  echo "$inputs" >"$OUT/$t.inputs"
done
rm -f "$OUT/inputs.sha256" # from an older version of this script

if ! $push; then
  for t in "${TARGETS[@]}"; do echo "$t=$OUT/$t.tar"; done
  echo "SLIPWAY_BINARY=$CTX/slipway"
  exit 0
fi

# ------------------------------------------------------------------------------------------- push
declare -A ref
ref[slipway]=$("$HACK_DIR/images/push.sh" "$OUT/slipway.tar" slipway/slipway:dev)
ref[slipway-builder]=$("$HACK_DIR/images/push.sh" "$OUT/slipway-builder.tar" slipway/slipway-builder:dev)
ref[buildkit-rootless]=$("$HACK_DIR/images/push.sh" "$OUT/buildkit-rootless.tar" "slipway/buildkit-rootless:v$BUILDKIT_VERSION")
lines="SLIPWAY_IMAGE=${ref[slipway]}
SLIPWAY_BUILDER_IMAGE=${ref[slipway-builder]}
SLIPWAY_BUILDKIT_IMAGE=${ref[buildkit-rootless]}
SLIPWAY_BINARY=$CTX/slipway"
if [ -d "$CLUSTER_DIR" ]; then
  echo "$lines" >"$CLUSTER_DIR/slipway-images.env.tmp"
  mv "$CLUSTER_DIR/slipway-images.env.tmp" "$CLUSTER_DIR/slipway-images.env"
  # For the Helm chart on the test cluster (charts/slipway/values.yaml keys): every image by
  # digest, so that a rebuilt image is what runs.
  cat >"$CLUSTER_DIR/slipway-values.yaml" <<EOF
# Written by hack/images/slipway-images.sh: Slipway's images in the test cluster's registry.
image:
  repository: ${ref[slipway]%@*}
  tag: dev
  digest: ${ref[slipway]#*@}
build:
  builderImage: ${ref[slipway-builder]}
  buildkitImage: ${ref[buildkit-rootless]}
  registryPrefix: ${ref[slipway]%%/*}/builds
EOF
fi
echo "$lines"
