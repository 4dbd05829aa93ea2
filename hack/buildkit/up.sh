#!/usr/bin/env bash
# Starts a complete BuildKit test bed instance and writes its description to DIR/env:
#   up.sh [DIR]      (default DIR: $SLIPWAY_TESTBED_DIR/default)
#
# Started, each with a PID file under DIR: an open registry ("open", plain HTTP), a protected
# registry ("tls", HTTPS + htpasswd, CA in DIR/ca/ca.pem), one rootless buildkitd ("main") that
# trusts both; and the busybox base image is pushed to the open registry.
# DIR/env holds KEY=VALUE lines (shell- and Go-readable):
#   SLIPWAY_TESTBED_INSTANCE  DIR
#   BUILDKIT_ADDR             unix://.../buildkitd.sock of the "main" daemon
#   REGISTRY                  host:port of the open registry
#   REGISTRY_TLS              host:port of the protected registry
#   REGISTRY_TLS_USER, REGISTRY_TLS_PASSWORD_FILE, REGISTRY_CA
#   BASE_IMAGE                REGISTRY/base/busybox:latest
#   BUILDKIT_SOCKET_GID       group a non-root client needs to use the sockets
#   BUILDCTL                  path of the buildctl binary
# Runs ensure.sh first unless SLIPWAY_TESTBED_SKIP_ENSURE=1. down.sh DIR stops it all.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

here=$HACK_DIR/buildkit
[ "${SLIPWAY_TESTBED_SKIP_ENSURE:-0}" = 1 ] || "$here/ensure.sh"
dir=$(instance_dir "${1:-$SLIPWAY_TESTBED_DIR/default}")

# An instance started for a process (the Go test helper passes SLIPWAY_TESTBED_OWNER_PID) records
# that owner. Instances whose owner died without stopping them (a `go test` killed by its timeout)
# are stopped and deleted here, so leaks do not pile up. Instances without an owner are left alone.
if [ -n "${SLIPWAY_TESTBED_OWNER_PID:-}" ]; then
  write_pidfile "$dir/owner.pid" "$SLIPWAY_TESTBED_OWNER_PID" || die "owner pid $SLIPWAY_TESTBED_OWNER_PID is not running"
fi
for other in "$SLIPWAY_TESTBED_DIR"/instances/*/; do
  other=${other%/}
  [ -d "$other" ] && [ "$other" != "$dir" ] && [ -e "$other/owner.pid" ] || continue
  pidfile_alive "$other/owner.pid" && continue
  log "stopping the abandoned test bed $other (its owner is gone)"
  "$here/down.sh" "$other" >&2 || true
done

trap 'log "start failed; stopping what was started"; "$here/down.sh" "$dir" >&2 || true' ERR
reg=$("$here/registry.sh" start "$dir" open open)
reg_tls=$("$here/registry.sh" start "$dir" tls tls)
base=$("$here/base-image.sh" "$reg")
addr=$("$here/buildkitd.sh" start "$dir" main)
trap - ERR

cat >"$dir/env.tmp" <<ENV
SLIPWAY_TESTBED_INSTANCE=$dir
BUILDKIT_ADDR=$addr
REGISTRY=$reg
REGISTRY_TLS=$reg_tls
REGISTRY_TLS_USER=$(cat "$dir/registry-tls/user")
REGISTRY_TLS_PASSWORD_FILE=$dir/registry-tls/password
REGISTRY_CA=$dir/ca/ca.pem
BASE_IMAGE=$base
BUILDKIT_SOCKET_GID=$(bk_gid)
BUILDCTL=$BK_BIN/buildctl
ENV
mv -f "$dir/env.tmp" "$dir/env"
cat "$dir/env"
