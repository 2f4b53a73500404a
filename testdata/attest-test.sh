#!/usr/bin/env bash
# What a TPM can prove, through the tpm11 command, the module and real
# tools, on a swtpm manufactured by swtpm_setup with EK certificates from a
# private local CA (never /var/lib/swtpm-localca):
# - key attestation: attest -> verify-attestation --activate against the EK
#   CA; enroll-ak with a local attestation CA -> the ACME and WebAuthn forms
#   verify with that CA alone; a key imported from software gets no
#   evidence; a tampered statement or public_key, another TPM's evidence and
#   a wrong nonce fail; pkcs11-tool reads CKA_TPM11_ATTESTATION;
# - remote enrollment: a second machine (its own swtpm and store) enrolls
#   with a CA that has no TPM and no store (enroll-ak --request, ca
#   challenge, enroll-ak --answer, ca issue, enroll-ak --install); a
#   replayed proof and another TPM's answer fail;
# - a key bound to PCR 16 signs through the module until tpm2_pcrextend,
#   then fails; an authority's approval of the next value keeps another key
#   signing;
# - a tpm2-openssl key linked into the token signs through pkcs11-tool; a
#   portable token key exported signs in openssl -provider tpm2.
source "$(dirname "$0")/lib.sh"
set +o pipefail
for tool in swtpm_setup swtpm_localca tpm2_pcrextend; do
  command -v $tool >/dev/null || fail "$tool not found (Debian swtpm-tools, tpm2-tools)"
done
[ -f "$(openssl version -m | sed 's/.*"\(.*\)"/\1/')/tpm2.so" ] || fail "tpm2-openssl not installed (Debian tpm2-openssl)"
BIN=$ROOT/build/tpm11
T() { "$BIN" "$@"; }
cd "$WORK"
export TPM11_STORE=$WORK/store TPM11_PIN=userpin1 TPM11_SO_PIN=sopin123 TPM11_NEW_PIN=userpin1
unset TPM11_TOKEN TPM11_CONFIG TPM11_LOG

manufacture "$WORK/a" "$WORK/ca-a"
SWTPM_PID=$(start_on "$WORK/a")
export TPM11_TPM="swtpm:unix:$WORK/a/tpm.sock"
EKCA=("--ek-roots" "$WORK/ca-a/swtpm-localca-rootca-cert.pem" "--ek-roots" "$WORK/ca-a/issuercert.pem")
T init --label attest >/dev/null
T keygen --type ec:p256 --id 01 --label attested >/dev/null

# --- Key attestation ---------------------------------------------------------
T attest --id 01 --nonce 0a0b0c > ev.json
grep -q '"format": "tpm11-key-attestation/1"' ev.json || fail "attest: $(head -c 300 ev.json)"
T verify-attestation ev.json "${EKCA[@]}" --nonce 0a0b0c --activate > verified || fail "verify by activation: $(cat verified)"
grep -q "credential activation" verified || fail "verify: $(cat verified)"
T export --id 01 > pub01.pem
diff <(openssl pkey -pubin -in pub01.pem -outform DER | od -An -tx1) \
     <(sed -n '/BEGIN PUBLIC KEY/,$p' verified | openssl pkey -pubin -outform DER | od -An -tx1) >/dev/null \
  || fail "the verified key is not the key of id 01"
T attest --id 01 --nonce 0a0b0c --format pem > ev.pem
T verify-attestation ev.pem "${EKCA[@]}" --nonce 0a0b0c --activate >/dev/null || fail "verify the PEM form"
! T verify-attestation ev.json "${EKCA[@]}" --nonce 0a0b0d --activate >out 2>&1 || fail "a wrong nonce verified"
! T verify-attestation ev.json "${EKCA[@]}" --nonce 0a0b0c >out 2>&1 || fail "verified without binding the AK"
grep -q "not bound" out || fail "no AK binding: $(cat out)"
# Tampered: one base64 character of the certified public area changed.
perl -0pe 's/("public": ")(.{40})(.)/$1.$2.($3 eq "A" ? "B" : "A")/e' ev.json > tampered.json
cmp -s ev.json tampered.json && fail "tampering changed nothing"
! T verify-attestation tampered.json "${EKCA[@]}" --nonce 0a0b0c --activate >out 2>&1 || fail "a tampered statement verified"
# The public_key shown (for people) must be the attested key.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out soft.pem 2>/dev/null
perl -0pe 'BEGIN { local $/; open P, "-|", "openssl pkey -in soft.pem -pubout"; $k = <P>; $k =~ s/\n/\\n/g }
  s/"public_key": "[^"]*"/"public_key": "$k"/' ev.json > otherkey.json
