#!/usr/bin/env bash
# Processes killed at random points (SIGKILL) on one swtpm and one store,
# KILLS times (bounded by count and by time): after each kill a new process
# logs in (sessions and objects the dead left in the TPM are reclaimed),
# sees every key pair whole (never a private key without its public half),
# every key reported created, none reported deleted, and the store holds no
# temporary file of a dead writer.
source "$(dirname "$0")/lib.sh"
exec 3>&2 2>"$WORK/stderr.log"
KILLS=${KILLS:-20}
LIMIT=${LIMIT:-90}
for t in crash_test secrets_test; do
  gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -I"$ROOT/module" -o "$WORK/$t" "$ROOT/testdata/c/$t.c" -ldl 2>&3
done
start_swtpm "$WORK/tpm"
export TPM11_STORE=$WORK/store
"$WORK/crash_test" "$MODULE" init 2>&3 || fail "init"
log=$WORK/created.log
: >"$log"
end=$((SECONDS + LIMIT))
kills=0
while [ "$kills" -lt "$KILLS" ] && [ "$SECONDS" -lt "$end" ]; do
  "$WORK/crash_test" "$MODULE" work >>"$log" 2>>"$WORK/work.err" &
  pid=$!
  # 0-400 ms: at start-up, at login, mid key generation, mid delete.
  sleep "0.$(printf '%03d' $((RANDOM % 400)))"
  kill -9 "$pid" 2>/dev/null || { wait "$pid"; fail "the worker exited by itself: $(tail -3 "$WORK/work.err")"; }
  wait "$pid" 2>/dev/null || true
  kills=$((kills + 1))
  # A line cut short by the kill is no report.
  sed -i -n '/^\(created\|deleting\|deleted\) [0-9a-f]\{16\}$/p' "$log"
  out=$(timeout 30 "$WORK/crash_test" "$MODULE" check "$log" 2>&1) || { swtpm_logs >&3; fail "after kill $kills: $out"; }
  left=$(find "$WORK/store" -name '.tmp-*' -o -name '.txn-*' | wc -l)
  [ "$left" = 0 ] || fail "after kill $kills: temporary files of dead writers left: $(find "$WORK/store" -name '.tmp-*' -o -name '.txn-*')"
done
[ "$kills" -ge 5 ] || fail "only $kills kills in ${LIMIT}s"
pass "$kills processes killed at random points: every login worked, every key pair whole, $(echo "$out" | tail -1), no temporary files left"
kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true

# No copy of a PIN survives C_Logout or C_Finalize (a scan of the process's
# own memory).
start_swtpm "$WORK/tpm-secrets"
out=$(TPM11_STORE=$WORK/store-secrets "$WORK/secrets_test" "$MODULE" 2>&1) || fail "secrets: $out"
pass "secrets: $out"
kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true

# Four processes signing at once on one swtpm: each gets its share, none
# waits long for a signature or to log in.
start_swtpm "$WORK/tpm-fair"
export TPM11_STORE=$WORK/store-fair
gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -I"$ROOT/module" -o "$WORK/fair_test" "$ROOT/testdata/c/fair_test.c" -ldl 2>&3
"$WORK/fair_test" "$MODULE" init 2>&3 || fail "fair init"
pids=
for p in 1 2 3 4; do
  "$WORK/fair_test" "$MODULE" sign "${FAIR_SECONDS:-5}" >"$WORK/fair$p" 2>&3 &
  pids="$pids $!"
done
wait $pids || fail "a signing process failed"
out=$(cat "$WORK"/fair[1-4])
verdict=$(awk '{n[NR]=$2; t+=$2; if ($4>login) login=$4; if ($6>stall) stall=$6}
  END {min=100; for (i=1;i<=NR;i++) {s=100*n[i]/t; if (s<min) min=s; shares=shares sprintf("%.0f%% ", s)}
       ok = NR==4 && min>=15 && stall<1000 && login<1000
       printf "%s shares %s(lowest %.1f%%), %d signs/s in all, longest wait for a signature %d ms, longest start to logged in %d ms\n",
         ok ? "ok" : "bad", shares, min, t/'"${FAIR_SECONDS:-5}"', stall, login}' <<<"$out")
[ "${verdict%% *}" = ok ] || fail "4 processes: ${verdict#* }: $(tr '\n' ';' <<<"$out")"
pass "4 processes: ${verdict#* }"
