#!/usr/bin/env bash
# make bench: every figure measured in this run, each part on its own fresh
# swtpm: the raw TPM floor (go-tpm TPM2_Sign, persistent connection) and
# libtpm11.so driven from C. Prints one table.
source "$(dirname "$0")/lib.sh"
exec 3>&2 2>"$WORK/stderr.log"
N=${N:-400}
gcc -std=c11 -D_GNU_SOURCE -O2 -I"$ROOT/module" -o "$WORK/bench" "$ROOT/testdata/c/bench.c" -ldl -lpthread 2>&3
gcc -std=c11 -O2 -o "$WORK/rawfloor" "$ROOT/testdata/c/rawfloor.c" 2>&3
gcc -std=c11 -D_GNU_SOURCE -O2 -I"$ROOT/module" -o "$WORK/fair" "$ROOT/testdata/c/fair_test.c" -ldl 2>&3
# The floor is measured before and after the module and averaged: this
# machine's speed drifts by tens of percent over a minute.
floor() { (cd "$ROOT" && go test -run '^$' -bench SignVsFloor -benchtime ${N}x ./tpmtoken/ 2>/dev/null); }
pick() { awk -v k="$1" '$0 ~ k {for (i=1;i<NF;i++) if ($(i+1)=="floor-signs/s") print $i}'; }
floor1=$(floor)
more=$(cd "$ROOT" && go test -run '^$' -bench 'Commands|ManyObjects' -benchtime 1x ./tpmtoken/ 2>/dev/null)
m() { echo "$more" | awk -v k="$1" '{for (i=1;i<NF;i++) if ($(i+1)==k) print $i}'; }