cmp -s ev.json otherkey.json && fail "public_key unchanged"
! T verify-attestation otherkey.json "${EKCA[@]}" --nonce 0a0b0c --activate >out 2>&1 || fail "another public_key verified"
grep -q "public_key is not the key" out || fail "public_key: $(cat out)"
# A key imported from software: no evidence.
T import --id 02 --label soft soft.pem >/dev/null
! T attest --id 02 --nonce 0a0b0c > soft.json 2>out || fail "evidence for an imported key"
grep -q "not generated in the TPM" out || fail "imported key: $(cat out)"
for f in pem acme webauthn; do
  ! T attest --id 02 --format $f --rp-id x --client-data-hash $(printf x | sha256sum | cut -c1-64) >/dev/null 2>&1 || fail "$f evidence for an imported key"
done
pass "attest -> verify-attestation (JSON, PEM) by credential activation against the EK CA; wrong nonce, no AK binding, tampered, other public_key fail; an imported key gets no evidence"

# Enrollment with a local attestation CA, then the WebAuthn form.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout attca.key -out attca.pem \
  -subj /CN=attestation-ca -days 2 -addext basicConstraints=critical,CA:true -addext keyUsage=keyCertSign 2>/dev/null
T enroll-ak --ca-cert attca.pem --ca-key attca.key "${EKCA[@]}" > akcert.txt || fail "enroll-ak: $(cat akcert.txt)"
grep -q "(rsa AK).*device urn:ek:sha256:" akcert.txt || fail "enroll-ak: $(cat akcert.txt)"
T attest --id 01 --nonce 0a0b0c --format acme > attobj.cbor
T verify-attestation attobj.cbor --ak-roots attca.pem --nonce 0a0b0c > out || fail "ACME form: $(cat out)"
grep -q "AK certified by" out && grep -q "^device: urn:ek:sha256:" out || fail "ACME form: $(cat out)"
CDH=$(printf '{"type":"webauthn.create"}' | sha256sum | cut -c1-64)
T attest --id 01 --format webauthn --rp-id example.org --client-data-hash "$CDH" > wa.cbor
T verify-attestation wa.cbor --ak-roots attca.pem --client-data-hash "$CDH" > out || fail "WebAuthn form: $(cat out)"
! T verify-attestation wa.cbor --ak-roots attca.pem --client-data-hash "${CDH/a/b}" >/dev/null 2>&1 || fail "WebAuthn form, other client data"
T attest --id 01 --nonce 0a0b0c > ev2.json
T verify-attestation ev2.json --ak-roots attca.pem --nonce 0a0b0c >/dev/null || fail "JSON form with the AK certificate"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -out other.pem -subj /CN=other -days 2 2>/dev/null
! T verify-attestation attobj.cbor --ak-roots other.pem --nonce 0a0b0c >/dev/null 2>&1 || fail "an untrusted attestation CA verified"
pass "enroll-ak with a local attestation CA (RSA AK, device identity); the ACME and WebAuthn \"tpm\" forms verify with its root alone, not with another"

# Another TPM (another EK CA): its evidence does not pass as this TPM's.
manufacture "$WORK/b" "$WORK/ca-b"
B_PID=$(start_on "$WORK/b")
TPM11_TPM="swtpm:unix:$WORK/b/tpm.sock" TPM11_STORE=$WORK/store-b T init --label other >/dev/null
TPM11_TPM="swtpm:unix:$WORK/b/tpm.sock" TPM11_STORE=$WORK/store-b T keygen --id 01 >/dev/null
TPM11_TPM="swtpm:unix:$WORK/b/tpm.sock" TPM11_STORE=$WORK/store-b T attest --id 01 --nonce 0a0b0c > b.json
! TPM11_TPM="swtpm:unix:$WORK/b/tpm.sock" TPM11_STORE=$WORK/store-b T verify-attestation b.json "${EKCA[@]}" \
  --nonce 0a0b0c --activate >out 2>&1 || fail "another TPM's key verified against this TPM's EK CA"
# B's key claiming A's EK: the "ek" part (last in the JSON) of A's evidence.
perl -0e 'local $/; open A, $ARGV[1]; my $a = <A>; open B, $ARGV[0]; my $b = <B>;
  my ($e) = $a =~ /("ek": \{.*\})\s*\}\s*$/s or die "no ek"; $b =~ s/"ek": \{.*\}(\s*\}\s*)$/$e$1/s or die; print $b' \
  b.json ev.json > forged.json || fail "forging"
! TPM11_TPM="swtpm:unix:$WORK/b/tpm.sock" TPM11_STORE=$WORK/store-b T verify-attestation forged.json "${EKCA[@]}" \
  --nonce 0a0b0c --activate >out 2>&1 || fail "another TPM's key claiming this EK verified"
