#!/usr/bin/env bash
# Sends a signed webhook delivery to a running `slipway serve`, as GitHub or GitLab would.
#
#   hack/send-webhook.sh github push testdata/github/webhooks/push.none.4.json
#   hack/send-webhook.sh gitlab "Push Hook" testdata/gitlab/webhooks/push.json
#
# Env: SLIPWAY_URL (default http://127.0.0.1:8080), SECRET_FILE (the webhook secret; default
# /tmp/slipway-dev/<forge>-secret), SIGNING_FILE (GitLab signing token, optional),
# DELIVERY (delivery ID; default a fresh UUID, reuse one to see dedupe).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 3 ] || die "usage: $0 github|gitlab EVENT PAYLOAD.json"
forge=$1 event=$2 payload=$3
url=${SLIPWAY_URL:-http://127.0.0.1:8080}
secret_file=${SECRET_FILE:-${TMPDIR:-/tmp}/slipway-dev/$forge-secret}
delivery=${DELIVERY:-$(cat /proc/sys/kernel/random/uuid)}
[ -r "$payload" ] || die "cannot read $payload"
[ -r "$secret_file" ] || die "cannot read the webhook secret $secret_file (set SECRET_FILE)"
secret=$(tr -d '\r\n' <"$secret_file")

headers=(-H "Content-Type: application/json")
case $forge in
  github)
    sig=$(openssl dgst -sha256 -hmac "$secret" -r <"$payload" | cut -d' ' -f1)
    headers+=(-H "X-GitHub-Event: $event" -H "X-GitHub-Delivery: $delivery" -H "X-Hub-Signature-256: sha256=$sig")
    ;;
  gitlab)
    headers+=(-H "X-Gitlab-Event: $event" -H "X-Gitlab-Token: $secret" -H "X-Gitlab-Event-UUID: $delivery")
    if [ -n "${SIGNING_FILE:-}" ]; then
      key=$(tr -d '\r\n' <"$SIGNING_FILE")
      ts=$(date +%s)
      sig=$( { printf '%s.%s.' "$delivery" "$ts"; cat "$payload"; } | openssl dgst -sha256 -hmac "$key" -binary | base64 -w0)
      headers+=(-H "webhook-id: $delivery" -H "webhook-timestamp: $ts" -H "webhook-signature: v1,$sig")
    fi
    ;;
  *) die "forge must be github or gitlab" ;;
esac
log "POST $url/hooks/$forge ($event, delivery $delivery)"
curl -sS -w '\nHTTP %{http_code}\n' "${headers[@]}" --data-binary "@$payload" "$url/hooks/$forge"
