#!/usr/bin/env bash
# Brings up (or reuses) the offline single-node Kubernetes cluster for Slipway's end-to-end tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a TLS registry, containerd + runc,
# kubelet and kube-proxy, all as plain processes of this machine (no VM, no kind, nothing simulated).
#
#   hack/cluster/up.sh            # idempotent: a running cluster is reused in about a second
#
# Environment:
#   SLIPWAY_CLUSTER_RUNTIME  containerd2 (default, or the running cluster's: containerd 2.4 + runc 1.5 from source, runs
#                            hostUsers:false pods) or containerd16 (Debian's containerd 1.6 + runc 1.1,
#                            the "older node"). Switching needs hack/cluster/down.sh first.
#   SLIPWAY_CLUSTER_DIR      state (PKI, configs, etcd data, logs, PID files); default
#                            /var/lib/slipway-e2e-cluster
#   SLIPWAY_CLUSTER_ALLOW_PRIVILEGED=1  let the API server admit privileged pods (off: Slipway's
#                            build pods must not need them, and the test cluster proves it)
#   other SLIPWAY_CLUSTER_* variables: addresses and ports, see hack/cluster/lib.sh
#
# Prints, and writes to $SLIPWAY_CLUSTER_DIR/cluster.env (sourceable), KUBECONFIG, the registry
# address and its CA. Needs root: it creates a bridge, iptables rules, mounts and cgroups.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

