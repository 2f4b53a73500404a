#!/usr/bin/env bash
# Fleet enrollment end to end with a real CA: a device (its own swtpm with
# EK certificates from a private EK CA, and its own store) enrolls its AK
# with an attestation CA that has no TPM (enroll-ak --request, ca
# challenge, enroll-ak --answer, ca issue, enroll-ak --install); stock
# step-ca v0.30.2 (interop/cmd/acme-ca: step-ca's own ca.New + Run, built
# from the Go module proxy at the version interop/go.mod pins) runs an ACME
# provisioner with device-attest-01 trusting that attestation CA; ONE
# command, tpm11 acme, gets a certificate for a key made in the TPM and
# stores it next to the key; openssl s_server serves TLS with the key (on
# the token, through OpenSSL's pkcs11 engine) and that certificate (read
# back from the token with pkcs11-tool), and openssl s_client verifies it
# against step-ca's root. A second device whose only EK certificate is the
# ECC P-384 one gets a certificate for an RSA key the same way. Refused by
# the CA: a device claiming another's identifier ("permanent identifier
# does not match"), a device whose AK another attestation CA enrolled
# ("x5c is not valid"). A wrong nonce and a
# key imported from software (which tpm11 makes no evidence for) are refused
# by the same CA in interop/acme_test.go.
source "$(dirname "$0")/lib.sh"
set +o pipefail
for tool in swtpm_setup swtpm_localca pkcs11-tool; do
  command -v $tool >/dev/null || fail "$tool not found (Debian swtpm-tools, opensc)"
done
ENGINE=$(find /usr/lib -path '*engines-3/pkcs11.so' | head -1)
[ -n "$ENGINE" ] || fail "OpenSSL's pkcs11 engine is not installed (libengine-pkcs11-openssl)"
BIN=$ROOT/build/tpm11
T() { "$BIN" "$@"; }
cd "$WORK"
export TPM11_STORE=$WORK/store TPM11_PIN=userpin1 TPM11_SO_PIN=sopin123
unset TPM11_TOKEN TPM11_CONFIG TPM11_LOG
CA_PID= SRV_PID= B_PID= C_PID=
trap '[ -n "$SRV_PID" ] && kill $SRV_PID 2>/dev/null; [ -n "$CA_PID" ] && kill $CA_PID 2>/dev/null; [ -n "$B_PID" ] && kill $B_PID 2>/dev/null; [ -n "$C_PID" ] && kill $C_PID 2>/dev/null; cleanup' EXIT

# The attestation CA (no TPM, no store) and the device.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout attca.key -out attca.pem \
  -subj /CN=fleet-attestation-ca -days 2 -addext basicConstraints=critical,CA:true -addext keyUsage=keyCertSign 2>/dev/null
manufacture "$WORK/a" "$WORK/ek-a"
SWTPM_PID=$(start_on "$WORK/a")
export TPM11_TPM="swtpm:unix:$WORK/a/tpm.sock"
CA() { env -u TPM11_TPM TPM11_STORE=$WORK/no-store "$BIN" "$@" --state "$WORK/ca-state"; }
T init --label web >/dev/null
T keygen --type ec:p256 --id 01 --label web >/dev/null
# enroll_remote RUN EKDIR: the remote AK enrollment of the device that RUN
# runs tpm11 on, its EK certificates issued by the EK CA in EKDIR; prints
# enroll-ak --install's report.
enroll_remote() {
  local run=$1 ek=$2
  $run enroll-ak --request > req.json || fail "enroll-ak --request"
  CA ca challenge --ek-roots "$ek/swtpm-localca-rootca-cert.pem" --ek-roots "$ek/issuercert.pem" req.json > chal.json \
    || fail "ca challenge: $(cat chal.json)"
  $run enroll-ak --answer chal.json > proof.json || fail "enroll-ak --answer"
  CA ca issue req.json proof.json --ca-cert attca.pem --ca-key attca.key > akcert.pem || fail "ca issue: $(cat akcert.pem)"
  $run enroll-ak --install akcert.pem || fail "enroll-ak --install"
}
enroll_remote T "$WORK/ek-a" > enrolled
DEVICE=$(grep -o 'urn:ek:sha256:[A-Za-z0-9+/=]*' enrolled | head -1)
[ -n "$DEVICE" ] || fail "no device identifier: $(cat enrolled)"
pass "remote AK enrollment with a fleet attestation CA ($DEVICE)"

