#!/usr/bin/env bash
# Prepares everything the BuildKit test bed needs, idempotently (run as root; a warm run takes
# about a second and changes nothing):
#   - Debian packages: runc, rootlesskit, uidmap, docker-registry, busybox-static, umoci, skopeo, ...
#   - buildkitd and buildctl v$BUILDKIT_VERSION (built once by build-binaries.sh, cached under
#     $SLIPWAY_CACHE) installed into $SLIPWAY_TESTBED_DIR/bin, which the daemon user can traverse
#   - the unprivileged daemon user $SLIPWAY_BUILDKIT_USER (default slipway-bk) with sub-uid and
#     sub-gid ranges for rootless user namespaces
# `make test` runs this before `go test`; tests never compile BuildKit themselves.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

install -d -m 0755 "$SLIPWAY_TESTBED_DIR" "$BK_BIN" "$SLIPWAY_TESTBED_DIR/instances"
exec 9>"$SLIPWAY_TESTBED_DIR/.ensure.lock"
flock 9 # parallel `go test` packages may run this at the same time

apt_install "${BK_PACKAGES[@]}"

src=$("$HACK_DIR/buildkit/build-binaries.sh")
for b in buildkitd buildctl; do
  if ! cmp -s "$src/$b" "$BK_BIN/$b"; then
    # copy + rename: overwriting in place fails with ETXTBSY while a daemon runs the old binary
    cp "$src/$b" "$BK_BIN/.$b.tmp"
    chmod 0755 "$BK_BIN/.$b.tmp"
    mv -f "$BK_BIN/.$b.tmp" "$BK_BIN/$b"
    log "installed $b into $BK_BIN"
  fi
done

if ! id "$BK_USER" >/dev/null 2>&1; then
  log "creating user $BK_USER"
  useradd -m -U -s /usr/sbin/nologin -c "Slipway BuildKit test bed" "$BK_USER"
fi
# Debian 12's useradd normally adds the sub-id ranges itself; append only when missing (appending
# twice creates overlapping ranges).
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if ! grep -q "^$BK_USER:" "$f"; then
    start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' "$f")
    echo "$BK_USER:$start:65536" >>"$f"
    log "added $BK_USER:$start:65536 to $f"
  fi
done
# newuidmap/newgidmap must be setuid root for rootlesskit (uidmap ships them that way).
[ -u /usr/bin/newuidmap ] || die "/usr/bin/newuidmap is not setuid"
