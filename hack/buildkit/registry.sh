#!/usr/bin/env bash
# Starts or stops one Debian docker-registry (distribution v2) of a test bed instance, on a free
# loopback port, as the unprivileged daemon user.
#
#   registry.sh start DIR NAME open   plain HTTP, no auth (BuildKit is told it is an HTTP registry)
#   registry.sh start DIR NAME tls    HTTPS with a certificate from the instance's own CA, htpasswd
#                                     auth (user "slipway", random password)
#   registry.sh stop  DIR NAME [--purge]
#
# Files in DIR/registry-NAME/: addr (host:port), pid, log, data/, registry.yml, and for tls:
# user, password, htpasswd, cert.pem, key.pem; the CA is DIR/ca/ca.pem. buildkitd.toml is the
# fragment that buildkitd.sh adds to every daemon's config of this instance (http=true for open,
# ca=[...] for tls), so registries must be started before the daemons.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

cmd=${1:-}; dir=$(instance_dir "${2:-}"); name=${3:-}
[ -n "$name" ] || die "usage: registry.sh start|stop DIR NAME [open|tls|--purge]"
R=$dir/registry-$name

ensure_ca() {
  local ca=$dir/ca
  [ -s "$ca/ca.pem" ] && return 0
  install -d -m 0755 "$ca"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Slipway test bed CA" \
    -keyout "$ca/ca.key" -out "$ca/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 0600 "$ca/ca.key"
  chmod 0644 "$ca/ca.pem"
}

issue_cert() {
  local ca=$dir/ca
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$R/key.pem" -out "$R/req.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$R/ext.cnf"
  openssl x509 -req -in "$R/req.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -CAcreateserial \
    -days 30 -extfile "$R/ext.cnf" -out "$R/cert.pem" 2>/dev/null
  rm -f "$R/req.csr" "$R/ext.cnf"
  chown "$(bk_uid):$(bk_gid)" "$R/key.pem"
  chmod 0600 "$R/key.pem"
  chmod 0644 "$R/cert.pem"
}

write_config() { # write_config PORT FLAVOUR
  local addr=127.0.0.1:$1
  {
    echo "version: 0.1"
    echo "log: {level: warn, accesslog: {disabled: true}}"
    echo "storage: {filesystem: {rootdirectory: $R/data}, delete: {enabled: true}}"
    echo "http:"
    echo "  addr: $addr"
    echo "  secret: $(openssl rand -hex 16)"
    if [ "$2" = tls ]; then
      echo "  tls: {certificate: $R/cert.pem, key: $R/key.pem}"
      echo "auth: {htpasswd: {realm: slipway-testbed, path: $R/htpasswd}}"
    fi
  } >"$R/registry.yml"
  chmod 0644 "$R/registry.yml"
  {
    echo "[registry.\"$addr\"]"
    # BuildKit treats loopback hosts as plain HTTP unless told otherwise: say "http = false"
    # explicitly for the TLS registry, so HTTP is used only for the registry marked insecure.
    if [ "$2" = tls ]; then
      echo "  http = false"
      echo "  ca = [\"$dir/ca/ca.pem\"]"
    else
      echo "  http = true"
    fi
  } >"$R/buildkitd.toml"
  echo "$addr" >"$R/addr"
}

healthy() { # healthy FLAVOUR ADDR: /v2/ answers 200 (open) or 401 (tls, auth required)
  local code
  if [ "$1" = tls ]; then
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/ca/ca.pem" "https://$2/v2/")
    [ "$code" = 401 ]
  else
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$2/v2/")
    [ "$code" = 200 ]
  fi
}

start() {
  local flavour=${1:-open}
  case $flavour in open|tls) ;; *) die "unknown registry flavour $flavour" ;; esac
  if pidfile_alive "$R/pid"; then
    log "registry $name already running at $(cat "$R/addr")"
    cat "$R/addr"
    return 0
  fi
  install -d -m 0755 -o "$(bk_uid)" -g "$(bk_gid)" "$R" "$R/data"
  if [ "$flavour" = tls ]; then
    ensure_ca
    [ -s "$R/cert.pem" ] || issue_cert
    if [ ! -s "$R/password" ]; then
      echo slipway >"$R/user"
      openssl rand -hex 16 >"$R/password"
      chmod 0600 "$R/password"
    fi
    htpasswd -Bbn "$(cat "$R/user")" "$(cat "$R/password")" >"$R/htpasswd"
    chown "$(bk_uid):$(bk_gid)" "$R/htpasswd"
    chmod 0600 "$R/htpasswd"
  fi
  local attempt port
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    write_config "$port" "$flavour"
    (cd / && bk_exec docker-registry serve "$R/registry.yml" </dev/null >"$R/log" 2>&1) &
    write_pidfile "$R/pid" $! || { sleep 0.2; write_pidfile "$R/pid" $! || true; }
    local i ok=0
    for ((i = 0; i < 100; i++)); do
      pidfile_alive "$R/pid" || break
      if healthy "$flavour" "127.0.0.1:$port"; then ok=1; break; fi
      sleep 0.1
    done
    if [ $ok = 1 ]; then
      log "registry $name ($flavour) listening on 127.0.0.1:$port"
      echo "127.0.0.1:$port"
      return 0
    fi
    stop_pidfile "$R/pid" 2
    if grep -q "address already in use" "$R/log" 2>/dev/null; then
      log "port $port was taken meanwhile; retrying ($attempt)"
      continue
    fi
    cat "$R/log" >&2
    die "registry $name did not come up"
  done
  die "registry $name: no free port after 5 attempts"
}

case $cmd in
  start) start "${4:-open}" ;;
  stop)
    stop_pidfile "$R/pid"
    if [ "${4:-}" = --purge ]; then rm_state "$R"; fi
    ;;
  *) die "usage: registry.sh start|stop DIR NAME [open|tls|--purge]" ;;
esac
