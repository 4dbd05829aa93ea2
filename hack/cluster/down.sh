#!/usr/bin/env bash
# Stops the test cluster that hack/cluster/up.sh started and undoes its changes to the host: only
# processes recorded in its PID files (never a name match), pod sandboxes, mounts under the state
# dir, pod network namespaces, the bridge, iptables rules, kubepods cgroups, and the kernel settings
# that the kubelet, the bridge plugin and kube-proxy changed.
#
#   hack/cluster/down.sh           # keeps PKI, etcd data, images: the next up.sh is fast
#   hack/cluster/down.sh --purge   # also deletes the state dir ($SLIPWAY_CLUSTER_DIR)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

purge=false
case ${1:-} in
  --purge) purge=true ;;
  "") ;;
  *) die "usage: $0 [--purge]" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root"
started=$SECONDS
if [ ! -d "$RUN" ]; then
  log "nothing to do: no cluster state in $CLUSTER_DIR"
  $purge && rm -rf "$CLUSTER_DIR"
  exit 0
fi
RUNTIME=$(cat "$RUN/runtime" 2>/dev/null || echo "$RUNTIME")
CTR=$(cat "$RUN/ctr" 2>/dev/null || true)
CTRD_DIR=$CLUSTER_DIR/$RUNTIME
kube_bin=$SLIPWAY_CACHE/k8s/v$K8S_VERSION/bin
rm -f "$ENV_FILE"
ctr_() { [ -n "$CTR" ] && "$CTR" --address "$CTRD_DIR/containerd.sock" -n k8s.io "$@"; }

# 1. Let the kubelet tear pods down properly: CNI DEL removes veths, IP reservations, NAT rules.
if alive kube-apiserver && alive kubelet && alive containerd; then
  log "deleting all pods"
  export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
  "$kube_bin/kubectl" delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
  # A pod object disappears once the kubelet has stopped its containers and sandbox.
  for _ in $(seq 60); do
    [ -z "$("$kube_bin/kubectl" get pods -A --no-headers 2>/dev/null)" ] && break
    sleep 0.5
  done
fi
stop_component kube-proxy
stop_component kubelet 30

# 2. What containerd still runs: remember the pods' network namespaces, then kill and delete.
: >"$RUN/netns.list"
if alive containerd; then
  for c in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ containers info "$c" 2>/dev/null |
      jq -r '.Spec.linux.namespaces[]? | select(.type == "network") | .path // empty' >>"$RUN/netns.list" || true
  done
  for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
  sleep 0.5
  for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$c" >/dev/null 2>&1 || true; done
  for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1 || true; done
fi

# 3. The rest, in reverse start order.
for c in kube-scheduler kube-controller-manager kube-apiserver etcd registry; do stop_component "$c"; done
stop_component containerd 20

# 4. Shims and container processes left behind (they are re-parented away from containerd): only
#    those recorded in PID files under our state dir, and only if they still look like one.
for f in "$CTRD_DIR"/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f")
  if [[ $(readlink "/proc/$p/exe" 2>/dev/null) == *containerd-shim* ]]; then
    log "killing leftover shim $p"
    kill -KILL "$p" 2>/dev/null || true
  fi
done
for f in "$CTRD_DIR"/state/io.containerd.runtime.v2.task/*/*/init.pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f")
  if grep -q ':/kubepods' "/proc/$p/cgroup" 2>/dev/null; then
    log "killing leftover container process $p"
    kill -KILL "$p" 2>/dev/null || true
  fi
done
sleep 0.3