# step-ca, built from the module proxy's v0.30.2 (cached by go's build cache).
(cd "$ROOT/interop" && "${GO:-go}" build -o "$WORK/acme-ca" ./cmd/acme-ca) || fail "building interop/cmd/acme-ca (step-ca)"
"$WORK/acme-ca" -dir "$WORK/stepca" -attestation-roots attca.pem > stepca.out 2> stepca.log &
CA_PID=$!
end=$((SECONDS + 120))
until [ "$(wc -l < stepca.out)" -ge 2 ]; do
  kill -0 "$CA_PID" 2>/dev/null || fail "step-ca exited: $(tail -5 stepca.log)"
  [ "$SECONDS" -lt "$end" ] || fail "step-ca not up after 120 s: $(tail -5 stepca.log)"
  sleep 0.05
done
DIRURL=$(sed -n 1p stepca.out) CAROOT=$(sed -n 2p stepca.out)

# Bad invocations: one line, exit 2; a CA that does not answer: one line, exit 1.
for args in "--directory $DIRURL" "--id 01" "--id 01 --directory $DIRURL --ca-roots /nonexistent/roots.pem x y"; do
  rc=0; T acme $args > out 2>&1 || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l < out)" = 1 ] || fail "tpm11 acme $args: exit $rc: $(cat out)"
done
rc=0; T acme --id 01 --directory https://127.0.0.1:1/acme/tpm/directory --ca-roots "$CAROOT" --timeout 20s > out 2>&1 || rc=$?
[ "$rc" = 1 ] && [ "$(wc -l < out)" = 1 ] || fail "tpm11 acme, no CA: exit $rc: $(cat out)"

# One command: ACME account, order for the device, device-attest-01, CSR,
# certificate on the token.
T acme --id 01 --directory "$DIRURL" --ca-roots "$CAROOT" --chain-out chain.pem > acme.out 2>&1 \
  || fail "tpm11 acme: $(cat acme.out); step-ca: $(tail -3 stepca.log)"
grep -q "certificate added" acme.out || fail "tpm11 acme: $(cat acme.out)"
pkcs11-tool --module "$MODULE" --token-label web --read-object --type cert --id 01 -o cert.der >tool.log 2>&1 \
  || fail "the certificate is not on the token: $(tail -3 tool.log)"
openssl x509 -inform DER -in cert.der -noout -text > cert.txt
grep -q "Issuer: CN = interop step-ca intermediate" cert.txt || fail "issuer: $(grep Issuer cert.txt)"
grep -q "TLS Web Server Authentication" cert.txt || fail "no serverAuth: $(cat cert.txt)"
T export --id 01 > pub01.pem
diff <(openssl pkey -pubin -in pub01.pem -outform DER | od -An -tx1) \
     <(openssl x509 -inform DER -in cert.der -noout -pubkey | openssl pkey -pubin -outform DER | od -An -tx1) >/dev/null \
  || fail "the certificate is not for the key of id 01"
# The SAN is critical (no subject) and holds the PermanentIdentifier
# (RFC 4043) whose value is the device's identifier.
grep -q "Subject Alternative Name: critical" cert.txt && grep -q "othername: Permanent Identifier" cert.txt \
  || fail "no PermanentIdentifier: $(cat cert.txt)"
grep -qaF "$DEVICE" cert.der || fail "the certificate does not name $DEVICE"
pass "tpm11 acme: step-ca issued a certificate for the TPM key by device-attest-01, for $DEVICE, stored on the token"

# TLS with that key and certificate: openssl s_server through the pkcs11
# engine, openssl s_client verifying against step-ca's root.
awk '/BEGIN CERTIFICATE/{n++} n>=2' chain.pem > intermediates.pem
[ -s intermediates.pem ] || fail "no intermediate in the chain: $(cat chain.pem)"
URI="pkcs11:token=web;object=web;type=private;pin-value=$TPM11_PIN"
PKCS11_MODULE_PATH=$MODULE openssl s_server -engine pkcs11 -keyform engine -key "$URI" -certform DER -cert cert.der \
  -cert_chain intermediates.pem -accept 127.0.0.1:0 -naccept 1 -www > server.out 2> server.log &
SRV_PID=$!
end=$((SECONDS + 60))
until PORT=$(grep -o 'ACCEPT [^ ]*:[0-9]*' server.out | grep -o '[0-9]*$'); do
  kill -0 "$SRV_PID" 2>/dev/null || fail "openssl s_server exited: $(tail -5 server.log)"
  [ "$SECONDS" -lt "$end" ] || fail "openssl s_server not listening after 60 s"
  sleep 0.05
done
echo "GET / HTTP/1.0" | timeout 60 openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$CAROOT" -verify_return_error -ign_eof \
  -servername localhost > client.out 2> client.log || fail "openssl s_client: $(tail -5 client.log) $(tail -5 server.log)"
