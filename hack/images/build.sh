#!/usr/bin/env bash
# Builds the small images the test cluster needs, from Debian packages and two tiny C programs, into
# $SLIPWAY_CACHE/images (rebuilt only when their inputs change). Prints that directory.
#
#   pause.tar    localhost/slipway/pause:3.10   the pod sandbox process (src/pause.c)
#   testbox.tar  localhost/slipway/testbox:1    busybox + usock (src/usock.c), users root and 1000
#
# Why local: no outside registry is reachable here, and the kubelet needs a pause image before it
# can run any pod.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

IMAGES_DIR=$SLIPWAY_CACHE/images
SRC=$HACK_DIR/images/src
apt_install gcc libc6-dev busybox-static jq

mkdir -p "$IMAGES_DIR"
# Inputs that decide the image contents: the sources, this script, mkimage.sh and busybox itself.
inputs=$(cat "$SRC/pause.c" "$SRC/usock.c" "$0" "$HACK_DIR/images/mkimage.sh" /bin/busybox | sha256sum | cut -d' ' -f1)
if [ -f "$IMAGES_DIR/pause.tar" ] && [ -f "$IMAGES_DIR/testbox.tar" ] &&
  [ "$(cat "$IMAGES_DIR/inputs.sha256" 2>/dev/null)" = "$inputs" ]; then
  echo "$IMAGES_DIR"
  exit 0
fi

w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
log "building pause and testbox images"
mkdir -p "$w/pause" "$w/testbox/bin" "$w/testbox/etc" "$w/testbox/tmp" "$w/testbox/home/user"
gcc -Os -static -o "$w/pause/pause" "$SRC/pause.c"
gcc -Os -static -o "$w/testbox/bin/usock" "$SRC/usock.c"
strip "$w/pause/pause" "$w/testbox/bin/usock"

cp /bin/busybox "$w/testbox/bin/"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$w/testbox/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
  >"$w/testbox/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\nnobody:x:65534:\n' >"$w/testbox/etc/group"
chmod 1777 "$w/testbox/tmp"
chown 1000:1000 "$w/testbox/home/user"

"$HACK_DIR/images/mkimage.sh" "$w/pause" "$IMAGES_DIR/pause.tar" localhost/slipway/pause:3.10 '["/pause"]'
MKIMAGE_KEEP_OWNERS=1 "$HACK_DIR/images/mkimage.sh" "$w/testbox" "$IMAGES_DIR/testbox.tar" localhost/slipway/testbox:1 null '["/bin/sh"]'
echo "$inputs" >"$IMAGES_DIR/inputs.sha256"
echo "$IMAGES_DIR"
