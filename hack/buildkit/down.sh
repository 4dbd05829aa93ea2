#!/usr/bin/env bash
# Stops everything a test bed instance started (by the PID files under DIR, never by process name)
# and deletes the instance, sub-uid-owned daemon state included:
#   down.sh [DIR]             (default DIR: $SLIPWAY_TESTBED_DIR/default)
#   KEEP=1 down.sh [DIR]      stop only; keep state, registry data and env
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

here=$HACK_DIR/buildkit
dir=${1:-$SLIPWAY_TESTBED_DIR/default}
[ -d "$dir" ] || { log "no instance at $dir"; exit 0; }
dir=$(cd "$dir" && pwd)
rm -f "$dir/env"
# Daemons first: a daemon mid-push would otherwise log errors about the vanished registry.
for d in "$dir"/buildkitd-*/; do
  [ -d "$d" ] || continue
  n=$(basename "$d"); n=${n#buildkitd-}
  "$here/buildkitd.sh" stop "$dir" "$n"
done
for r in "$dir"/registry-*/; do
  [ -d "$r" ] || continue
  n=$(basename "$r"); n=${n#registry-}
  "$here/registry.sh" stop "$dir" "$n"
done
if [ "${KEEP:-0}" != 1 ]; then
  rm_state "$dir"
  log "removed $dir"
fi
