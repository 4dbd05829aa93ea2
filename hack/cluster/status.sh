#!/usr/bin/env bash
# Says what of the test cluster runs: each component with PID, RSS and log, the node, the registry.
#
#   hack/cluster/status.sh
# Exit status: 0 all components run, 3 none runs, 1 some run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -r "$RUN/runtime" ] && RUNTIME=$(cat "$RUN/runtime")
running=0 total=0 total_rss=0
printf 'state dir  %s\nruntime    %s\n' "$CLUSTER_DIR" "$([ -r "$RUN/runtime" ] && echo "$RUNTIME" || echo "-")"
printf '%-24s %-8s %8s  %s\n' COMPONENT PID RSS_MiB LOG
for c in "${COMPONENTS[@]}"; do
  total=$((total + 1))
  if alive "$c"; then
    running=$((running + 1))
    pid=$(pid_of "$c")
    rss=$(rss_mib "$pid")
    [[ $rss =~ ^[0-9]+$ ]] && total_rss=$((total_rss + rss))
    printf '%-24s %-8s %8s  %s\n' "$c" "$pid" "$rss" "$LOGS/$c.log"
  else
    printf '%-24s %-8s %8s  %s\n' "$c" "-" "-" "not running"
  fi
done
echo "total RSS of the components: ${total_rss} MiB (container shims not included)"

if alive kube-apiserver; then
  kubectl=$(kubectl_bin)
  KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig "$kubectl" get nodes -o wide 2>&1 || true
  pods=$(KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig "$kubectl" get pods -A --no-headers 2>/dev/null | wc -l || true)
  echo "pods: $pods"
fi
if alive registry; then
  if curl -sf --cacert "$PKI/registry-ca.crt" "https://$REGISTRY/v2/" >/dev/null; then
    echo "registry: https://$REGISTRY (CA $PKI/registry-ca.crt) answers"
  else
    echo "registry: https://$REGISTRY does not answer"
  fi
fi
[ -f "$ENV_FILE" ] && echo "env file: $ENV_FILE"

if [ "$running" = "$total" ]; then exit 0; fi
if [ "$running" = 0 ]; then exit 3; fi
exit 1
