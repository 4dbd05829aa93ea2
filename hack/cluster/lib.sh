# shellcheck shell=bash disable=SC2034
# Settings and helpers shared by hack/cluster/{up,down,status}.sh. Source it; do not run it.
#
# Addressing (defaults; every value can be overridden with the SLIPWAY_CLUSTER_* variable named):
#   bridge slipway0 with gateway 10.244.0.1/24 (POD_CIDR)   created by up.sh before anything starts
#   node IP = the bridge gateway: the kubelet refuses a loopback node IP, and the gateway is the one
#     host address that both the host and every pod reach without touching another interface
#   kube-apiserver   10.244.0.1:16443 (API_PORT)  = Service kubernetes.default 10.96.0.1:443
#   registry (TLS)   10.244.0.1:15443 (REGISTRY_PORT), the same address from the node and from pods
#   kubelet          10.244.0.1:20250, healthz 127.0.0.1:20248
#   etcd             127.0.0.1:12379 (peer 12380); scheduler 127.0.0.1:20259; controller-manager
#     127.0.0.1:20257; kube-proxy healthz 127.0.0.1:20256, metrics 127.0.0.1:20249
# Ports are below the ephemeral range (so a random port picked by another tool cannot take them) and
# outside the NodePort range; none is the upstream default, so a second Kubernetes on the machine
# does not collide either. Nothing listens on eth0 or on a wildcard address.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Not under $SLIPWAY_CACHE: with hostUsers: false, runc mounts the rootfs and volumes from inside
# the pod's user namespace, as an unprivileged host uid, so every directory above the state dir
# must be searchable by others (root's home is 0700). up.sh checks this.
CLUSTER_DIR=${SLIPWAY_CLUSTER_DIR:-/var/lib/slipway-e2e-cluster}
RUNTIME=${SLIPWAY_CLUSTER_RUNTIME:-containerd2}
POD_CIDR=${SLIPWAY_CLUSTER_POD_CIDR:-10.244.0.0/24}
SERVICE_CIDR=${SLIPWAY_CLUSTER_SERVICE_CIDR:-10.96.0.0/24}
BRIDGE=${SLIPWAY_CLUSTER_BRIDGE:-slipway0}
CNI_NETWORK=slipway-e2e
NODE=slipway-node
ETCD_PORT=${SLIPWAY_CLUSTER_ETCD_PORT:-12379}
ETCD_PEER_PORT=${SLIPWAY_CLUSTER_ETCD_PEER_PORT:-12380}
API_PORT=${SLIPWAY_CLUSTER_API_PORT:-16443}
KCM_PORT=${SLIPWAY_CLUSTER_KCM_PORT:-20257}
SCHED_PORT=${SLIPWAY_CLUSTER_SCHED_PORT:-20259}
KUBELET_PORT=${SLIPWAY_CLUSTER_KUBELET_PORT:-20250}
KUBELET_HEALTHZ_PORT=${SLIPWAY_CLUSTER_KUBELET_HEALTHZ_PORT:-20248}
PROXY_HEALTHZ_PORT=${SLIPWAY_CLUSTER_PROXY_HEALTHZ_PORT:-20256}
PROXY_METRICS_PORT=${SLIPWAY_CLUSTER_PROXY_METRICS_PORT:-20249}
REGISTRY_PORT=${SLIPWAY_CLUSTER_REGISTRY_PORT:-15443}
PAUSE_IMAGE=localhost/slipway/pause:3.10

PKI=$CLUSTER_DIR/pki
RUN=$CLUSTER_DIR/run
LOGS=$CLUSTER_DIR/logs
ENV_FILE=$CLUSTER_DIR/cluster.env
CNI_BIN=/usr/lib/cni

# Component names in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler registry containerd kubelet kube-proxy)

