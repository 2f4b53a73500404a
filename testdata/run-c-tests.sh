#!/usr/bin/env bash
# Builds the C test programs against our own header and runs them against
# build/libtpm11.so on a private swtpm and store.
source "$(dirname "$0")/lib.sh"
exec 3>&2 2>"$WORK/stderr.log"
for t in abi_test opstate_test conformance_test nopin_test interface_test overrun_test kem_test fork_test async_test async_join_test; do
  gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -I"$ROOT/module" -o "$WORK/$t" "$ROOT/testdata/c/$t.c" -ldl -lpthread 2>&3
done
# ccm_test checks the module's AES-CCM with libcrypto (libssl-dev).
gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -I"$ROOT/module" -o "$WORK/ccm_test" "$ROOT/testdata/c/ccm_test.c" -ldl -lpthread -lcrypto 2>&3
# template_test checks wrapped bytes and ECDH secrets with libcrypto.
gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -I"$ROOT/module" -o "$WORK/template_test" "$ROOT/testdata/c/template_test.c" -ldl -lpthread -lcrypto 2>&3
# childmech_test verifies a forked child's signatures with libcrypto;
# sha_test checks the child's own SHA (module/sha.c) against libcrypto's.
# With AddressSanitizer (its malloc/free serve the module too): a write to
# an op freed under a thread hashing into it is reported.
gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -fsanitize=address -I"$ROOT/module" -o "$WORK/childmech_test" "$ROOT/testdata/c/childmech_test.c" -ldl -lpthread -lcrypto 2>&3
gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -I"$ROOT/module" -o "$WORK/sha_test" "$ROOT/testdata/c/sha_test.c" "$ROOT/module/sha.c" -lcrypto 2>&3
"$WORK/sha_test" 2>&3 || exit 1
start_swtpm "$WORK/tpm"
export TPM11_STORE=$WORK/store
"$WORK/abi_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
TPM11_STORE=$WORK/store-ops "$WORK/opstate_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
TPM11_STORE=$WORK/store-nopin "$WORK/nopin_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
TPM11_STORE=$WORK/store-iface "$WORK/interface_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
# Two threads racing on one session, output buffers before guard pages.
TPM11_STORE=$WORK/store-overrun "$WORK/overrun_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
# Template attributes (CKA_WRAP_TEMPLATE, ...) set, read back and enforced.
TPM11_STORE=$WORK/store-templates "$WORK/template_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true

# Rules no client exercises (slot events, ...), on a TPM of their own.
start_swtpm "$WORK/tpm4"
TPM11_STORE=$WORK/store4 "$WORK/conformance_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true

# Forked children (pre-fork servers), 20 at a time in each scenario, on a
# TPM of their own: a token and an EC key made by pkcs11-tool.
start_swtpm "$WORK/tpm5"
P() { TPM11_STORE=$WORK/store5 pkcs11-tool --module "$MODULE" "$@" >/dev/null 2>&1 || { echo "FAIL: pkcs11-tool $*" >&3; exit 1; }; }
P --init-token --label fork --so-pin so-secret
P --token-label fork --login --login-type so --so-pin so-secret --init-pin --pin user-pin
P --token-label fork --login --pin user-pin --keypairgen --key-type EC:prime256v1 --id 01 --label fork
TPM11_STORE=$WORK/store5 "$WORK/fork_test" "$MODULE" user-pin 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
# 200 children at once (issue 21): all must sign, however slowly, each
# waiting its turn on the one swtpm; the bound only catches a hang.
REPS=200 FORK_SECONDS=1200 FORK_ONLY=initialized TPM11_STORE=$WORK/store5 "$WORK/fork_test" "$MODULE" user-pin 2>&3 ||
  { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
# A forked child signs with every hash-and-sign mechanism, which p11-kit's
# RPC mostly does not carry (its own token, on the same TPM).
ASAN_OPTIONS=detect_leaks=0 TPM11_STORE=$WORK/store-childmech "$WORK/childmech_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true

# A TPM that answers every command after 20 ms makes CKR_PENDING certain.
# (testdata/slowtpm relays the swtpm with that latency).
start_swtpm "$WORK/tpm2"
start_slowtpm 20ms
TPM11_STORE=$WORK/store2 TPM11_TPM=$SLOW_TPM "$WORK/async_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
# Key encapsulation both ways against openssl; on the slow TPM its async
# session would pend if encapsulation could (it must not).
mkdir -p "$WORK/kem"
TPM11_STORE=$WORK/store-kem TPM11_TPM=$SLOW_TPM "$WORK/kem_test" "$MODULE" "$WORK/kem" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
# AES-CCM both ways against libcrypto; its async session pends on the slow TPM.
TPM11_STORE=$WORK/store-ccm TPM11_TPM=$SLOW_TPM "$WORK/ccm_test" "$MODULE" 2>&3 || { tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }

# Two processes: A detaches a pending keygen and exits; B joins it by ID
# (on the same TPM without the latency).
TPM11_STORE=$WORK/store3 TPM11_TPM=$SLOW_TPM "$WORK/async_join_test" "$MODULE" start "$WORK/id" 2>&3 || exit 1
TPM11_STORE=$WORK/store3 "$WORK/async_join_test" "$MODULE" join "$WORK/id" 2>&3 || exit 1