grep -q "Verify return code: 0 (ok)" client.out || fail "s_client: $(grep Verify client.out)"
grep -q "s_server" client.out || fail "no page served: $(tail -5 client.out)"
wait "$SRV_PID" 2>/dev/null || true
SRV_PID=
pass "openssl s_server serves TLS with the token key and the step-ca certificate; s_client -verify_return_error accepts it against step-ca's root"

# A TPM whose only EK certificate is the high-range ECC P-384 one (its RSA
# certificate removed with platform authorization), with an RSA key: the
# same flow, the certificate chaining to step-ca's root.
command -v tpm2_nvundefine >/dev/null || fail "tpm2_nvundefine not found (Debian tpm2-tools)"
manufacture "$WORK/c" "$WORK/ek-c"
C_PID=$(start_on "$WORK/c")
TPM2TOOLS_TCTI="swtpm:path=$WORK/c/tpm.sock" tpm2_nvundefine -C p 0x1c00002 >/dev/null 2>&1 || fail "tpm2_nvundefine"
C() { TPM11_TPM="swtpm:unix:$WORK/c/tpm.sock" TPM11_STORE=$WORK/store-c T "$@"; }
C init --label ecc-ek >/dev/null
C keygen --type rsa:2048 --id 01 --label rsa >/dev/null
enroll_remote C "$WORK/ek-c" > enrolled-c
CDEV=$(grep -o 'urn:ek:sha256:[A-Za-z0-9+/=]*' enrolled-c | head -1)
[ -n "$CDEV" ] && [ "$CDEV" != "$DEVICE" ] || fail "device C's identifier: $(cat enrolled-c)"
C acme --id 01 --directory "$DIRURL" --ca-roots "$CAROOT" --chain-out chain-c.pem > out 2>&1 || fail "tpm11 acme, ECC-only EK: $(cat out)"
awk '/BEGIN CERTIFICATE/{n++} n==1' chain-c.pem > leaf-c.pem
openssl verify -CAfile "$CAROOT" -untrusted intermediates.pem -purpose sslserver leaf-c.pem >/dev/null || fail "C's certificate does not chain"
openssl x509 -in leaf-c.pem -noout -text | grep -q "Public-Key: (2048 bit)" || fail "C's certificate is not for its RSA key"
grep -qaF "$CDEV" <(openssl x509 -in leaf-c.pem -outform DER) || fail "C's certificate does not name $CDEV"
# Device A claiming device C's identifier: step-ca binds the AK certificate's.
! T acme --id 01 --replace --permanent-identifier "$CDEV" --directory "$DIRURL" --ca-roots "$CAROOT" > out 2>&1 \
  || fail "step-ca issued for another device's identifier"
grep -q "permanent identifier does not match" out || fail "another identifier: $(cat out)"
kill "$C_PID"; C_PID=
pass "an ECC-only-EK TPM (P-384 EK) with an RSA-2048 key: remote enrollment, tpm11 acme, a certificate for $CDEV; A claiming it is refused"

# A device whose AK another attestation CA enrolled: step-ca refuses it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rogue.key -out rogue.pem \
  -subj /CN=rogue-attestation-ca -days 2 -addext basicConstraints=critical,CA:true -addext keyUsage=keyCertSign 2>/dev/null
manufacture "$WORK/b" "$WORK/ek-b"
B_PID=$(start_on "$WORK/b")
B() { TPM11_TPM="swtpm:unix:$WORK/b/tpm.sock" TPM11_STORE=$WORK/store-b T "$@"; }
B init --label other >/dev/null
B keygen --type ec:p256 --id 01 --label other >/dev/null
B enroll-ak --ca-cert rogue.pem --ca-key rogue.key --ek-roots "$WORK/ek-b/swtpm-localca-rootca-cert.pem" \
  --ek-roots "$WORK/ek-b/issuercert.pem" >/dev/null || fail "enroll-ak on B"
! B acme --id 01 --directory "$DIRURL" --ca-roots "$CAROOT" > out 2>&1 || fail "step-ca issued for an AK it did not enroll"
grep -q "refused the attestation" out && grep -q "x5c is not valid" out || fail "un-enrolled AK: $(cat out)"
B list > blist; grep -qi "certificate" blist && fail "B got a certificate: $(cat blist)"
# A key imported from software: tpm11 makes no evidence, so no order is answered.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out soft.pem 2>/dev/null
T import --id 02 --label soft soft.pem >/dev/null
! T acme --id 02 --directory "$DIRURL" --ca-roots "$CAROOT" > out 2>&1 || fail "a certificate for an imported key"
grep -q "not generated in the TPM" out || fail "imported key: $(cat out)"
pass "refused: an AK enrolled by another attestation CA (step-ca: x5c is not valid); an imported key gets no evidence to send"
