# shellcheck shell=bash
# Shared settings and helpers for the hack/buildkit scripts. Source it; do not run it.
#
# Layout (why it is not under $SLIPWAY_CACHE): the rootless daemon runs as an unprivileged user that
# must traverse every directory on the path to its binaries, config, CA and state. root's home is
# 0700, so the compiled binaries are *cached* under $SLIPWAY_CACHE (which survives between runs) and
# *installed* (copied) into $SLIPWAY_TESTBED_DIR/bin, a 0755 tree under /var/tmp.
#
#   $SLIPWAY_CACHE/buildkit/v$BUILDKIT_VERSION/bin   compiled buildkitd, buildctl (cache)
#   $SLIPWAY_CACHE/buildkit/base-image               busybox OCI layout (cache)
#   $SLIPWAY_TESTBED_DIR/bin                          installed copies, traversable by the daemon user
#   <instance dir>/                                   one running test bed (see up.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

SLIPWAY_TESTBED_DIR=${SLIPWAY_TESTBED_DIR:-/var/tmp/slipway-testbed}
# The unprivileged user that runs rootless buildkitd and the registries.
BK_USER=${SLIPWAY_BUILDKIT_USER:-slipway-bk}
BK_BIN=$SLIPWAY_TESTBED_DIR/bin
BK_PACKAGES=(runc rootlesskit uidmap docker-registry busybox-static umoci skopeo git openssl curl apache2-utils iproute2)

need_root() { [ "$(id -u)" = 0 ] || die "run as root (creates a user, runs daemons as that user, deletes sub-uid-owned state)"; }

bk_uid() { id -u "$BK_USER"; }
bk_gid() { id -g "$BK_USER"; }

# as_bk CMD...: run CMD as the daemon user with a clean environment.
as_bk() {
  runuser -u "$BK_USER" -- env -i HOME="${BK_HOME:-/}" USER="$BK_USER" LOGNAME="$BK_USER" PATH="$BK_BIN:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
    ${XDG_RUNTIME_DIR:+XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR} "$@"
}

# PID files hold "PID STARTTIME": the start time (field 22 of /proc/PID/stat) guards against
# signalling an unrelated process that reused the PID after ours exited.
proc_starttime() { awk '{sub(/.*\) /, ""); print $20}' "/proc/$1/stat" 2>/dev/null; }

write_pidfile() { # write_pidfile FILE PID
  local st; st=$(proc_starttime "$2") || return 1
  printf '%s %s\n' "$2" "$st" >"$1"
}

# pidfile_alive FILE: the process recorded in FILE is still the one we started.
pidfile_alive() {
  [ -s "$1" ] || return 1
  local pid st
  read -r pid st <"$1" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(proc_starttime "$pid")" = "$st" ]
}

# stop_pidfile FILE [GRACE_SECONDS]: TERM the recorded process, KILL it after the grace period,
# remove FILE. Leaves every other process alone.
stop_pidfile() {
  local f=$1 grace=${2:-10} pid st
  [ -s "$f" ] || { rm -f "$f"; return 0; }
  read -r pid st <"$f"
  if pidfile_alive "$f"; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < grace * 10; i++)); do
      pidfile_alive "$f" || break
      sleep 0.1
    done
    if pidfile_alive "$f"; then
      log "pid $pid did not stop after ${grace}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do pidfile_alive "$f" || break; sleep 0.1; done
    fi
  fi
  rm -f "$f"
}

# free_port: a loopback TCP port nobody listens on now. The caller must still handle losing a race
# (the scripts retry with another port when the daemon fails to bind). Avoids the ports the
# Kubernetes test bed uses.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    case $p in 2379|2380|5001|6443|1025[0-9]) continue ;; esac
    if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

# wait_for SECONDS CMD...: retry CMD every 0.1 s until it succeeds.
wait_for() {
  local t=$1; shift
  local i
  for ((i = 0; i < t * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# rm_state DIR: delete a tree that may hold files owned by sub-uids (layers with `chown` inside
# rootless builds end up owned by host uid 100000+N). The unprivileged user cannot delete them;
# root can. Mounts made by the rootless daemon live in its own mount namespace and are gone once
# it has exited, so a plain rm is enough here.
rm_state() {
  [ -e "$1" ] || return 0
  need_root
  rm -rf --one-file-system -- "$1"
}

# bk_exec CMD...: exec CMD as the daemon user without an intermediate process (setpriv execs), so
# that `$!` of `bk_exec ... &` is the daemon's own PID, which goes into the PID file. USER matters:
# buildkitd applies its rootless defaults (paths under XDG_RUNTIME_DIR) only when it runs in a user
# namespace and $USER is set and not root.
bk_exec() {
  exec setpriv --reuid="$(bk_uid)" --regid="$(bk_gid)" --init-groups \
    env -i HOME="${BK_HOME:-/}" USER="$BK_USER" LOGNAME="$BK_USER" PATH="$BK_BIN:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
    ${XDG_RUNTIME_DIR:+XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR} "$@"
}

# instance_dir DIR: validate and normalise an instance directory argument.
instance_dir() {
  [ -n "${1:-}" ] || die "missing instance directory"
  mkdir -p "$1"
  chmod 0755 "$1" # the daemon user and socket clients must traverse it
  (cd "$1" && pwd)
}