start_swtpm "$WORK/tpm"
export TPM11_STORE=$WORK/store
# The raw floor (testdata/c/rawfloor.c: pre-marshalled TPM2_Sign over a
# blocking socket, no TSS) runs on the very swtpm the module uses,
# interleaved with it: bench.c runs each case BENCH_ROUNDS times, each
# between two runs of the floor, and reports the median of the rounds'
# ratios (latency for one thread, throughput for many) with every round's.
sock=${TPM11_TPM#swtpm:unix:}
pkcs11-tool --module "$MODULE" --init-token --label bench --so-pin so-secret >/dev/null 2>&1
pkcs11-tool --module "$MODULE" --token-label bench --login --login-type so --so-pin so-secret --init-pin --pin user-pin >/dev/null 2>&1
BENCH_ROUNDS=${BENCH_ROUNDS:-5} "$WORK/bench" "$MODULE" "$N" "$WORK/rawfloor" "$sock" > "$WORK/out" 2>&3
floor2=$(floor)
mean() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (a + b) / 2 }'; }
ec_floor=$(mean "$(echo "$floor1" | pick ECDSA-P256)" "$(echo "$floor2" | pick ECDSA-P256)")
rsa_floor=$(mean "$(echo "$floor1" | pick RSA2048)" "$(echo "$floor2" | pick RSA2048)")
v() { awk -v k="$1" '$1==k {print $2}' "$WORK/out"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
row() { printf '%-56s %16s %8s\n' "$1" "$2" "$3"; }
row "measure (swtpm, same run)" "value" "ratio"
row "raw C floor ECDSA P-256, signs/s (beside 1 thread)" "$(v ec_sync1_floor_signs_per_s)" ""
row "raw C floor ECDSA P-256 / RSA-2048 p50 ms" "$(v ec_sync1_floor_p50_ms) / $(v rsa_sync1_floor_p50_ms)" ""
row "module vs raw C floor: ECDSA 1 thread (p50 latency)" "$(v ec_sync1_p50_ms) ms" "$(v ec_sync1_ratio)"
row "  every round" "$(v ec_sync1_ratios)" ""
row "module vs raw C floor: RSA 1 thread (p50 latency)" "$(v rsa_sync1_p50_ms) ms" "$(v rsa_sync1_ratio)"
row "  every round" "$(v rsa_sync1_ratios)" ""
row "module vs raw C floor: 8 threads (throughput)" "$(v ec_threads8_signs_per_s)/s" "$(v ec_threads8_ratio)"
row "  every round" "$(v ec_threads8_ratios)" ""
row "module vs raw C floor: 32 async sessions (throughput)" "$(v ec_async32_signs_per_s)/s" "$(v ec_async32_ratio)"
row "  every round" "$(v ec_async32_ratios)" ""
row "CPU per ECDSA signature, us: module / raw client" "$(v ec_sync1_cpu_us) / $(v ec_sync1_floor_cpu_us)" ""
row "CPU per RSA signature, us: module / raw client" "$(v rsa_sync1_cpu_us) / $(v rsa_sync1_floor_cpu_us)" ""
row "module's own CPU per signature (the difference), us" "$(minus "$(v ec_sync1_cpu_us)" "$(v ec_sync1_floor_cpu_us)") / $(minus "$(v rsa_sync1_cpu_us)" "$(v rsa_sync1_floor_cpu_us)")" ""
row "go-tpm floor ECDSA P-256 (TPM2_Sign), signs/s" "$ec_floor" ""
row "  (floor before / after the module)" "$(echo "$floor1" | pick ECDSA-P256) / $(echo "$floor2" | pick ECDSA-P256)" ""
row "go-tpm floor RSA-2048 PKCS#1, signs/s" "$rsa_floor" ""
row "sync 1 thread ECDSA P-256, signs/s (vs go-tpm floor)" "$(v ec_sync1_signs_per_s)" "$(ratio "$(v ec_sync1_signs_per_s)" "$ec_floor")"
row "  p50 / p99 ms" "$(v ec_sync1_p50_ms) / $(v ec_sync1_p99_ms)" ""
row "sync 1 thread RSA-2048 SHA256-RSA-PKCS, signs/s" "$(v rsa_sync1_signs_per_s)" "$(ratio "$(v rsa_sync1_signs_per_s)" "$rsa_floor")"
row "  p50 / p99 ms" "$(v rsa_sync1_p50_ms) / $(v rsa_sync1_p99_ms)" ""
row "8 threads, own sessions, ECDSA signs/s (errors)" "$(v ec_threads8_signs_per_s) ($(v ec_threads8_errors))" "$(ratio "$(v ec_threads8_signs_per_s)" "$ec_floor")"
row "1 thread, 32 async sessions, ECDSA signs/s (errors)" "$(v ec_async32_signs_per_s) ($(v ec_async32_errors))" "$(ratio "$(v ec_async32_signs_per_s)" "$ec_floor")"
row "C_Sign returning CKR_PENDING p50 / p99 us" "$(v pending_return_p50_us) / $(v pending_return_p99_us)" ""
# What the pending tail is made of (bench.c pending_tail): the slowest 1%
# of those C_Sign calls against the rest, wall vs the thread's CPU time,
# and the share preempted (involuntary switch), asleep (voluntary switch:
# a lock or wait) or page-faulting during the call.
row "  slowest 1%: wall / thread CPU us" "$(v pending_tail1pct_wall_us) / $(v pending_tail1pct_cpu_us)" ""
row "  slowest 1%: preempted / slept / faulted %" "$(v pending_tail1pct_preempted_pct) / $(v pending_tail1pct_slept_pct) / $(v pending_tail1pct_faulted_pct)" ""
row "  other 99%: wall / thread CPU us" "$(v pending_body99pct_wall_us) / $(v pending_body99pct_cpu_us)" ""
row "  other 99%: preempted / slept / faulted %" "$(v pending_body99pct_preempted_pct) / $(v pending_body99pct_slept_pct) / $(v pending_body99pct_faulted_pct)" ""
row "forked child (helper, p11-kit RPC): ECDSA signs/s" "$(v ec_child_signs_per_s) ($(v ec_child_errors))" "$(ratio "$(v ec_child_signs_per_s)" "$(v ec_raw_sync1_signs_per_s)")"
row "  same loop in the parent (ratio above: child/parent)" "$(v ec_raw_sync1_signs_per_s) ($(v ec_raw_sync1_errors))" ""
row "  p50 ms child / parent" "$(v ec_child_p50_ms) / $(v ec_raw_sync1_p50_ms)" ""
row "  child's C_Initialize (starts its helper), ms" "$(v ec_child_init_ms)" ""
# Mechanisms a forked child can use: how many of the parent's a child lists
# (p11-kit's RPC carries few; the child makes the hash-and-sign ones, see
# module/child_mech.c), and whether it signs with ECDSA-SHA256.
row "mechanisms a forked child can use: N of M" "$(v child_mechs) of $(v parent_mechs)" ""
row "  forked child signs with ECDSA-SHA256" "$(v child_ecdsa_sha256)" ""
row "dlopen -> logged in, ms" "$(v dlopen_to_logged_in_ms)" ""
row "RSS added by loading + login, MB" "$(v rss_module_mb)" ""
row "shipped .so size, MB" "$(awk -v b="$(stat -c %s "$MODULE")" 'BEGIN { printf "%.2f", b / 1e6 }')" ""
row "shipped .so links (ldd)" "$(ldd "$MODULE" | awk '$1 !~ /vdso|ld-linux/ {printf "%s%s", sep, $1; sep=" "}')" ""
row "RSS added by 1,000 open sessions, MB" "$(v rss_1000_sessions_mb)" ""
row "TPM commands, start to logged in" "$(m cmds-to-login)" ""
row "TPM commands per steady-state C_Sign" "$(m cmds/sign)" ""
row "10,000 objects: C_Initialize, ms" "$(m init-ms)" ""
row "10,000 objects: first find (reads the store), ms" "$(m first-find-ms)" ""
row "10,000 objects: find by attribute, ms" "$(m find-ms)" ""

# Where "dlopen -> logged in" goes (testdata/c/startup_bench.c): STARTUP_N
# fresh processes on the same swtpm and token, each timing the loader's
# dlopen, the Go runtime's start with the packages' init (waited for by the
# first call into Go), C_Initialize, and C_OpenSession + C_Login; the median
# round's phases, its page faults, every round's total. Then the same with
# the .so dropped from the page cache before each round (cold).
gcc -std=c11 -D_GNU_SOURCE -O2 -I"$ROOT/module" -I"$ROOT/testdata/c" -o "$WORK/startup" "$ROOT/testdata/c/startup_bench.c" -ldl 2>&3
"$WORK/startup" "$MODULE" "${STARTUP_N:-9}" >"$WORK/startup.out" 2>&3 || true
"$WORK/startup" "$MODULE" "${STARTUP_N:-9}" cold >>"$WORK/startup.out" 2>&3 || true
sv() { awk -v k="$1" '$1==k {print $2}' "$WORK/startup.out"; }
for c in warm cold; do
  row "dlopen -> logged in, fresh process, $c, median ms" "$(sv startup_${c}_ms)" ""
  row "  dlopen / Go start+init / C_Initialize / C_Login, ms" "$(sv startup_${c}_dlopen_ms) / $(sv startup_${c}_go_start_ms) / $(sv startup_${c}_initialize_ms) / $(sv startup_${c}_login_ms)" ""
  row "  page faults; every round, ms" "$(sv startup_${c}_faults); $(sv startup_${c}_rounds)" ""
done

# More keys than swtpm's 3 object slots (tpmtoken's BenchmarkManyKeys, on a
# swtpm of its own): 16 ECDSA P-256 keys signed round-robin from one session
# on one thread, against the same loop on 1 key, interleaved round by round
# (the 1-key loop before and after each 16-key one); the median round's
# ratio, every round's, and the TPM commands per C_Sign of the 16-key loop
# (a key the TPM does not hold: flush the evicted one + ContextLoad + Sign).
mk=$(cd "$ROOT" && BENCH_ROUNDS=${BENCH_ROUNDS:-5} N=$N go test -run '^$' -bench ManyKeys -benchtime 1x ./tpmtoken/ 2>&1) ||
  mk=
mkv() { echo "$mk" | awk -v k="$1" '$0 ~ /^BenchmarkManyKeys/ {for (i=1;i<NF;i++) if ($(i+1)==k) print $i}'; }
row "16 keys round-robin vs 1 key, signs/s (ratio)" "$(mkv 16keys-signs/s) / $(mkv 1key-signs/s)" "$(mkv ratio)"
row "  every round" "$(echo "$mk" | awk '/many-keys rounds/ {print $NF; exit}')" ""
row "  TPM commands per C_Sign, 16 keys round-robin" "$(mkv cmds/sign)" ""

# Four processes signing at once on a swtpm of their own, FAIR_ROUNDS
# rounds of FAIR_SECONDS, each between two runs of the raw floor
# (rawfloor.c) on that swtpm: signs/s in all vs the floor (each round's
# ratio), each one's share, the longest wait for one signature, the
# longest start (dlopen) to logged in. fair_test writes when each
# signature ended; merged (turns), they show the turns: a signature after
# another process's is a hand-over, and the time between them beyond a
# signature's own is the TPM standing idle.
kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true
start_swtpm "$WORK/tpm-fair"
fsock=${TPM11_TPM#swtpm:unix:}
TPM11_STORE=$WORK/store-fair "$WORK/fair" "$MODULE" init >/dev/null 2>&3
# rawrate SOCKET: the raw floor's signs/s over ~1 s (FLOOR_N signatures), not
# a fraction of a round: this host's speed drifts within seconds.
rawrate() { "$WORK/rawfloor" "$1" ec "${FLOOR_N:-1500}" 2>&3 | awk '$1 ~ /_signs_per_s$/ {print $2}'; }
# turns FILES...: from the processes' signature times (each file one
# process's), over the window when all signed: "rate R handovers H
# gap_p50 G gap_p99 G2 sign_p50 S idle I" (per s, ms, ms, ms, % of the window).
turns() {
  local i=0 f
  for f in "$@"; do i=$((i + 1)); awk -v p=$i '{print $1, p}' "$f"; done | sort -n -k1,1 |
    awk '{ t[NR] = $1; p[NR] = $2; if (!($2 in first)) first[$2] = $1; last[$2] = $1 }
      END {
        lo = 0; hi = 1e18
        for (k in first) { if (first[k] > lo) lo = first[k]; if (last[k] < hi) hi = last[k] }
        print "w", hi - lo
        for (i = 2; i <= NR; i++)
          if (t[i-1] >= lo && t[i] <= hi) print (p[i] == p[i-1] ? "s" : "g"), t[i] - t[i-1]
      }' | sort -k1,1 -k2,2g |
    awk '$1 == "w" { w = $2 } $1 == "s" { s[++ns] = $2 } $1 == "g" { g[++ng] = $2 }
      END {
        sp = ns ? s[int((ns + 1) / 2)] : 0
        for (i = 1; i <= ng; i++) if (g[i] > sp) idle += g[i] - sp
        if (w <= 0) w = 1e-9
        printf "rate %.0f handovers %.1f gap_p50 %.2f gap_p99 %.2f sign_p50 %.2f idle %.1f\n", (ns + ng) / w, ng / w,
          1e3 * (ng ? g[int((ng + 1) / 2)] : 0), 1e3 * (ng ? g[int((ng - 1) * 99 / 100) + 1] : 0), 1e3 * sp, 100 * idle / w
      }'
}
pids=
: >"$WORK/fair-rounds"
for r in $(seq "${FAIR_ROUNDS:-3}"); do
  a=$(rawrate "$fsock")
  pids=
  for p in 1 2 3 4; do
    TPM11_STORE=$WORK/store-fair "$WORK/fair" "$MODULE" sign "${FAIR_SECONDS:-5}" "$WORK/times$r.$p" >"$WORK/fair$r.$p" 2>&3 &
    pids="$pids $!"
  done
  wait $pids
  b=$(rawrate "$fsock")
  echo "floor $a $b $(turns "$WORK"/times$r.[1-4])" >>"$WORK/fair-rounds"
done
fair=$(for r in $(seq "${FAIR_ROUNDS:-3}"); do cat "$WORK"/fair$r.[1-4]; done)
# fv: over the rounds' processes (four lines a round, in order): every
# round's shares, signs/s in all, the longest stall and login.
fv() { awk -v k="$1" -v secs="$((${FAIR_SECONDS:-5} * ${FAIR_ROUNDS:-3}))" '{r=int((NR-1)/4); n[r,(NR-1)%4]=$2; rt[r]+=$2; t+=$2; if ($4>l) l=$4; if ($6>s) s=$6}
  END {if (k=="shares") for (j=0;j<=r;j++) {printf "%s", (j?" ":""); for (i=0;i<4;i++) printf "%s%.0f", (i?"/":""), 100*n[j,i]/rt[j]}
       if (k=="total") printf "%.0f", t/secs; if (k=="stall") print s; if (k=="login") print l}' <<<"$fair"; }
# rv KEY: KEY's value in every round ("floor" the mean of the two floors,
# "ratio" the rate over it), joined by "/"; rmed KEY: their median.
rv() { awk -v k="$1" '{for (i=1;i<NF;i++) v[$i]=$(i+1); f=($2+$3)/2; x=(k=="floor")?f:(k=="ratio")?(f>0?v["rate"]/f:0):v[k]
  printf "%s%s", (NR>1?"/":""), (k=="ratio")?sprintf("%.2f",x):(k ~ /gap|sign|idle|handovers/)?sprintf("%.1f",x):sprintf("%.0f",x)}' "$WORK/fair-rounds"; }
rmed() { rv "$1" | tr / '\n' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
row "4 processes ECDSA, share of signatures each, %" "$(fv shares)" ""
row "4 processes ECDSA, signs/s in all" "$(fv total)" ""
row "4 processes: longest wait for one signature, ms" "$(fv stall)" ""
row "4 processes: longest dlopen -> logged in, ms" "$(fv login)" ""
row "4 processes vs raw C floor (same swtpm), signs/s in all" "$(rmed rate)/s" "$(rmed ratio)"
row "  every round: ratio" "$(rv ratio)" ""
row "  every round: signs/s in all / raw floor" "$(rv rate) / $(rv floor)" ""
row "  turn hand-overs per s; gap p50 / p99 ms (1 sign: ms)" "$(rmed handovers); $(rmed gap_p50) / $(rmed gap_p99) ($(rmed sign_p50))" ""
row "  TPM idle at hand-overs, % of the time (every round)" "$(rv idle)" ""

# A server's day: nginx (Debian's, a master and 2 workers) serving TLS 1.3
# on loopback with its ECDSA P-256 key in the TPM, loaded in the master
# through OpenSSL's pkcs11 engine (as forking-servers-test.sh does); each
# worker signs through its helper (module/fork.c). testdata/tlsload makes
# SERVER_N full handshakes (no resumption: one signature each), 4 at once,
# after a warm-up that starts the helpers. Against the raw floor on the same
# swtpm before and after; where the CPU went: /proc/PID/stat of every
# process of the run before and after the loop, and the client's own.
NGINX_PID=
server_day() {
  local ENGINE URI PORT u g n=${SERVER_N:-1500}
  ENGINE=$(find /usr/lib -path '*engines-3/pkcs11.so' 2>/dev/null | head -1)
  command -v nginx >/dev/null && [ -n "$ENGINE" ] || { row "a server's day: no nginx or pkcs11 engine here" "-" ""; return 0; }
  kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true
  start_swtpm "$WORK/tpm-day"
  local D=$WORK/day sock=${TPM11_TPM#swtpm:unix:}
  mkdir -p "$D/ng"
  export TPM11_STORE=$D/store TPM11_SO_PIN=87654321 TPM11_PIN=123456
  (cd "$ROOT" && go build -o "$WORK/tlsload" ./testdata/tlsload) 2>&3 || { row "a server's day: tlsload did not build" "-" ""; return 0; }
  "$ROOT/build/tpm11" init --label web >/dev/null 2>&3 && "$ROOT/build/tpm11" keygen --type ec:p256 --id 01 --label web >/dev/null 2>&3 ||
    { row "a server's day: no key" "-" ""; return 0; }
  URI="pkcs11:token=web;object=web;type=private;pin-value=$TPM11_PIN"
  PKCS11_MODULE_PATH=$MODULE openssl req -new -x509 -engine pkcs11 -keyform engine -key "$URI" \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost -days 1 -out "$D/cert.pem" >/dev/null 2>&1 || { row "a server's day: no certificate" "-" ""; return 0; }
  printf '%s\n' "openssl_conf = openssl_init" "[openssl_init]" "engines = engine_section" "[engine_section]" \
    "pkcs11 = pkcs11_section" "[pkcs11_section]" "engine_id = pkcs11" "dynamic_path = $ENGINE" "MODULE_PATH = $MODULE" "init = 0" >"$D/openssl.cnf"
  u=$(id -un) g=$(id -gn)
  if [ "$(id -u)" = 0 ]; then # workers as nobody, as a real server's (their helpers need the TPM and the store)
    u=nobody g=$(id -gn nobody)
    chmod 711 "$WORK" "$WORK/tpm-day" "$D"; chmod 666 "$sock"; chown -R "$u:$g" "$TPM11_STORE"
  fi
  port_used() { awk -v p="$(printf ':%04X' "$1")" '$2 ~ p"$" { f = 1 } END { exit !f }' /proc/net/tcp /proc/net/tcp6; }
  # /proc/*/stat of processes that come and go: cat fails on those gone.
  stats() { cat /proc/[0-9]*/stat 2>/dev/null || true; }
  workers() { stats | awk -v m="$NGINX_PID" '$2 == "(nginx)" && $4 == m { print $1 }'; }
  for _ in 1 2 3 4 5; do
    PORT=$((20000 + RANDOM % 40000)) # free now, on loopback; another if taken meanwhile
    port_used "$PORT" && continue
    cat >"$D/ng/nginx.conf" <<EOF
user $u $g;
worker_processes 2;
master_process on;
daemon off;
pid $D/ng/nginx.pid;
error_log $D/ng/error.log notice;
env TPM11_TPM;
env TPM11_STORE;
ssl_engine pkcs11;
events { worker_connections 256; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$PORT ssl reuseport;
    ssl_protocols TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    ssl_certificate $D/cert.pem;
    ssl_certificate_key "engine:pkcs11:$URI";
    location / { return 200 "served\n"; }
  }
}
EOF
    OPENSSL_CONF=$D/openssl.cnf nginx -p "$D/ng" -c "$D/ng/nginx.conf" -e "$D/ng/error.log" 2>>"$D/ng/error.log" &
    NGINX_PID=$!
    trap 'kill $NGINX_PID 2>/dev/null || true; cleanup' EXIT # never left running
    for _ in $(seq 200); do
      port_used "$PORT" && [ "$(workers | wc -l)" -ge 2 ] && break
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$NGINX_PID" 2>/dev/null && port_used "$PORT" && break
    kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; NGINX_PID=
  done
  [ -n "$NGINX_PID" ] || { row "a server's day: nginx did not start" "$(tail -1 "$D/ng/error.log" | cut -c1-40)" ""; return 0; }
  local load="$WORK/tlsload -addr 127.0.0.1:$PORT -ca $D/cert.pem -c 4 -max 120s"
  $load -n 40 >/dev/null 2>&3 # warm-up: both workers' helpers started
  # cpu: "pid kind ticks" of swtpm, the master, its workers, their helpers.
  cpu() {
    local ws
    ws=" $(workers | tr '\n' ' ') "
    echo "$SWTPM_PID swtpm $(awk '{print $14 + $15}' /proc/$SWTPM_PID/stat)"
    echo "$NGINX_PID master $(awk '{print $14 + $15}' /proc/$NGINX_PID/stat)"
    stats | awk -v ws="$ws" '
      index(ws, " " $1 " ") && $2 == "(nginx)" { print $1, "workers", $14 + $15 }'
    # A worker's helper is not its child (started through setsid -f): it
    # carries TPM11_HELPER_OF=<worker pid> in its environment (docs/fork.md).
    local w e
    for w in $ws; do
      for e in $(grep -lsz "^TPM11_HELPER_OF=$w\$" /proc/[0-9]*/environ); do
        e=${e#/proc/}; e=${e%/environ}
        echo "$e helpers $(awk '{print $14 + $15}' "/proc/$e/stat" 2>/dev/null || echo 0)"
      done
    done
  }
  local a b before after out secs floor by
  a=$(rawrate "$sock")
  before=$(cpu)
  out=$($load -n "$n" 2>&3)
  after=$(cpu)
  b=$(rawrate "$sock")
  kill "$NGINX_PID" 2>/dev/null || true; for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true
  lv() { echo "$out" | awk -v k="$1" '$1 == k {print $2}'; }
  secs=$(lv seconds) floor=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f", (a + b) / 2 }')
  # CPU seconds in the loop by kind (processes present at both looks).
  by=$( { echo "$before" | sed 's/^/b /'; echo "$after" | sed 's/^/a /'; } | awk '
    $1 == "b" { t[$2] = $4 } $1 == "a" && ($2 in t) { c[$3] += ($4 - t[$2]) / 100 }
    END { printf "%.2f %.2f %.2f %.2f", c["workers"], c["helpers"], c["swtpm"], c["master"] }')
  local w h s m c=$(lv cpu_s) hs=$(lv handshakes)
  read -r w h s m <<<"$by"
  row "a server's day: nginx 2 workers, TLS 1.3 handshakes/s (errors)" "$(lv handshakes_per_s) ($(lv errors))" "$(ratio "$(lv handshakes_per_s)" "$floor")"
  row "  raw C floor ECDSA on its swtpm, signs/s (before / after)" "$floor ($a / $b)" ""
  row "  handshakes, 4 in flight; seconds; p50 / p99 ms" "$hs; $secs; $(lv p50_ms) / $(lv p99_ms)" ""
  row "  CPU s in the loop: client / workers / helpers / swtpm" "$c / $w / $h / $s" ""
  row "  CPU per handshake, ms: client / workers / helpers / swtpm" "$(awk -v n="$hs" -v c="$c" -v w="$w" -v h="$h" -v s="$s" 'BEGIN {
    if (n > 0) printf "%.2f / %.2f / %.2f / %.2f", 1e3*c/n, 1e3*w/n, 1e3*h/n, 1e3*s/n }')" ""
  row "  their share of the 2 cores' time in the loop, %" "$(awk -v t="$secs" -v c="$c" -v w="$w" -v h="$h" -v s="$s" -v m="$m" 'BEGIN {
    if (t > 0) printf "%.0f", 100*(c+w+h+s+m)/(2*t) }')" ""
}
server_day

# Post-quantum keys on the PQC test TPM (fwtpm_server, testdata/fwtpm.sh):
# the token beside the same TPM commands pre-marshalled on a connection of
# their own (tpmtoken's BenchmarkPQCVsFloor).
if FW=$("$ROOT/testdata/fwtpm.sh" 2>/dev/null); then
  # A failed PQC run says so in its row; the table above still stands.
  pq=$(cd "$ROOT" && TPM11_FWTPM=$FW go test -run '^$' -bench PQCVsFloor -benchtime "${N}x" ./tpmtoken/ 2>&1) ||
    { row "ML-DSA / ML-KEM on fwtpm: the benchmark failed" "$(echo "$pq" | grep -m1 -E 'Error|FAIL|fail' | cut -c1-40)" ""; pq=; }
  pv() { echo "$pq" | awk -v k="$1" -v u="$2" '/^Benchmark/ && $0 ~ k {for (i=1;i<NF;i++) if ($(i+1)==u) print $i}'; }
  row "ML-DSA-65 C_Sign on fwtpm, signs/s (vs raw commands)" "$(pv ML-DSA tpm11-ops/s)" "$(pv ML-DSA ratio)"
  row "  raw TPM2_SignSequenceStart+Complete, signs/s; TPM cmds per C_Sign" "$(pv ML-DSA floor-ops/s); $(pv ML-DSA tpm11-cmds/op)" ""
  row "ML-KEM-768 C_DecapsulateKey on fwtpm, /s (vs raw command)" "$(pv ML-KEM tpm11-ops/s)" "$(pv ML-KEM ratio)"
  row "  raw TPM2_Decapsulate, /s; TPM cmds per C_DecapsulateKey" "$(pv ML-KEM floor-ops/s); $(pv ML-KEM tpm11-cmds/op)" ""
  # The ML-KEM floor is TPM2_Decapsulate + TPM2_Create of the new key over
  # one kept salted session (the same protection); beside it, the ratio to
  # TPM2_Decapsulate alone. Every round's ratios (alternating floor/token).
  row "  ratio to TPM2_Decapsulate alone (same session)" "$(pv ML-KEM decap-only-ratio)" ""
  echo "$pq" | grep -oE 'ML-(DSA|KEM)-[0-9]+-[a-z]+ round [0-9]+:.*' | sed 's/^/    /'
else
  row "ML-DSA / ML-KEM (fwtpm_server could not be built)" "-" ""
fi

# HashML-DSA on the PQC test TPM (tpmtoken's BenchmarkHashMLDSAVsFloor):
# C_SignInit + C_Sign with CKM_HASH_ML_DSA_SHA384 on an ML-DSA-65 key
# bound to SHA-384, beside TPM2_SignDigest of the digest pre-marshalled on
# a connection of its own; every round's ratio (alternating floor/token).
if FW=$("$ROOT/testdata/fwtpm.sh" 2>/dev/null); then
  hq=$(cd "$ROOT" && TPM11_FWTPM=$FW go test -run '^$' -bench HashMLDSAVsFloor -benchtime "${N}x" ./tpmtoken/ 2>&1) ||
    { row "HashML-DSA on fwtpm: the benchmark failed" "$(echo "$hq" | grep -m1 -E 'Error|FAIL|fail' | cut -c1-40)" ""; hq=; }
  hv() { echo "$hq" | awk -v u="$1" '/^BenchmarkHashMLDSA/ {for (i=1;i<NF;i++) if ($(i+1)==u) print $i}'; }
  row "HashML-DSA-65/SHA-384 C_Sign on fwtpm, signs/s (vs raw command)" "$(hv tpm11-ops/s)" "$(hv ratio)"
  row "  raw TPM2_SignDigest, signs/s; TPM cmds per C_Sign" "$(hv floor-ops/s); $(hv tpm11-cmds/op)" ""
  echo "$hq" | grep -oE 'HashML-DSA-65/SHA-384 round [0-9]+:.*' | sed 's/^/    /'
else
  row "HashML-DSA (fwtpm_server could not be built)" "-" ""
fi

# AES-CCM and key decapsulation (issue 22; tpmtoken's BenchmarkCCMKEMVsFloor):
# C_Encrypt/C_Decrypt with CKM_AES_CCM of 1 KiB and 64 KiB, C_DecapsulateKey
# with RSA-OAEP (RSA-2048) and ECDH (P-256) into a sensitive AES key, each
# beside the same TPM commands pre-marshalled on a connection of their own
# to the same swtpm, in short alternating blocks (floor/token, then
# token/floor, ...): the ratio is the median of the pairs' ratios (floor
# block median latency / token block median latency), every round's median
# printed, and the pairs' quartiles. The floor: CCM, TPM2_EncryptDecrypt2
# (CBC-MAC and CTR passes, 1 KiB chunks); decapsulation, TPM2_RSA_Decrypt or
# TPM2_ECDH_ZGen plus the TPM2_Create that puts the result into the TPM,
# both over a salted session kept across calls with the secret encrypted
# on the bus both ways, as the token sends them. CPU: this process's, over
# the timed calls only.
kb=$(cd "$ROOT" && KEMBENCH_ROUNDS=${BENCH_ROUNDS:-5} go test -run '^$' -bench CCMKEMVsFloor -benchtime "$((N / 4 + 10))x" ./tpmtoken/ 2>&1) ||
  row "AES-CCM / decapsulation: the benchmark failed" "$(echo "$kb" | grep -m1 -E 'Error|FAIL|fail' | cut -c1-40)" ""
kv() { echo "$kb" | awk -v k="$1-" -v u="$2" 'index($0, k) && /ns\/op/ {for (i=1;i<NF;i++) if ($(i+1)==u) r=$i} END {print r}'; }
kr() { echo "$kb" | awk -v k="$1" '{for (i=1;i<NF-2;i++) if ($i=="kembench" && $(i+1)==k && $(i+2)=="rounds") r=$(i+3)} END {print r}'; }
kq() { echo "$kb" | awk -v k="$1" '{for (i=1;i<NF-2;i++) if ($i=="kembench" && $(i+1)==k && $(i+2)=="rates") r=$(i+3)} END {print r}'; }
kp() { echo "$kb" | awk -v k="$1" '{for (i=1;i<NF-8;i++) if ($i=="kembench" && $(i+1)==k) r=$(i+7)" / "$(i+9)" ("$(i+5)" pairs)"} END {print r}'; }
for c in CCM-1KiB-encrypt CCM-1KiB-decrypt CCM-64KiB-encrypt CCM-64KiB-decrypt; do
  row "AES-CCM $c, MB/s (vs raw TPM2_EncryptDecrypt2)" "$(kv "$c" tpm11-MB/s)" "$(kv "$c" ratio)"
  row "  raw MB/s; TPM cmds per call module / raw" "$(kv "$c" floor-MB/s); $(kv "$c" tpm11-cmds/op) / $(kv "$c" floor-cmds/op)" ""
  row "  CPU per call, us: module / raw client" "$(kv "$c" tpm11-cpu-µs/op) / $(kv "$c" floor-cpu-µs/op)" ""
  row "  every round" "$(kr "$c")" ""
  row "  every pair: ratio p25 / p75" "$(kp "$c")" ""
  row "  every round: raw:module rate" "$(kq "$c")" ""
done
for c in RSA-OAEP-2048-decapsulate ECDH-P256-decapsulate; do
  row "C_DecapsulateKey $c, /s (vs raw command + TPM2_Create)" "$(kv "$c" tpm11-ops/s)" "$(kv "$c" ratio)"
  row "  raw /s; TPM cmds per call module / raw" "$(kv "$c" floor-ops/s); $(kv "$c" tpm11-cmds/op) / $(kv "$c" floor-cmds/op)" ""
  row "  CPU per call, us: module / raw client" "$(kv "$c" tpm11-cpu-µs/op) / $(kv "$c" floor-cpu-µs/op)" ""
  row "  every round" "$(kr "$c")" ""
  row "  every pair: ratio p25 / p75" "$(kp "$c")" ""
  row "  every round: raw:module rate" "$(kq "$c")" ""
done
