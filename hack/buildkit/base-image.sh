#!/usr/bin/env bash
# Pushes the test bed's base image, a single-layer OCI image of Debian's busybox-static, to a
# registry: base-image.sh REGISTRY_ADDR [CA_FILE]. Nothing is pulled from outside. The OCI layout is
# made once and cached in $SLIPWAY_CACHE/buildkit/base-image. Prints the pushed reference.
#
# The image has /bin/sh and the busybox applets, /etc/passwd and /etc/group with root and nobody
# (busybox-static has no adduser applet: Dockerfiles append to /etc/passwd), and /tmp 1777.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

reg=${1:?usage: base-image.sh REGISTRY_ADDR [CA_FILE]}
ca=${2:-}
layout=$SLIPWAY_CACHE/buildkit/base-image
ref=$reg/base/busybox:latest

if [ ! -s "$layout/done" ]; then
  log "making the busybox base image in $layout"
  rm -rf "$layout"
  mkdir -p "$layout"
  (
    cd "$layout"
    umoci init --layout oci
    umoci new --image oci:busybox
    umoci unpack --image oci:busybox bundle >/dev/null
    R=bundle/rootfs
    mkdir -p $R/bin $R/etc $R/tmp $R/root $R/proc $R/sys $R/dev $R/var
    chmod 1777 $R/tmp
    cp /bin/busybox $R/bin/busybox
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >$R/etc/passwd
    printf 'root:x:0:\nnobody:x:65534:\n' >$R/etc/group
    umoci repack --image oci:busybox bundle
    umoci config --image oci:busybox --config.env PATH=/bin --config.cmd /bin/sh --architecture amd64 --os linux
    rm -rf bundle
    date -u >done
  )
fi
if [ -n "$ca" ]; then
  certs=$(mktemp -d); trap 'rm -rf "$certs"' EXIT
  cp "$ca" "$certs/ca.crt"
  skopeo copy -q --dest-cert-dir "$certs" "oci:$layout/oci:busybox" "docker://$ref" >&2
else
  skopeo copy -q --dest-tls-verify=false "oci:$layout/oci:busybox" "docker://$ref" >&2
fi
echo "$ref"