started=$(date +%s.%N)
elapsed() { awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1fs", b - a}'; }
[ "$(id -u)" = 0 ] || die "must run as root (bridge, iptables, mounts, cgroups)"
[ "$(uname -m)" = x86_64 ] || die "only amd64 is supported (images are built for it)"

# ------------------------------------------------------------------------------------------- packages
apt_install containernetworking-plugins iptables conntrack openssl curl jq iproute2 \
  docker-registry skopeo gcc libc6-dev busybox-static util-linux
[ "$RUNTIME" = containerd16 ] && apt_install containerd runc
[ -x "$CNI_BIN/bridge" ] || die "CNI plugins not found in $CNI_BIN"

mkdir -p "$PKI" "$RUN" "$LOGS"
# User-namespaced pods: runc resolves the state dir's paths as an unprivileged uid (see lib.sh).
d=$CLUSTER_DIR
while [ "$d" != / ]; do
  [ "$(( 0$(stat -c %a "$d") & 1 ))" = 1 ] ||
    die "$d is not searchable by others (mode $(stat -c %a "$d")): user-namespaced pods cannot start under it; choose another SLIPWAY_CLUSTER_DIR"
  d=$(dirname "$d")
done
chmod 0755 "$CLUSTER_DIR"
if [ -f "$RUN/runtime" ] && [ "$(cat "$RUN/runtime")" != "$RUNTIME" ]; then
  for c in containerd kubelet; do
    alive "$c" && die "the cluster runs $(cat "$RUN/runtime"), not $RUNTIME: run hack/cluster/down.sh first"
  done
fi

# ------------------------------------------------------------------------------------------- binaries
# Cached after the first run; kube-binaries.sh serializes concurrent builds itself.
kube_bin=$("$HACK_DIR/kube-binaries.sh" all)
runtime_paths
images_dir=$("$HACK_DIR/images/build.sh")
KUBECTL=$kube_bin/kubectl

# ------------------------------------------------------------------------------------------- helpers
# hash_of ARGS... -- FILES...: a digest of a command line and config files, to restart a component
# whose configuration changed since it was started.
hash_of() {
  local files=() args=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  files=("$@")
  {
    printf '%s\0' "${args[@]}"
    if [ ${#files[@]} -gt 0 ]; then cat "${files[@]}"; fi
  } | sha256sum | cut -d' ' -f1
}

# write_file PATH: writes stdin to PATH only if the content differs. kube-proxy exits when its
# config file is written to, even with the same content.
write_file() {
  cat >"$1.tmp"
  if cmp -s "$1.tmp" "$1"; then rm "$1.tmp"; else mv "$1.tmp" "$1"; fi
}

declare -A restarted=()
# start NAME [CONFIG_FILE...] -- CMD...: runs CMD in its own session with output to $LOGS/NAME.log
# and records "PID STARTTIME" in $RUN/NAME.pid. A running component is kept if its command line and
# config files are unchanged, restarted otherwise.
start() {
  local name=$1 files=() h pid
  shift
  while [ "$1" != -- ]; do files+=("$1"); shift; done
  shift
  h=$(hash_of "$@" -- "${files[@]}")
  if alive "$name"; then
    if [ "$(cat "$RUN/$name.hash" 2>/dev/null)" = "$h" ]; then
      return 0
    fi
    log "$name: configuration changed, restarting"
    stop_component "$name" 30
  fi
  log "starting $name"
  rm -f "$RUN/$name.pid.tmp"
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$RUN/$name.pid.tmp" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  for _ in $(seq 100); do [ -s "$RUN/$name.pid.tmp" ] && break; sleep 0.05; done
  pid=$(cat "$RUN/$name.pid.tmp" 2>/dev/null) || die "$name did not start"
  echo "$pid $(pid_start_time "$pid")" >"$RUN/$name.pid"
  rm -f "$RUN/$name.pid.tmp"
  echo "$h" >"$RUN/$name.hash"
  restarted[$name]=1
}

# waitfor NAME DESCRIPTION TIMEOUT CMD...: polls CMD; fails early if component NAME died.
waitfor() {
  local name=$1 desc=$2 timeout=$3 deadline
  shift 3
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$name" ] && ! alive "$name"; then
      tail -n 20 "$LOGS/$name.log" >&2 || true
      die "$name exited while waiting for $desc (log: $LOGS/$name.log)"
    fi
    [ $SECONDS -lt $deadline ] || die "timed out after ${timeout}s waiting for $desc (logs: $LOGS)"
    sleep 0.2
  done
}

# ------------------------------------------------------------------------------------------- conflicts
# Refuse to start on top of something else that holds one of our ports on our addresses (or on a
# wildcard address, which covers ours). Ports held by our own running components are fine.
check_port() { # NAME PORT ADDRESS
  local name=$1 port=$2 addr=$3 line pids p
  while read -r line; do
    [ -n "$line" ] || continue
    local laddr=${line%% *}
    laddr=${laddr%:*}
    case $laddr in "$addr" | 0.0.0.0 | '*' | '[::]' | '[::ffff:'"$addr"']') ;; *) continue ;; esac
    pids=$(grep -o 'pid=[0-9]*' <<<"$line" | cut -d= -f2 || true)
    for p in $pids; do
      alive "$name" && [ "$p" = "$(pid_of "$name")" ] && continue 2
    done
    die "port $addr:$port (for $name) is held by a process up.sh did not start: $line"
  done < <(ss -Hltnp "sport = :$port" | awk '{print $4, $0}')
}
check_port etcd "$ETCD_PORT" 127.0.0.1
check_port etcd "$ETCD_PEER_PORT" 127.0.0.1
check_port kube-apiserver "$API_PORT" "$GATEWAY"
check_port kube-controller-manager "$KCM_PORT" 127.0.0.1
check_port kube-scheduler "$SCHED_PORT" 127.0.0.1
check_port kubelet "$KUBELET_PORT" "$GATEWAY"
check_port kubelet "$KUBELET_HEALTHZ_PORT" 127.0.0.1
check_port kube-proxy "$PROXY_HEALTHZ_PORT" 127.0.0.1
check_port kube-proxy "$PROXY_METRICS_PORT" 127.0.0.1
check_port registry "$REGISTRY_PORT" "$GATEWAY"

# The bridge is ours only if up.sh created it; the pod CIDR must not be routed anywhere else.
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  [ -f "$RUN/bridge.created" ] || die "a network interface named $BRIDGE exists and was not created by up.sh"
elif ip -4 route show | awk '{print $1}' | grep -qx "$POD_CIDR"; then
  die "pod CIDR $POD_CIDR is already routed: $(ip -4 route show "$POD_CIDR")"
fi
ip -4 addr show | grep -q "inet $GATEWAY/" && ! ip -4 addr show dev "$BRIDGE" 2>/dev/null | grep -q "inet $GATEWAY/" &&
  die "address $GATEWAY is already used by another interface"

# ------------------------------------------------------------------------------------------- host state
# Host paths the components create whatever their configuration (kubelet: device-plugin socket and
# /var/log/containers symlinks; containerd: shim sockets under /run/containerd; containerd 1.6:
# network namespaces in /run/netns, libcni cache in /var/lib/cni). down.sh removes the ones that did
# not exist before, once empty.
for p in /var/lib/kubelet /var/log/containers /var/lib/cni /run/netns /run/containerd; do
  [ -e "$p" ] || grep -qx "$p" "$RUN/host-paths.created" 2>/dev/null || echo "$p" >>"$RUN/host-paths.created"
done

# Kernel settings that the kubelet (protectKernelDefaults off), the bridge plugin (ip_forward) and
# kube-proxy may change; saved once per up/down cycle, restored by down.sh.
if [ ! -f "$RUN/sysctl.saved" ]; then
  for k in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys \
    kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet \
    net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.netfilter.nf_conntrack_max \
    net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait; do
    v=$(sysctl -n "$k" 2>/dev/null) && echo "$k=$v"
  done >"$RUN/sysctl.saved.tmp"
  mv "$RUN/sysctl.saved.tmp" "$RUN/sysctl.saved"
fi

# The bridge exists before anything starts, so the API server, kubelet and registry can bind to its
# gateway address; the CNI bridge plugin adopts it (same name, same gateway address).
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "creating bridge $BRIDGE ($GATEWAY/${POD_CIDR#*/})"
  touch "$RUN/bridge.created"
  ip link add name "$BRIDGE" type bridge
fi
ip -4 addr show dev "$BRIDGE" | grep -q "inet $GATEWAY/" || ip addr add "$GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
# A fixed MAC (locally administered, from the gateway address). Without one, a Linux bridge takes
# the lowest MAC of its ports, so the gateway's MAC changes whenever a pod's veth comes or goes,
# and pods that cached the old one lose the node (API server, registry, git) for 30-60 s, until
# their ARP entry expires: seen as "dial tcp 10.244.0.1:15443: i/o timeout" in build pods.
if [ "$(cat "/sys/class/net/$BRIDGE/addr_assign_type")" != 3 ]; then
  IFS=. read -r g1 g2 g3 g4 <<<"$GATEWAY"
  ip link set dev "$BRIDGE" address "$(printf '02:00:%02x:%02x:%02x:%02x' "$g1" "$g2" "$g3" "$g4")"
fi
ip link set "$BRIDGE" up

# ------------------------------------------------------------------------------------------- PKI
# One cluster CA (ECDSA P-256: fast to generate) and a separate registry CA, so that trusting the
# registry (containerd, BuildKit, skopeo) does not mean trusting cluster credentials.
new_ca() { # NAME CN
  [ -f "$PKI/$1.crt" ] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -keyout "$PKI/$1.key" -out "$PKI/$1.crt" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}
new_cert() { # NAME CA SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
  local name=$1 ca=$2 subj=$3 eku=$4 san=${5:-} ext
  if [ -f "$PKI/$name.crt" ]; then
    # Reissue a serving certificate whose SANs no longer match (e.g. a changed address).
    [ -z "$san" ] || [ "$(cat "$PKI/$name.san" 2>/dev/null)" = "$san" ] && return 0
  fi
  ext=$(mktemp)
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' "$eku" >"$ext"
  [ -n "$san" ] && echo "subjectAltName=$san" >>"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$name.key" \
    -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial -days 3650 \
    -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$ext" "$PKI/$name.csr"
  echo "$san" >"$PKI/$name.san"
}
if [ ! -f "$PKI/sa.key" ] || [ ! -f "$PKI/registry.crt" ]; then log "generating certificates"; fi
new_ca ca slipway-e2e-cluster-ca
new_ca registry-ca slipway-e2e-registry-ca
if [ ! -f "$PKI/sa.key" ]; then
  openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$PKI/sa.key"
  openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
new_cert apiserver ca /CN=kube-apiserver serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$GATEWAY,IP:$API_SERVICE_IP,IP:127.0.0.1"
new_cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
new_cert admin ca "/O=system:masters/CN=kubernetes-admin" clientAuth
new_cert controller-manager ca /CN=system:kube-controller-manager clientAuth
new_cert scheduler ca /CN=system:kube-scheduler clientAuth
new_cert kube-proxy ca /CN=system:kube-proxy clientAuth
new_cert kubelet-client ca "/O=system:nodes/CN=system:node:$NODE" clientAuth
new_cert kubelet-server ca "/CN=$NODE" serverAuth "DNS:$NODE,IP:$GATEWAY"
new_cert registry registry-ca /CN=slipway-e2e-registry serverAuth "IP:$GATEWAY"

kubeconfig() { # NAME CERT
  local f=$CLUSTER_DIR/$1.kubeconfig
  umask 077
  cat >"$f.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: slipway-e2e
  cluster:
    server: $API_URL
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$2.crt")
    client-key-data: $(base64 -w0 <"$PKI/$2.key")
contexts:
- name: $1@slipway-e2e
  context: {cluster: slipway-e2e, user: $1}
current-context: $1@slipway-e2e
EOF
  umask 022
  if cmp -s "$f.tmp" "$f"; then rm "$f.tmp"; else mv "$f.tmp" "$f"; fi
}
kubeconfig admin admin
kubeconfig controller-manager controller-manager
kubeconfig scheduler scheduler
kubeconfig kube-proxy kube-proxy
kubeconfig kubelet kubelet-client
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig

# ------------------------------------------------------------------------------------------- etcd
start etcd -- "$kube_bin/etcd" --name slipway-e2e --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "slipway-e2e=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
  --quota-backend-bytes 2147483648 --log-level warn
waitfor etcd "etcd health" 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

# ------------------------------------------------------------------------------------------- kube-apiserver
# Bound to the bridge gateway only: the host reaches it there, and pods through the kubernetes
# Service (kube-proxy DNATs 10.96.0.1:443 to the advertised gateway address).
allow_privileged=false
[ "${SLIPWAY_CLUSTER_ALLOW_PRIVILEGED:-0}" = 1 ] && allow_privileged=true
start kube-apiserver -- "$kube_bin/kube-apiserver" \
  --bind-address="$GATEWAY" --advertise-address="$GATEWAY" --secure-port="$API_PORT" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction --allow-privileged="$allow_privileged" --profiling=false --v=1
waitfor kube-apiserver "kube-apiserver /readyz" 90 \
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$API_URL/readyz"

# ------------------------------------------------------------------------------------------- controllers
start kube-controller-manager -- "$kube_bin/kube-controller-manager" \
  --kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false --use-service-account-credentials=true \
  --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" --controllers='*,-nodeipam' \
  --flex-volume-plugin-dir="$CLUSTER_DIR/kcm-flexvolume" --profiling=false --v=1
start kube-scheduler -- "$kube_bin/kube-scheduler" --kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" --authorization-kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --leader-elect=false --profiling=false --v=1

# ------------------------------------------------------------------------------------------- registry
# Debian's docker-registry (distribution 2.8) with TLS on the bridge gateway: the one address that
# both the kubelet/containerd on the node and a builder inside a pod can reach.
mkdir -p "$CLUSTER_DIR/registry/data" "$CLUSTER_DIR/registry/tls" "$CLUSTER_DIR/registry/certs.d"
install -m 0644 "$PKI/registry.crt" "$CLUSTER_DIR/registry/tls/tls.crt"
install -m 0600 "$PKI/registry.key" "$CLUSTER_DIR/registry/tls/tls.key"
install -m 0644 "$PKI/registry-ca.crt" "$CLUSTER_DIR/registry/certs.d/ca.crt"  # skopeo --dest-cert-dir
[ -f "$CLUSTER_DIR/registry/secret" ] || head -c 32 /dev/urandom | base64 -w0 >"$CLUSTER_DIR/registry/secret"
write_file "$CLUSTER_DIR/registry/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $CLUSTER_DIR/registry/data}
  delete: {enabled: true}
  # As in upstream's default config. Without it every blob check reads the repository's link
  # file, and the filesystem driver rewrites that file in place (truncate, then write): when
  # BuildKit pushes an image and its registry cache at once, both mount the same base layer
  # into the repository, and a manifest PUT that reads the link in between fails with
  # "blob unknown" / DIGEST_INVALID (seen in about 1 of 25 first builds).
  cache: {blobdescriptor: inmemory}
http:
  addr: $REGISTRY
  secret: $(cat "$CLUSTER_DIR/registry/secret")
  tls: {certificate: $CLUSTER_DIR/registry/tls/tls.crt, key: $CLUSTER_DIR/registry/tls/tls.key}
EOF
# It runs as root: the state dir usually sits under root's 0700 home.
start registry "$CLUSTER_DIR/registry/config.yml" "$PKI/registry.crt" -- \
  /usr/bin/docker-registry serve "$CLUSTER_DIR/registry/config.yml"
waitfor registry "registry https://$REGISTRY/v2/" 20 curl -sf --cacert "$PKI/registry-ca.crt" "https://$REGISTRY/v2/"

# ------------------------------------------------------------------------------------------- containerd
# The CNI conflist must exist before containerd starts, or the CRI reports NetworkReady=false.
mkdir -p "$CLUSTER_DIR/cni/net.d" "$CTRD_DIR/certs.d/$REGISTRY"
write_file "$CLUSTER_DIR/cni/net.d/10-slipway.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$CLUSTER_DIR/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$GATEWAY"}]], "routes": [{"dst": "0.0.0.0/0"}]}}
  ]
}
EOF
# What a real cluster does too: trust the registry's CA per registry host, in hosts.toml.
write_file "$CTRD_DIR/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "https://$REGISTRY"
[host."https://$REGISTRY"]
  capabilities = ["pull", "resolve", "push"]
  ca = "$PKI/registry-ca.crt"
