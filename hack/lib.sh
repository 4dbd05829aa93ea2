# shellcheck shell=bash
# Common settings for hack/ scripts. Source it; do not run it.
#
# Everything expensive (compiled Kubernetes, etcd and BuildKit binaries, images) is cached under
# SLIPWAY_CACHE so that a warm `make test` rebuilds nothing. The default honours XDG_CACHE_HOME.

set -euo pipefail

SLIPWAY_CACHE=${SLIPWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slipway}
K8S_VERSION=${K8S_VERSION:-1.36.3}
ETCD_VERSION=${ETCD_VERSION:-3.6.8}
BUILDKIT_VERSION=${BUILDKIT_VERSION:-0.33.1}
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)

log() { printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# apt_install installs Debian packages that are missing, running `apt-get update` at most once per
# boot: package lists are only needed when something has to be installed.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "need root to install Debian packages: ${missing[*]}"
  local stamp=/run/slipway-apt-updated
  if [ ! -e "$stamp" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    touch "$stamp"
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