grep -q activation out || fail "forged EK: $(cat out)"
pass "another TPM's key fails: its EK certificate is not this CA's, and it cannot activate for this TPM's EK"

# Remote enrollment: machine B (its swtpm, its store) and a CA host with no
# TPM and no store; only files travel.
B() { TPM11_TPM="swtpm:unix:$WORK/b/tpm.sock" TPM11_STORE=$WORK/store-b T "$@"; }
CA() { env -u TPM11_TPM TPM11_STORE=$WORK/no-store "$BIN" "$@" --state "$WORK/ca-state"; }
EKCB=("--ek-roots" "$WORK/ca-b/swtpm-localca-rootca-cert.pem" "--ek-roots" "$WORK/ca-b/issuercert.pem")
B enroll-ak --request > req.json || fail "enroll-ak --request"
CA ca challenge "${EKCA[@]}" req.json >out 2>&1 && fail "a request checked against another EK CA"
CA ca challenge "${EKCB[@]}" req.json > chal.json || fail "ca challenge: $(cat chal.json)"
! T enroll-ak --answer chal.json > aproof.json 2>out || fail "TPM A answered B's challenge"
grep -q "not for this TPM" out || fail "foreign answer: $(cat out)"
B enroll-ak --answer chal.json > proof.json || fail "enroll-ak --answer"
CA ca issue req.json proof.json --ca-cert attca.pem --ca-key attca.key > akcert-b.pem || fail "ca issue: $(cat akcert-b.pem)"
[ "$(grep -c 'BEGIN CERTIFICATE' akcert-b.pem)" = 1 ] || fail "ca issue printed the self-signed root"
openssl x509 -in akcert-b.pem -noout -text | grep -q "2.23.133.8.3" || fail "no tcg-kp-AIKCertificate"
! CA ca issue req.json proof.json --ca-cert attca.pem --ca-key attca.key >out 2>&1 || fail "a replayed proof issued"
grep -q "no pending challenge" out || fail "replay: $(cat out)"
[ ! -e "$WORK/no-store" ] || fail "the CA made a store"
B enroll-ak --install akcert-b.pem > out || fail "enroll-ak --install: $(cat out)"
! T enroll-ak --install akcert-b.pem >out 2>&1 || fail "B's AK certificate installed on A"
grep -q "not for this TPM's attestation key" out || fail "install on A: $(cat out)"
B attest --id 01 --nonce 0a0b0c --format acme > b.cbor
B verify-attestation b.cbor --ak-roots attca.pem --nonce 0a0b0c > out || fail "B's ACME form: $(cat out)"
grep -q "^device: urn:ek:sha256:" out || fail "B's device: $(cat out)"
kill "$B_PID"
pass "remote enrollment: enroll-ak --request -> ca challenge (no TPM, no store) -> enroll-ak --answer -> ca issue -> enroll-ak --install; replay, another TPM's answer, another EK CA fail"

# A TPM whose only EK certificate is the high-range ECC P-384 one: its RSA
# certificate removed (platform authorization, empty after startup).
manufacture "$WORK/c" "$WORK/ca-c"
C_PID=$(start_on "$WORK/c")
TPM2TOOLS_TCTI="swtpm:path=$WORK/c/tpm.sock" tpm2_nvundefine -C p 0x1c00002 || fail "tpm2_nvundefine"
C() { TPM11_TPM="swtpm:unix:$WORK/c/tpm.sock" TPM11_STORE=$WORK/store-c T "$@"; }
EKCC=("--ek-roots" "$WORK/ca-c/swtpm-localca-rootca-cert.pem" "--ek-roots" "$WORK/ca-c/issuercert.pem")
C init --label ecc >/dev/null && C keygen --id 01 >/dev/null
C attest --id 01 --nonce 0a0b0c > c.json
C verify-attestation c.json "${EKCC[@]}" --nonce 0a0b0c --activate > out || fail "ECC-only EK, activation: $(cat out)"
grep -q '"public": "ACMADA' c.json || fail "the evidence's EK is not the P-384 one: $(grep -A2 '"ek"' c.json)"
C enroll-ak --request > creq.json
CA ca challenge "${EKCC[@]}" creq.json > cchal.json || fail "ca challenge, ECC EK: $(cat cchal.json)"
C enroll-ak --answer cchal.json > cproof.json || fail "enroll-ak --answer, ECC EK"
CA ca issue creq.json cproof.json --ca-cert attca.pem --ca-key attca.key > akcert-c.pem || fail "ca issue, ECC EK"
C enroll-ak --install akcert-c.pem >/dev/null
C attest --id 01 --nonce 0a0b0c --format acme > c.cbor
C verify-attestation c.cbor --ak-roots attca.pem --nonce 0a0b0c >/dev/null || fail "ECC EK, ACME form"
kill "$C_PID"
pass "an ECC-only TPM (swtpm's P-384 EK at 0x81010016): attest by activation, remote enrollment, the ACME form"