EOF
if [ "$RUNTIME" = containerd2 ]; then
  # Config version 3. NRI is off (its socket path is global); pod netns stay under our state dir.
  write_file "$CTRD_DIR/config.toml" <<EOF
version = 3
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CTRD_DIR/containerd.sock"
[ttrpc]
  address = "$CTRD_DIR/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$CTRD_DIR/certs.d"
[plugins."io.containerd.cri.v1.runtime"]
  # Root here lacks CAP_SYS_RESOURCE, so runc cannot set the negative oom_score_adj the CRI asks
  # for ("can't get final child's PID from pipe: EOF"): clamp to containerd's own value.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
        Root = "$CTRD_DIR/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$CLUSTER_DIR/cni/net.d"
EOF
else
  write_file "$CTRD_DIR/config.toml" <<EOF
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CTRD_DIR/containerd.sock"
[ttrpc]
  address = "$CTRD_DIR/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # See the containerd 2 config above: root lacks CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
        Root = "$CTRD_DIR/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CTRD_DIR/certs.d"
EOF
fi
echo "$RUNTIME" >"$RUN/runtime"
echo "$CTR" >"$RUN/ctr"
# PATH: containerd finds containerd-shim-runc-v2 through it.
start containerd "$CTRD_DIR/config.toml" -- env PATH="$RT_BIN_DIR:/usr/sbin:/usr/bin:/sbin:/bin" \
  "$CONTAINERD" --config "$CTRD_DIR/config.toml"
