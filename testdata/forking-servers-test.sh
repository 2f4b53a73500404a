#!/usr/bin/env bash
# Forking hosts against libtpm11.so on a private swtpm: pkcs11-tool
# --test-fork, then nginx (Debian's, pre-fork: a master and workers) with its
# TLS key on the token, loaded in the master through OpenSSL's pkcs11 engine
# (libp11). Every worker signs its handshakes through a helper of its own
# (module/fork.c). Handshakes must be served by two workers, and again by two
# new workers after `nginx -s reload`; no helper may outlive its worker.
source "$(dirname "$0")/lib.sh"
exec 3>&2 2>"$WORK/stderr.log"  # the clients chatter on stderr; test failures go to fd 3
NGINX_PID=
# stop_nginx never fails (it runs in the EXIT trap, under set -e).
stop_nginx() {
  [ -n "$NGINX_PID" ] || return 0
  local ws
  ws=$(workers) || true
  kill "$NGINX_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$NGINX_PID" $ws 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=
}
trap 'stop_nginx || true; cleanup' EXIT
fail() {
  echo "FAIL: $*" >&3
  tail -5 "$WORK/stderr.log" >&3
  [ -f "$WORK/ng/error.log" ] && tail -5 "$WORK/ng/error.log" >&3
  swtpm_logs >&3
  exit 1
}
start_swtpm "$WORK/tpm"
export TPM11_STORE=$WORK/store TPM11_SO_PIN=87654321 TPM11_PIN=123456
cd "$WORK"

"$ROOT/build/tpm11" init --label web >/dev/null || fail "tpm11 init"
out=$(timeout 60 pkcs11-tool --module "$MODULE" --test-fork 2>&1) || fail "pkcs11-tool --test-fork: $out"
pass "pkcs11-tool --test-fork (C_Initialize in a forked child)"

# The key and a self-signed certificate, signed in the TPM.
"$ROOT/build/tpm11" keygen --type ec:p256 --id 01 --label web >/dev/null || fail "tpm11 keygen"
URI="pkcs11:token=web;object=web;type=private;pin-value=$TPM11_PIN"
ENGINE=$(find /usr/lib -path '*engines-3/pkcs11.so' | head -1)
[ -n "$ENGINE" ] || fail "OpenSSL's pkcs11 engine is not installed (libengine-pkcs11-openssl)"
PKCS11_MODULE_PATH=$MODULE openssl req -new -x509 -engine pkcs11 -keyform engine -key "$URI" \
  -subj /CN=localhost -days 1 -out cert.pem >/dev/null 2>&1 || fail "certificate through the pkcs11 engine"
cat > openssl.cnf <<EOF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $MODULE
init = 0
EOF

# As root, the workers run as nobody, as a real server's run as www-data:
# each worker's helper runs as that user and needs the TPM and the store.
# Otherwise nginx leaves them as the user that started it.
WORKER_USER=$(id -un) WORKER_GROUP=$(id -gn)
if [ "$(id -u)" = 0 ]; then
  WORKER_USER=nobody WORKER_GROUP=$(id -gn nobody)
  chmod 711 "$WORK" "$WORK/tpm"
  chmod 666 "$WORK/tpm/tpm.sock"
  chown -R "$WORKER_USER:$WORKER_GROUP" "$TPM11_STORE"
fi

# helpers: this store's p11-kit-remote helpers, as "pid worker" lines: a
# helper is no child of its worker (the module starts it in a session of
# its own), which it names in its environment (TPM11_HELPER_OF).
helpers() {
  local p
  for p in /proc/[0-9]*; do
    grep -qs "p11-kit" "$p/cmdline" || continue
    tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qx "TPM11_STORE=$TPM11_STORE" || continue
    echo "${p#/proc/} $(tr '\0' '\n' < "$p/environ" 2>/dev/null | sed -n 's/^TPM11_HELPER_OF=//p')"
  done
}
stats() { cat /proc/[0-9]*/stat 2>/dev/null || true; } # processes come and go
# zombies: this nginx's helpers exited and not reaped (children of its
# master or workers; other zombies on the machine are not this test's).
zombies() {
  local ps
  ps=" $NGINX_PID $(workers | tr '\n' ' ') "
  stats | awk -v ps="$ps" '$2 == "(p11-kit-remote)" && $3 == "Z" && index(ps, " " $4 " ")' | wc -l
}
workers() { [ -z "$NGINX_PID" ] || stats | awk -v m="$NGINX_PID" '$2 == "(nginx)" && $4 == m { print $1 }'; }

# nginx on a free port chosen now: master (root), 2 workers, in $WORK/ng.
mkdir -p ng
port_used() { awk -v p="$(printf ':%04X' "$1")" '$2 ~ p"$" { f = 1 } END { exit !f }' /proc/net/tcp /proc/net/tcp6; }
for attempt in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 40000))
  port_used "$PORT" && continue
  cat > ng/nginx.conf <<EOF
