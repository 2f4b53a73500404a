#!/usr/bin/env bash
# ML-DSA and ML-KEM through build/libtpm11.so on the PQC test TPM
# (wolfTPM's fwtpm_server, built once by testdata/fwtpm.sh): a C program
# (testdata/c/pqc_test.c) drives the module; testdata/pqctool (circl, Go's
# crypto/mlkem) verifies and encapsulates independently. Fails, never
# skips, when the test TPM cannot be built.
source "$(dirname "$0")/lib.sh"
FW=$("$ROOT/testdata/fwtpm.sh") || fail "the PQC test TPM (fwtpm_server) could not be built"
command -v tpm2_startup >/dev/null || fail "tpm2_startup not found (Debian package tpm2-tools)"
(cd "$ROOT" && go build -o "$WORK/pqctool" ./testdata/pqctool) || fail "pqctool does not build"
# HashML-DSA is verified by @noble/post-quantum under node (no Go library
# has it): its dependencies installed once into a cache (testdata/pqcverify.sh).
NOBLE=$("$ROOT/testdata/pqcverify.sh") || fail "the HashML-DSA verifier (testdata/pqcverify: node, npm ci) could not be installed"
mkdir -p "$WORK/pqcverify"
cp "$ROOT/testdata/pqcverify/verify.mjs" "$WORK/pqcverify/"
ln -s "$NOBLE/node_modules" "$WORK/pqcverify/node_modules"
printf '#!/bin/sh\nexec node "%s" "$@"\n' "$WORK/pqcverify/verify.mjs" > "$WORK/hashverify"
chmod +x "$WORK/hashverify"
gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -I"$ROOT/module" -o "$WORK/pqc_test" "$ROOT/testdata/c/pqc_test.c" -ldl || fail "pqc_test.c does not build"

# start_fwtpm DIR: fwtpm_server on a free loopback port (the platform port
# is the next one), sent TPM2_Startup; sets TPM11_TPM. A port taken in the
# meantime makes the server exit at once: another is tried.
FW_PID=
start_fwtpm() {
  local d=$1 try port end
  mkdir -p "$d"
  for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    (cd "$d" && exec "$FW" --port "$port" --platform-port $((port + 1)) >"$d/fwtpm.log" 2>&1) &
    FW_PID=$!
    end=$((SECONDS + 20))
    until tpm2_getcap -T "mssim:host=127.0.0.1,port=$port" properties-fixed >/dev/null 2>&1; do
      kill -0 "$FW_PID" 2>/dev/null || break
      [ "$SECONDS" -lt "$end" ] || fail "fwtpm_server not ready after 20 s: $(cat "$d/fwtpm.log")"
      sleep 0.05
    done
    if kill -0 "$FW_PID" 2>/dev/null; then
      # TPM_RC_INITIALIZE (already started) is no failure.
      tpm2_startup -c -T "mssim:host=127.0.0.1,port=$port" >/dev/null 2>&1 || true
      export TPM11_TPM="swtpm:tcp:127.0.0.1:$port"
      return 0
    fi
  done
  fail "fwtpm_server did not start: $(cat "$d/fwtpm.log")"
}
stop_fwtpm() { [ -n "$FW_PID" ] && kill "$FW_PID" 2>/dev/null; wait "$FW_PID" 2>/dev/null || true; FW_PID=; }
trap 'stop_fwtpm; cleanup' EXIT

start_fwtpm "$WORK/fw"
mkdir -p "$WORK/pqc"
TPM11_STORE=$WORK/store "$WORK/pqc_test" "$MODULE" "$WORK/pqc" "$WORK/pqctool" "$WORK/hashverify" || fail "pqc_test (fwtpm log: $(tail -3 "$WORK/fw/fwtpm.log"))"
pass "ML-DSA-44/65/87 signatures verified by circl, HashML-DSA (SHA-256/384) ones by @noble/post-quantum, ML-KEM-512/768/1024 decapsulated to Go's secrets, through the module on fwtpm_server"

# The tpm11 command: keygen --type ml-dsa-65, export (the SPKI circl reads),
# the key listed; swtpm-less TPM types are named in keygen's error.
(cd "$ROOT" && go build -o "$WORK/tpm11" ./cmd/tpm11) || fail "tpm11 does not build"
export TPM11_STORE=$WORK/store-cli TPM11_SO_PIN=87654321 TPM11_PIN=123456
"$WORK/tpm11" init --label pq >/dev/null || fail "tpm11 init"
"$WORK/tpm11" keygen --type ml-dsa-65 --label pq-sign > "$WORK/keygen.out" || fail "tpm11 keygen --type ml-dsa-65: $(cat "$WORK/keygen.out")"
grep -q "ML-DSA-65 key pair" "$WORK/keygen.out" || fail "keygen output: $(cat "$WORK/keygen.out")"
"$WORK/tpm11" export --label pq-sign > "$WORK/pq.pem" || fail "tpm11 export"
[ "$("$WORK/pqctool" name "$WORK/pq.pem")" = ML-DSA-65 ] || fail "the exported key is not ML-DSA-65 to circl"
"$WORK/tpm11" keygen --type ml-kem-768 --label pq-kem > "$WORK/keygen.out" || fail "tpm11 keygen --type ml-kem-768: $(cat "$WORK/keygen.out")"
"$WORK/tpm11" list > "$WORK/list.out" || fail "tpm11 list"
grep -q "ML-DSA" "$WORK/list.out" && grep -q "ML-KEM" "$WORK/list.out" || fail "tpm11 list: $(cat "$WORK/list.out")"
printf 'signed by tpm11 sign' > "$WORK/m.txt"; : > "$WORK/empty"
"$WORK/tpm11" sign --label pq-sign -i "$WORK/m.txt" -o "$WORK/m.sig" || fail "tpm11 sign with the ML-DSA key"
sed '1d;$d' "$WORK/pq.pem" | base64 -d > "$WORK/pq.der"
"$WORK/pqctool" verify "$WORK/pq.der" "$WORK/m.txt" "$WORK/empty" "$WORK/m.sig" ||
  fail "circl rejects tpm11 sign's ML-DSA signature"
"$WORK/tpm11" verify --label pq-sign --signature "$WORK/m.sig" -i "$WORK/m.txt" >/dev/null || fail "tpm11 verify of its own ML-DSA signature"
pass "tpm11 keygen --type ml-dsa-65 / ml-kem-768, export read by circl, sign verified by circl"