ctr_() { "$CTR" --address "$CTRD_DIR/containerd.sock" -n k8s.io "$@"; }
waitfor containerd "containerd" 30 ctr_ version
if ! ctr_ images ls -q 2>/dev/null | grep -qx "$PAUSE_IMAGE" || [ "$images_dir/pause.tar" -nt "$CTRD_DIR/pause.imported" ]; then
  log "importing $PAUSE_IMAGE"
  ctr_ images import "$images_dir/pause.tar" >/dev/null 2>&1
  touch "$CTRD_DIR/pause.imported"
fi

# ------------------------------------------------------------------------------------------- kubelet
mkdir -p "$CLUSTER_DIR/kubelet"
write_file "$CLUSTER_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $GATEWAY
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet-server.crt"
tlsPrivateKeyFile: "$PKI/kubelet-server.key"
containerRuntimeEndpoint: "unix://$CTRD_DIR/containerd.sock"
# This kernel runs cgroup v1 (hybrid), which kubelet 1.36 refuses unless told otherwise.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: "$CLUSTER_DIR/pod-logs"
volumePluginDir: "$CLUSTER_DIR/kubelet/volume-plugins"
# KubeletEnsureSecretPulledImages: a preloaded image name for an image ID the kubelet once pulled
# from a registry is otherwise refused with ErrImageNeverPull. Single-tenant test node.
imagePullCredentialsVerificationPolicy: NeverVerify
serializeImagePulls: false
maxPods: 60
# A shared development machine: don't evict test pods because other work fills the disk.
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%"}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
EOF
# The Node object outlives the kubelet: after a (re)start, trust only a Ready condition newer than it.
kubelet_started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
start kubelet "$CLUSTER_DIR/kubelet/config.yaml" -- "$kube_bin/kubelet" \
  --config="$CLUSTER_DIR/kubelet/config.yaml" --kubeconfig="$CLUSTER_DIR/kubelet.kubeconfig" \
  --root-dir="$CLUSTER_DIR/kubelet/root" --hostname-override="$NODE" --node-ip="$GATEWAY" --v=1