# --- Keys bound to platform state -------------------------------------------
T keygen --type ec:p256 --id 03 --label bound --pcr 16 >/dev/null
echo data > msg
sign() { pkcs11-tool --module "$MODULE" --login --pin "$TPM11_PIN" --sign --mechanism ECDSA-SHA256 --id "$1" -i msg -o sig 2>&1; }
sign 03 >out || fail "a key bound to PCR 16 does not sign: $(cat out)"
sleep 0.1 # the module lets go of the swtpm when idle
TPM2TOOLS_TCTI="swtpm:path=$WORK/a/tpm.sock" tpm2_pcrextend 16:sha256=$(printf x | sha256sum | cut -c1-64) \
  || fail "tpm2_pcrextend"
! TPM11_LOG=warn sign 03 >out || fail "the bound key signed after PCR 16 changed"
grep -q "CKR_KEY_FUNCTION_NOT_PERMITTED" out || fail "bound key: $(cat out)"
grep -q "key bound to platform state refused" out || fail "no log line: $(cat out)"
# An authority's approval moves the policy.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out authority.key 2>/dev/null
openssl pkey -in authority.key -pubout -out authority.pub
T keygen --type ec:p256 --id 04 --label authorized --pcr 16 --pcr-authority authority.pub >/dev/null
! sign 04 >/dev/null || fail "signed with no approval"
T policy approve --pcr 16 --authority-key authority.key > now.json
T policy add --id 04 now.json >/dev/null
sign 04 >out || fail "approved values: $(cat out)"
CUR=$(T policy pcrs --pcr 16 | cut -d' ' -f2)
NEXT=$(printf '%s%s' "$CUR" "$(printf update | sha256sum | cut -c1-64)" | perl -pe 's/([0-9a-f]{2})/chr hex $1/ge' | sha256sum | cut -c1-64)
T policy approve --pcr 16 --authority-key authority.key --values "$NEXT" > next.json
T policy add --id 04 next.json >/dev/null
sleep 0.1
TPM2TOOLS_TCTI="swtpm:path=$WORK/a/tpm.sock" tpm2_pcrextend 16:sha256=$(printf update | sha256sum | cut -c1-64)
sign 04 >out || fail "the update's approved value: $(cat out)"
! sign 03 >/dev/null || fail "the PCR-bound key signed"
T list > listed
grep -q '^03 .*bound to PCR 16  ' listed || fail "list does not show the PCR binding: $(cat listed)"
grep -q '^04.*bound to PCR 16 as an authority approves' listed || fail "list, authority: $(cat listed)"
pass "keygen --pcr 16 signs until tpm2_pcrextend 16 (CKR_KEY_FUNCTION_NOT_PERMITTED, logged); --pcr-authority keys follow approvals"

# --- TSS2 key files -----------------------------------------------------------
export TPM2OPENSSL_TCTI="swtpm:path=$WORK/a/tpm.sock"
sleep 0.1
openssl genpkey -provider tpm2 -provider default -algorithm EC -pkeyopt group:P-256 -out tss2.pem 2>/dev/null
openssl pkey -provider tpm2 -provider default -in tss2.pem -pubout -out tss2.pub
T tss2 link tss2.pem --id 05 --label from-openssl >/dev/null
pkcs11-tool --module "$MODULE" --login --pin "$TPM11_PIN" --sign --mechanism ECDSA-SHA256 --signature-format openssl --id 05 -i msg -o sig05 >out05 2>&1 \
  || fail "pkcs11-tool with the linked key: $(cat out05)"
openssl dgst -sha256 -verify tss2.pub -signature sig05 msg >/dev/null || fail "the linked key's signature"
T keygen --type ec:p256 --id 06 --portable >/dev/null
T tss2 export --id 06 -o portable.pem
T export --id 06 > portable.pub
sleep 0.1
openssl pkeyutl -provider tpm2 -provider default -sign -inkey portable.pem -rawin -digest sha256 -in msg -out sig06 2>/dev/null \
  || fail "openssl -provider tpm2 with the exported key"
openssl pkeyutl -verify -pubin -inkey portable.pub -rawin -digest sha256 -in msg -sigfile sig06 >/dev/null || fail "the exported key's signature"
! T tss2 export --id 01 >/dev/null 2>&1 || fail "a key under the token's storage key was exported"
T list > listed
grep -q '^05.*linked TPM key file' listed && grep -q '^06.*portable' listed || fail "list, key files: $(cat listed)"
pass "tss2 link: tpm2-openssl's key signs through pkcs11-tool; tss2 export: a --portable key signs in openssl -provider tpm2"
echo "attest-test: all passed"
