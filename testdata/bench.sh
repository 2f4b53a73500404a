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
row "forked child (helper, p11-kit RPC): ECDSA signs/s" "$(v ec_child_signs_per_s) ($(v ec_child_errors))" "$(ratio "$(v ec_child_signs_per_s)" "$(v ec_raw_sync1_signs_per_s)")"
row "  same loop in the parent (ratio above: child/parent)" "$(v ec_raw_sync1_signs_per_s) ($(v ec_raw_sync1_errors))" ""
row "  p50 ms child / parent" "$(v ec_child_p50_ms) / $(v ec_raw_sync1_p50_ms)" ""
row "  child's C_Initialize (starts its helper), ms" "$(v ec_child_init_ms)" ""
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

# Four processes signing at once for FAIR_SECONDS on a swtpm of their own:
# each one's share, the longest wait for one signature, the longest start
# (dlopen) to logged in.
kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true
start_swtpm "$WORK/tpm-fair"
TPM11_STORE=$WORK/store-fair "$WORK/fair" "$MODULE" init >/dev/null 2>&3
pids=
for p in 1 2 3 4; do
  TPM11_STORE=$WORK/store-fair "$WORK/fair" "$MODULE" sign "${FAIR_SECONDS:-10}" >"$WORK/fair$p" 2>&3 &
  pids="$pids $!"
done
wait $pids
fair=$(cat "$WORK"/fair[1-4])
fv() { awk -v k="$1" -v secs="${FAIR_SECONDS:-10}" '{n[NR]=$2; t+=$2; if ($4>l) l=$4; if ($6>s) s=$6}
  END {if (k=="shares") {for (i=1;i<=NR;i++) printf "%s%.0f", (i>1?"/":""), 100*n[i]/t}
       if (k=="total") printf "%.0f", t/secs; if (k=="stall") print s; if (k=="login") print l}' <<<"$fair"; }
row "4 processes ECDSA, share of signatures each, %" "$(fv shares)" ""
row "4 processes ECDSA, signs/s in all" "$(fv total)" ""
row "4 processes: longest wait for one signature, ms" "$(fv stall)" ""
row "4 processes: longest dlopen -> logged in, ms" "$(fv login)" ""

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

# AES-CCM and key decapsulation (issue 22; tpmtoken's BenchmarkCCMKEMVsFloor):
# C_Encrypt/C_Decrypt with CKM_AES_CCM of 1 KiB and 64 KiB, C_DecapsulateKey
# with RSA-OAEP (RSA-2048) and ECDH (P-256) into a sensitive AES key, each
# beside the same TPM commands pre-marshalled on a connection of their own
# to the same swtpm, in rounds (floor, token, floor); every round's ratio.
# The floor: CCM, TPM2_EncryptDecrypt2 (CBC-MAC and CTR passes, 1 KiB
# chunks); decapsulation, TPM2_RSA_Decrypt or TPM2_ECDH_ZGen plus the
# TPM2_Create that puts the sensitive result into the TPM.
kb=$(cd "$ROOT" && KEMBENCH_ROUNDS=${BENCH_ROUNDS:-5} go test -run '^$' -bench CCMKEMVsFloor -benchtime "$((N / 4 + 10))x" ./tpmtoken/ 2>&1) ||
  row "AES-CCM / decapsulation: the benchmark failed" "$(echo "$kb" | grep -m1 -E 'Error|FAIL|fail' | cut -c1-40)" ""
kv() { echo "$kb" | awk -v k="$1-" -v u="$2" 'index($0, k) && /ns\/op/ {for (i=1;i<NF;i++) if ($(i+1)==u) r=$i} END {print r}'; }
kr() { echo "$kb" | awk -v k="$1" '{for (i=1;i<NF-2;i++) if ($i=="kembench" && $(i+1)==k) r=$(i+3)} END {print r}'; }
for c in CCM-1KiB-encrypt CCM-1KiB-decrypt CCM-64KiB-encrypt CCM-64KiB-decrypt; do
  row "AES-CCM $c, MB/s (vs raw TPM2_EncryptDecrypt2)" "$(kv "$c" tpm11-MB/s)" "$(kv "$c" ratio)"
  row "  raw MB/s; TPM cmds per call module / raw" "$(kv "$c" floor-MB/s); $(kv "$c" tpm11-cmds/op) / $(kv "$c" floor-cmds/op)" ""
  row "  CPU per call, us: module / raw client (+ its key setup)" "$(kv "$c" tpm11-cpu-µs/op) / $(kv "$c" floor-cpu-µs/op)" ""
  row "  every round" "$(kr "$c")" ""
done
for c in RSA-OAEP-2048-decapsulate ECDH-P256-decapsulate; do
  row "C_DecapsulateKey $c, /s (vs raw command + TPM2_Create)" "$(kv "$c" tpm11-ops/s)" "$(kv "$c" ratio)"
  row "  raw /s; TPM cmds per call module / raw" "$(kv "$c" floor-ops/s); $(kv "$c" tpm11-cmds/op) / $(kv "$c" floor-cmds/op)" ""
  row "  CPU per call, us: module / raw client (+ its key setup)" "$(kv "$c" tpm11-cpu-µs/op) / $(kv "$c" floor-cpu-µs/op)" ""
  row "  every round" "$(kr "$c")" ""
done
