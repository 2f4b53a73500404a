#!/usr/bin/env bash
# Builds the C test programs against our own header and runs them against
# build/libtpm11.so on a private swtpm and store.
source "$(dirname "$0")/lib.sh"
exec 3>&2 2>"$WORK/swtpm.log"
gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -I"$ROOT/module" -o "$WORK/abi_test" "$ROOT/testdata/c/abi_test.c" -ldl -lpthread 2>&3
start_swtpm "$WORK/tpm"
export TPM11_STORE=$WORK/store
"$WORK/abi_test" "$MODULE" 2>&3 || { tail -5 "$WORK/swtpm.log" >&3; exit 1; }
