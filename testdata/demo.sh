#!/usr/bin/env bash
# The main job on any machine, TPM or not: a token on the TPM simulator
# (chosen explicitly: served by `tpm11 simulator`, which the module
# reaches on a socket; the module itself carries no simulator), an EC key
# generated inside it, a signature made by it and checked by openssl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODULE=$ROOT/build/libtpm11.so
WORK=$(mktemp -d)
SIM_PID=
trap '[ -z "$SIM_PID" ] || { kill "$SIM_PID"; wait "$SIM_PID"; } 2>/dev/null; rm -rf "$WORK"' EXIT
export TPM11_STORE=$WORK/store
# The simulator prints one line when it is ready.
exec {SIM}< <(exec "$ROOT/build/tpm11" simulator --listen "unix:$WORK/tpm.sock")
SIM_PID=$!
read -r -u "$SIM" ready || { echo "demo: the TPM simulator did not start" >&2; exit 1; }
echo "$ready"
export TPM11_TPM=simulator:unix:$WORK/tpm.sock
P() { pkcs11-tool --module "$MODULE" "$@"; }

# (not piped into grep: grep may stop early and the program die of SIGPIPE)
info=$("$ROOT/build/tpm11" info) || true
grep -i warning <<<"$info" || true
P --init-token --label demo --so-pin 87654321
P --token-label demo --login --login-type so --so-pin 87654321 --init-pin --pin 123456
P --token-label demo --login --pin 123456 --keypairgen --key-type EC:prime256v1 --id 01 --label demo-key
P --token-label demo --read-object --type pubkey --id 01 -o "$WORK/pub.der"
openssl pkey -pubin -inform DER -in "$WORK/pub.der" -out "$WORK/pub.pem"
echo "hello from a TPM-resident key" > "$WORK/msg"
P --token-label demo --login --pin 123456 --sign --id 01 -m ECDSA-SHA256 \
  --signature-format openssl -i "$WORK/msg" -o "$WORK/sig"
openssl dgst -sha256 -verify "$WORK/pub.pem" -signature "$WORK/sig" "$WORK/msg"
echo "demo: signature made in the (simulated) TPM verified by openssl"