[ -n "${restarted[kubelet]:-}" ] || kubelet_started=1970-01-01T00:00:00Z

# ------------------------------------------------------------------------------------------- readiness
waitfor kubelet "kubelet healthz" 90 curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
# kube-proxy reads the node IP from the Node object, and exits later if it changes: start it only
# once the kubelet has registered the node.
waitfor kubelet "node $NODE registered" 60 "$KUBECTL" get node "$NODE"

# ------------------------------------------------------------------------------------------- kube-proxy
# iptables mode; NodePorts only on the gateway address, not on eth0 or localhost (which would need
# route_localnet); conntrack limits of the host left alone; no negative oom_score_adj (no CAP_SYS_RESOURCE).
write_file "$CLUSTER_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$CLUSTER_DIR/kube-proxy.kubeconfig"}
hostnameOverride: $NODE
mode: iptables
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$GATEWAY/32"]
oomScoreAdj: 0
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
EOF
start kube-proxy "$CLUSTER_DIR/kube-proxy.yaml" -- "$kube_bin/kube-proxy" --config="$CLUSTER_DIR/kube-proxy.yaml" --v=1

node_ready() {
  local out st hb
  out=$("$KUBECTL" get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}') || return 1
  read -r st hb <<<"$out"
  [ "$st" = True ] && [[ ! "$hb" < "$kubelet_started" ]]
}
waitfor kubelet "node $NODE Ready" 120 node_ready
log "node $NODE Ready after $(elapsed)"
waitfor kube-proxy "kube-proxy healthz" 60 curl -sf "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
# Pods cannot be created before the controller-manager made the namespace's default ServiceAccount.
waitfor kube-controller-manager "serviceaccount default/default" 60 "$KUBECTL" -n default get serviceaccount default
api_endpoint() { [ "$("$KUBECTL" -n default get endpointslice -l kubernetes.io/service-name=kubernetes -o jsonpath='{.items[0].endpoints[0].addresses[0]}')" = "$GATEWAY" ]; }
waitfor kube-apiserver "Service kubernetes -> $GATEWAY" 30 api_endpoint

