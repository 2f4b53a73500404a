#!/usr/bin/env bash
# make bench: every figure measured in this run, each part on its own fresh
# swtpm: the raw TPM floor (go-tpm TPM2_Sign, persistent connection) and
# libtpm11.so driven from C. Prints one table.
source "$(dirname "$0")/lib.sh"
exec 3>&2 2>"$WORK/stderr.log"
N=${N:-400}
gcc -std=c11 -D_GNU_SOURCE -O2 -I"$ROOT/module" -o "$WORK/bench" "$ROOT/testdata/c/bench.c" -ldl -lpthread 2>&3
# The floor is measured before and after the module and averaged: this
# machine's speed drifts by tens of percent over a minute.
floor() { (cd "$ROOT" && go test -run '^$' -bench SignVsFloor -benchtime ${N}x ./tpmtoken/ 2>/dev/null); }
pick() { awk -v k="$1" '$0 ~ k {for (i=1;i<NF;i++) if ($(i+1)=="floor-signs/s") print $i}'; }
floor1=$(floor)
more=$(cd "$ROOT" && go test -run '^$' -bench 'Commands|ManyObjects' -benchtime 1x ./tpmtoken/ 2>/dev/null)
m() { echo "$more" | awk -v k="$1" '{for (i=1;i<NF;i++) if ($(i+1)==k) print $i}'; }

start_swtpm "$WORK/tpm"
export TPM11_STORE=$WORK/store
pkcs11-tool --module "$MODULE" --init-token --label bench --so-pin so-secret >/dev/null 2>&1
pkcs11-tool --module "$MODULE" --token-label bench --login --login-type so --so-pin so-secret --init-pin --pin user-pin >/dev/null 2>&1
"$WORK/bench" "$MODULE" "$N" > "$WORK/out" 2>&3
floor2=$(floor)
mean() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (a + b) / 2 }'; }
ec_floor=$(mean "$(echo "$floor1" | pick ECDSA-P256)" "$(echo "$floor2" | pick ECDSA-P256)")
rsa_floor=$(mean "$(echo "$floor1" | pick RSA2048)" "$(echo "$floor2" | pick RSA2048)")
v() { awk -v k="$1" '$1==k {print $2}' "$WORK/out"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '%-52s %12s %8s\n' "measure (swtpm, same run)" "value" "ratio"
printf '%-52s %12s %8s\n' "raw floor ECDSA P-256 (go-tpm TPM2_Sign), signs/s" "$ec_floor" ""
printf '%-52s %12s %8s\n' "  (floor before / after the module)" "$(echo "$floor1" | pick ECDSA-P256) / $(echo "$floor2" | pick ECDSA-P256)" ""
printf '%-52s %12s %8s\n' "raw floor RSA-2048 PKCS#1, signs/s" "$rsa_floor" ""
printf '%-52s %12s %8s\n' "sync 1 thread ECDSA P-256, signs/s" "$(v ec_sync1_signs_per_s)" "$(ratio "$(v ec_sync1_signs_per_s)" "$ec_floor")"
printf '%-52s %12s %8s\n' "  p50 / p99 ms" "$(v ec_sync1_p50_ms) / $(v ec_sync1_p99_ms)" ""
printf '%-52s %12s %8s\n' "sync 1 thread RSA-2048 SHA256-RSA-PKCS, signs/s" "$(v rsa_sync1_signs_per_s)" "$(ratio "$(v rsa_sync1_signs_per_s)" "$rsa_floor")"
printf '%-52s %12s %8s\n' "  p50 / p99 ms" "$(v rsa_sync1_p50_ms) / $(v rsa_sync1_p99_ms)" ""
printf '%-52s %12s %8s\n' "8 threads, own sessions, ECDSA signs/s (errors)" "$(v ec_threads8_signs_per_s) ($(v ec_threads8_errors))" "$(ratio "$(v ec_threads8_signs_per_s)" "$ec_floor")"
printf '%-52s %12s %8s\n' "1 thread, 32 async sessions, ECDSA signs/s (errors)" "$(v ec_async32_signs_per_s) ($(v ec_async32_errors))" "$(ratio "$(v ec_async32_signs_per_s)" "$ec_floor")"
printf '%-52s %12s %8s\n' "C_Sign returning CKR_PENDING p50 / p99 us" "$(v pending_return_p50_us) / $(v pending_return_p99_us)" ""
printf '%-52s %12s %8s\n' "dlopen -> logged in, ms" "$(v dlopen_to_logged_in_ms)" ""
printf '%-52s %12s %8s\n' "RSS added by loading + login, MB" "$(v rss_module_mb)" ""
printf '%-52s %12s %8s\n' "RSS added by 1,000 open sessions, MB" "$(v rss_1000_sessions_mb)" ""
printf '%-52s %12s %8s\n' "TPM commands, start to logged in" "$(m cmds-to-login)" ""
printf '%-52s %12s %8s\n' "TPM commands per steady-state C_Sign" "$(m cmds/sign)" ""
printf '%-52s %12s %8s\n' "10,000 objects: C_Initialize, ms" "$(m init-ms)" ""
printf '%-52s %12s %8s\n' "10,000 objects: first find (reads the store), ms" "$(m first-find-ms)" ""
printf '%-52s %12s %8s\n' "10,000 objects: find by attribute, ms" "$(m find-ms)" ""