# 5. Mounts under the state dir (overlay rootfs, tmpfs volumes, shm, netns with containerd 2),
#    deepest first; then the network namespaces containerd 1.6 keeps in /run/netns.
mapfile -t mounts < <(awk -v d="$CLUSTER_DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
for m in "${mounts[@]}"; do
  umount "$m" 2>/dev/null || umount -l "$m" || log "warning: cannot unmount $m"
done
while read -r m; do
  [ -n "$m" ] || continue
  awk -v m="$m" '$5 == m {f = 1} END {exit !f}' /proc/self/mountinfo && umount "$m" 2>/dev/null
  case $m in "$CLUSTER_DIR"/* | /run/netns/cni-*) rm -f "$m" ;; esac
done < <(sort -u "$RUN/netns.list")

# 6. Network. kube-proxy removes its own rules; the bridge plugin's masquerade chains carry our CNI
#    network name in their comment; the kubelet's canary chains are fixed names.
if [ -x "$kube_bin/kube-proxy" ]; then
  "$kube_bin/kube-proxy" --cleanup --v=0 >>"$LOGS/kube-proxy-cleanup.log" 2>&1 || true
fi
iptables -t nat -S POSTROUTING 2>/dev/null | grep -F "name: \\\"$CNI_NETWORK\\\"" | while read -r rule; do
  chain=$(awk '{for (i = 1; i < NF; i++) if ($i == "-j") print $(i + 1)}' <<<"$rule")
  eval "iptables -t nat ${rule/#-A /-D }" 2>/dev/null || true # iptables -S output is shell-quoted
  case $chain in CNI-*) iptables -t nat -F "$chain" 2>/dev/null && iptables -t nat -X "$chain" 2>/dev/null ;; esac
done || true
for t in nat filter mangle; do
  for chain in KUBE-KUBELET-CANARY KUBE-PROXY-CANARY KUBE-IPTABLES-HINT KUBE-FIREWALL; do
    iptables -t "$t" -S "$chain" >/dev/null 2>&1 || continue
    iptables -t "$t" -S 2>/dev/null | grep -E -- "-j $chain( |$)" | sed 's/^-A /-D /' |
      while read -r rule; do eval "iptables -t $t $rule" 2>/dev/null || true; done || true
    iptables -t "$t" -F "$chain" 2>/dev/null || true
    iptables -t "$t" -X "$chain" 2>/dev/null || true
  done
done
for t in nat filter mangle; do
  left=$(iptables -t "$t" -S 2>/dev/null | grep -c -e "KUBE-" -e "$CNI_NETWORK" || true)
  [ "$left" = 0 ] || log "warning: $left iptables rules/chains mentioning KUBE- or $CNI_NETWORK left in table $t"
done
if [ -f "$RUN/bridge.created" ]; then
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "deleting bridge $BRIDGE"
    ip link del "$BRIDGE"
  fi
  rm -f "$RUN/bridge.created"
fi
# No pod holds an address any more.
rm -rf "$CLUSTER_DIR/cni/ipam"

# 7. Host paths outside the state dir: the kubelet's device-plugin socket, /var/log/containers links
#    into our state dir, then directories that did not exist before up.sh, if now empty.
rm -f /var/lib/kubelet/device-plugins/kubelet.sock
[ -d /var/log/containers ] && find /var/log/containers -maxdepth 1 -type l -lname "$CLUSTER_DIR/*" -delete
if [ -f "$RUN/host-paths.created" ]; then
  while read -r p; do
    [ -d "$p" ] && find "$p" -depth -type d -empty -delete 2>/dev/null
  done <"$RUN/host-paths.created"
  rm -f "$RUN/host-paths.created"
fi

# 8. cgroups the kubelet created (cgroupfs driver, every v1 hierarchy): the /kubepods subtree.
for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do
  [ -d "${h}kubepods" ] && find "${h}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done
for h in /sys/fs/cgroup/*/; do
  [ -d "${h}kubepods" ] && log "warning: cgroup ${h}kubepods still exists"
done

# 9. Kernel settings, as they were before up.sh.
if [ -f "$RUN/sysctl.saved" ]; then
  while IFS="=" read -r k v; do
    [ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || sysctl -qw "$k=$v" || log "warning: cannot restore $k=$v"
  done <"$RUN/sysctl.saved"
  rm -f "$RUN/sysctl.saved"
fi
rm -f "$RUN/runtime" "$RUN/ctr"

if $purge; then
  if awk -v d="$CLUSTER_DIR/" 'index($5, d) == 1 {f = 1} END {exit !f}' /proc/self/mountinfo; then
    die "mounts left under $CLUSTER_DIR; not purging"
  fi
  log "purging $CLUSTER_DIR"
  rm -rf "$CLUSTER_DIR"
fi
log "cluster down in $((SECONDS - started))s"