# ------------------------------------------------------------------------------------------- test image
# The testbox image in the registry, for tests that need a pullable image.
skopeo copy -q --preserve-digests --dest-cert-dir "$CLUSTER_DIR/registry/certs.d" --digestfile "$RUN/testbox.digest" \
  "oci-archive:$images_dir/testbox.tar" "docker://$REGISTRY/slipway/testbox:1" >&2

# ------------------------------------------------------------------------------------------- env file
cat >"$ENV_FILE.tmp" <<EOF
# Written by hack/cluster/up.sh; source it, or read it with internal/testbed/cluster.
KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
SLIPWAY_CLUSTER_RUNTIME=$RUNTIME
SLIPWAY_CLUSTER_NODE=$NODE
SLIPWAY_CLUSTER_API=$API_URL
SLIPWAY_CLUSTER_GATEWAY=$GATEWAY
SLIPWAY_CLUSTER_POD_CIDR=$POD_CIDR
SLIPWAY_CLUSTER_SERVICE_CIDR=$SERVICE_CIDR
SLIPWAY_CLUSTER_CONTAINERD_SOCK=$CTRD_DIR/containerd.sock
SLIPWAY_CLUSTER_CTR=$CTR
SLIPWAY_CLUSTER_KUBECTL=$KUBECTL
SLIPWAY_REGISTRY=$REGISTRY
SLIPWAY_REGISTRY_CA=$PKI/registry-ca.crt
SLIPWAY_REGISTRY_CERT_DIR=$CLUSTER_DIR/registry/certs.d
SLIPWAY_TEST_IMAGE=$REGISTRY/slipway/testbox@$(cat "$RUN/testbox.digest")
SLIPWAY_PAUSE_IMAGE=$PAUSE_IMAGE
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"

log "cluster up ($RUNTIME) in $(elapsed)"
# stdout: for humans and for internal/testbed/cluster, which reads the SLIPWAY_CLUSTER_ENV line.
cat <<EOF
export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
# registry: $REGISTRY (TLS, CA $PKI/registry-ca.crt), the same address from the node and from pods
# all settings: source $ENV_FILE
SLIPWAY_CLUSTER_ENV=$ENV_FILE
EOF