case $CLUSTER_DIR in
  /*) ;;
  *) die "SLIPWAY_CLUSTER_DIR must be an absolute path: $CLUSTER_DIR" ;;
esac
# The env file and the containerd/kubelet configs hold unquoted paths.
case $CLUSTER_DIR in *[[:space:]\"\'\$\\]*) die "SLIPWAY_CLUSTER_DIR must not contain spaces or quotes: $CLUSTER_DIR" ;; esac

# ip_offset ADDR N: the IPv4 address N after ADDR (network math for the gateway and service IPs).
ip_offset() {
  local a b c d n
  IFS=. read -r a b c d <<<"$1"
  n=$(( (a << 24 | b << 16 | c << 8 | d) + $2 ))
  echo "$(( n >> 24 & 255 )).$(( n >> 16 & 255 )).$(( n >> 8 & 255 )).$(( n & 255 ))"
}
GATEWAY=$(ip_offset "${POD_CIDR%/*}" 1)
API_SERVICE_IP=$(ip_offset "${SERVICE_CIDR%/*}" 1)
REGISTRY=$GATEWAY:$REGISTRY_PORT
API_URL=https://$GATEWAY:$API_PORT

# Runtime selection: containerd2 = containerd 2.4 + runc 1.5 built from source (user namespaces);
# containerd16 = Debian's containerd 1.6 + runc 1.1, the "older node".
runtime_paths() {
  case $RUNTIME in
    containerd2)
      local dir
      dir=$("$HACK_DIR/cluster/runtime-binaries.sh")
      RT_BIN_DIR=$dir CONTAINERD=$dir/containerd RUNC=$dir/runc CTR=$dir/ctr ;;
    containerd16)
      RT_BIN_DIR=/usr/bin CONTAINERD=/usr/bin/containerd RUNC=/usr/sbin/runc CTR=/usr/bin/ctr
      [ -x "$RUNC" ] || RUNC=/usr/bin/runc ;;
    *) die "SLIPWAY_CLUSTER_RUNTIME must be containerd2 or containerd16, not $RUNTIME" ;;
  esac
  CTRD_DIR=$CLUSTER_DIR/$RUNTIME
}

# pid_start_time PID: the process start time in clock ticks, to tell our process from a later one
# that reused its PID.
# A zombie (exited, not yet reaped by up.sh's shell) counts as gone.
pid_start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  # After "(comm) ": field 3 (state) is the 1st, field 22 (start time) the 20th.
  awk '$1 != "Z" {print $20}' <<<"$stat"
}

# alive NAME: is the process recorded in $RUN/NAME.pid still the one we started?
alive() {
  local f=$RUN/$1.pid pid st
  [ -f "$f" ] || return 1
  read -r pid st <"$f" || return 1
  [ -n "$pid" ] && [ "$(pid_start_time "$pid")" = "$st" ]
}

pid_of() { awk '{print $1}' "$RUN/$1.pid"; }

# rss_mib PID: resident set size in MiB.
rss_mib() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# kubectl_bin: the kubectl built with the cluster binaries.
kubectl_bin() { echo "$SLIPWAY_CACHE/k8s/v$K8S_VERSION/bin/kubectl"; }

# stop_component NAME [TIMEOUT]: SIGTERM the process recorded for NAME (never a name match), wait,
# then SIGKILL. A stale PID file (process gone or PID reused) is just removed.
stop_component() {
  local name=$1 timeout=${2:-20} pid i
  if alive "$name"; then
    pid=$(pid_of "$name")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      alive "$name" || break
      sleep 0.1
    done
    if alive "$name"; then
      log "$name did not exit after ${timeout}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.3
    fi
  fi
  rm -f "$RUN/$name.pid" "$RUN/$name.hash"
}

# Without an explicit choice, keep the runtime of the cluster that runs (tests that do not care
# reuse either); an explicit different choice makes up.sh ask for down.sh first.
if [ -z "${SLIPWAY_CLUSTER_RUNTIME:-}" ] && [ -f "$RUN/runtime" ] && alive containerd; then
  RUNTIME=$(cat "$RUN/runtime")
fi