user $WORKER_USER $WORKER_GROUP;
worker_processes 2;
master_process on;
daemon off;
pid $WORK/ng/nginx.pid;
error_log $WORK/ng/error.log notice;
# Workers keep only the environment named here; their helpers need these.
env TPM11_TPM;
env TPM11_STORE;
ssl_engine pkcs11;
events { worker_connections 64; }
http {
  log_format worker '\$pid';
  access_log $WORK/ng/access.log worker;
  server {
    listen 127.0.0.1:$PORT ssl reuseport;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key "engine:pkcs11:$URI";
    location / { return 200 "served\n"; }
  }
}
EOF
  : > ng/error.log
  OPENSSL_CONF=$WORK/openssl.cnf nginx -p "$WORK/ng" -c "$WORK/ng/nginx.conf" -e "$WORK/ng/error.log" 2>>ng/error.log &
  NGINX_PID=$!
  for _ in $(seq 100); do
    port_used "$PORT" && [ "$(workers | wc -l)" -ge 2 ] && break
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$NGINX_PID" 2>/dev/null && port_used "$PORT" && break
  grep -q "Address already in use" ng/error.log || fail "nginx did not start: $(tail -3 ng/error.log)"
  stop_nginx
done
[ -n "$NGINX_PID" ] || fail "no free port for nginx"

# handshakes SEEN: TLS handshakes (each a new connection, the server's
# signature verified against cert.pem) until two workers not in SEEN served
# them; prints those workers. At most 100.
handshakes() {
  local n=0 before got
  before=$(wc -l < ng/access.log 2>/dev/null || echo 0)
  while [ "$n" -lt 100 ]; do
    n=$((n + 1))
    got=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -quiet -connect "127.0.0.1:$PORT" \
      -servername localhost -CAfile cert.pem -verify_return_error 2>/dev/null | tail -1)
    [ "$got" = "served" ] || fail "handshake $n: no response (got '$got')"
    local new
    new=$(tail -n +"$((before + 1))" ng/access.log | grep -vxF -f <(echo "${1:-none}" | tr ' ' '\n') | sort -u)
    if [ "$(echo "$new" | grep -c .)" -ge 2 ]; then
      echo "$n" $new
      return 0
    fi
  done
  fail "100 handshakes, served by fewer than two workers: $(sort ng/access.log | uniq -c | tr '\n' ' ')"
}
t0=$(date +%s.%N)
r=$(handshakes "") || exit 1
set -- $r
n1=$1 first="$2 $3"
t1=$(date +%s.%N)
pass "nginx: $n1 TLS handshakes signed in the TPM by workers $first (key loaded in the master via the pkcs11 engine)"

# Each worker that served has one helper, running as the worker's user.
for w in $first; do
  h=$(helpers | awk -v w="$w" '$2 == w { print $1 }')
  [ "$(echo "$h" | wc -w)" -eq 1 ] || fail "worker $w has not exactly one helper: $(helpers)"
  [ "$(awk '/^Uid:/ { print $2 }' "/proc/$h/status")" = "$(id -u "$WORKER_USER")" ] || fail "helper $h does not run as $WORKER_USER"
done

old_workers=$(workers | tr '\n' ' ')
OPENSSL_CONF=$WORK/openssl.cnf nginx -p "$WORK/ng" -c "$WORK/ng/nginx.conf" -e "$WORK/ng/error.log" -s reload 2>>ng/error.log \
  || fail "nginx -s reload"
# New workers forked, the old ones gone (they were idle).
for _ in $(seq 100); do
  now=$(workers | tr '\n' ' ')
  stale=0
  for w in $old_workers; do case " $now " in *" $w "*) stale=1 ;; esac; done
  [ "$stale" = 0 ] && [ "$(echo $now | wc -w)" -ge 2 ] && break
  sleep 0.1
done
[ "$stale" = 0 ] || fail "old workers still running after reload: $now (old: $old_workers)"
r=$(handshakes "$first") || exit 1
set -- $r
n2=$1 second="$2 $3"
pass "after nginx -s reload: $n2 handshakes by new workers $second"

# The old workers' helpers ended with them (exit finalizes); the live ones
# serve live workers.
live=$(workers | tr '\n' ' ')
for _ in $(seq 50); do
  orphans=$(helpers | while read -r pid worker; do case " $live " in *" $worker "*) ;; *) echo "$pid" ;; esac; done)
  [ -z "$orphans" ] && break
  sleep 0.1
done
[ -z "$orphans" ] || fail "helpers outlived their workers: $orphans"
# No helper is left as a zombie of a live worker or of the master (none
# is their child).
for _ in $(seq 50); do [ "$(zombies)" = 0 ] && break; sleep 0.1; done
[ "$(zombies)" = 0 ] || fail "helpers not reaped: $(zombies) zombies of this nginx"
stop_nginx
for _ in $(seq 50); do [ -z "$(helpers)" ] && break; sleep 0.1; done
[ -z "$(helpers)" ] || fail "helpers left after nginx stopped: $(helpers)"
pass "nginx stopped: no helper left running or unreaped ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s for the first $n1 handshakes)"
echo "forking server tests passed"
