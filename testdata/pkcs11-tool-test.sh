#!/usr/bin/env bash
# pkcs11-tool against libtpm11.so on a private swtpm: token init, PINs, EC and
# RSA keys made in the TPM, every signing mechanism, each signature checked
# by openssl; a second process finds the key and signs with it.
source "$(dirname "$0")/lib.sh"
exec 3>&2 2>"$WORK/stderr.log"  # the clients chatter on stderr; test failures go to fd 3
fail() { echo "FAIL: $*" >&3; tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
# No program is piped into grep -q (nor head): grep stops reading at the
# first match, the program dies of SIGPIPE, and pipefail makes that the
# pipeline's status (a spurious failure, or a check that passes wrongly).
# Output goes into a variable first and grep reads it from a here-string.
start_swtpm "$WORK/tpm"
export TPM11_STORE=$WORK/store
P() { pkcs11-tool --module "$MODULE" "$@"; }
PU() { P --token-label ci --login --pin 123456 "$@"; }

P --init-token --label ci --so-pin 87654321 >/dev/null || fail init-token
P --token-label ci --login --login-type so --so-pin 87654321 --init-pin --pin 123456 >/dev/null || fail init-pin
pass "init token and user PIN"

out=$(P --token-label ci --login --pin 999999 -O 2>&1) && fail "wrong PIN accepted"
grep -q CKR_PIN_INCORRECT <<<"$out" || fail "wrong PIN not CKR_PIN_INCORRECT: $out"
pass "wrong PIN refused with CKR_PIN_INCORRECT"

PU --keypairgen --key-type EC:prime256v1 --id 01 --label ec >/dev/null || fail "EC keygen"
PU --keypairgen --key-type rsa:2048 --id 02 --label rsa >/dev/null || fail "RSA keygen"
pass "EC P-256 and RSA-2048 keys generated in the TPM"

cd "$WORK"
for id in 01 02; do
  P --token-label ci --read-object --type pubkey --id $id -o pub$id.der >/dev/null
  openssl pkey -pubin -inform DER -in pub$id.der -out pub$id.pem
done
echo "data signed by a TPM-resident key" > data
openssl dgst -sha256 -binary data > hash
( printf '\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20'; cat hash ) > digestinfo

PU --sign --id 01 -m ECDSA-SHA256 --signature-format openssl -i data -o sig >/dev/null
openssl dgst -sha256 -verify pub01.pem -signature sig data >/dev/null || fail ECDSA-SHA256
pass "ECDSA-SHA256 verified by openssl"

PU --sign --id 01 -m ECDSA --signature-format openssl -i hash -o sig >/dev/null
openssl pkeyutl -verify -pubin -inkey pub01.pem -in hash -sigfile sig >/dev/null || fail ECDSA
pass "ECDSA verified by openssl"

PU --sign --id 02 -m SHA256-RSA-PKCS -i data -o sig >/dev/null
openssl dgst -sha256 -verify pub02.pem -signature sig data >/dev/null || fail SHA256-RSA-PKCS
pass "SHA256-RSA-PKCS verified by openssl"

for input in digestinfo data; do
  PU --sign --id 02 -m RSA-PKCS -i $input -o sig >/dev/null
  openssl pkeyutl -verifyrecover -pubin -inkey pub02.pem -in sig -out recovered >/dev/null
  cmp -s recovered $input || fail "RSA-PKCS over $input"
done
pass "RSA-PKCS (DigestInfo in the TPM, raw data via raw RSA) verified by openssl"

PU --sign --id 02 -m RSA-PKCS-PSS --hash-algorithm SHA256 --mgf MGF1-SHA256 -i hash -o sig >/dev/null
openssl pkeyutl -verify -pubin -inkey pub02.pem -in hash -sigfile sig -pkeyopt digest:sha256 \
  -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32 >/dev/null || fail RSA-PKCS-PSS
pass "RSA-PKCS-PSS verified by openssl"

PU --sign --id 02 -m SHA256-RSA-PKCS-PSS -i data -o sig >/dev/null
openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -verify pub02.pem -signature sig data >/dev/null \
  || fail SHA256-RSA-PKCS-PSS
pass "SHA256-RSA-PKCS-PSS verified by openssl"

PU --sign --id 02 -m SHA256-RSA-PKCS-PSS --salt-len 0 -i data -o sig >/dev/null
openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:0 -verify pub02.pem -signature sig data >/dev/null \
  || fail "PSS salt 0"
pass "SHA256-RSA-PKCS-PSS with salt length 0 (encoded in the module) verified by openssl"

# Decryption in the TPM (raw RSA) with padding removed in the module.
echo "for the TPM's eyes" > secret
openssl pkeyutl -encrypt -pubin -inkey pub02.pem -in secret -out ct
PU --decrypt --id 02 -m RSA-PKCS -i ct -o pt >/dev/null 2>&1 && cmp -s pt secret || fail "RSA-PKCS decrypt"
openssl pkeyutl -encrypt -pubin -inkey pub02.pem -in secret -out ct -pkeyopt rsa_padding_mode:oaep \
  -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
PU --decrypt --id 02 -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 -i ct -o pt >/dev/null 2>&1 && cmp -s pt secret \
  || fail "RSA-PKCS-OAEP decrypt"
pass "RSA-PKCS and RSA-PKCS-OAEP (SHA-256) ciphertexts from openssl decrypted in the TPM"

out=$(PU --test 2>&1) || fail "pkcs11-tool --test --login: $out"
grep -q "No errors" <<<"$out" || fail "pkcs11-tool --test --login: $out"
pass "pkcs11-tool --test --login: no errors"

# Verification inside the module, and a tampered signature refused.
PU --sign --id 01 -m ECDSA-SHA256 -i data -o sig >/dev/null
out=$(PU --verify --id 01 -m ECDSA-SHA256 -i data --signature-file sig 2>&1) || fail "C_Verify: $out"
grep -q "Signature is valid" <<<"$out" || fail "C_Verify: $out"
# Every bit of byte 5 flipped: a fixed byte would leave one signature in
# 256 unchanged (seen once in CI-like runs).
b=$(od -An -tu1 -j5 -N1 sig | tr -d ' ')
printf "\\$(printf '%03o' $((b ^ 0xff)))" | dd of=sig bs=1 seek=5 conv=notrunc 2>/dev/null
out=$(PU --verify --id 01 -m ECDSA-SHA256 -i data --signature-file sig 2>&1) || true
grep -q "Signature is valid" <<<"$out" && fail "bad signature accepted"
grep -qi "invalid" <<<"$out" || fail "bad signature not reported invalid: $out"
pass "C_Verify accepts a good and refuses a tampered signature"

# A separate process with a fresh store view finds the key by ID and signs.
out=$(PU -O --type privkey --id 01) || fail "find in second process"
grep -q "label: *ec" <<<"$out" || fail "key not found by second process"
PU --sign --id 01 -m ECDSA-SHA256 --signature-format openssl -i data -o sig2 >/dev/null
openssl dgst -sha256 -verify pub01.pem -signature sig2 data >/dev/null || fail "second process signature"
pass "another process finds the key by CKA_ID and signs with it"

# Private keys invisible without login; store files 0600, no PIN on disk.
out=$(P --token-label ci -O --type privkey 2>&1) || fail "list without login: $out"
grep -q "Private Key" <<<"$out" && fail "private key visible without login"
bad=$(find "$TPM11_STORE" -type f ! -perm 0600 -print -quit)
[ -z "$bad" ] || fail "store file not 0600: $bad"
grep -rq 123456 "$TPM11_STORE" && fail "PIN found in store"
pass "private keys hidden before login; store files 0600; PIN not in store"

PU --delete-object --type privkey --id 02 >/dev/null || fail "destroy"
out=$(PU -O --type privkey 2>&1) || fail "list after destroy: $out"
grep -q "label: *rsa" <<<"$out" && fail "destroyed key still present"
grep -q "label: *ec" <<<"$out" || fail "the other key went too"
pass "C_DestroyObject removes the key"
# Digests in software, no login; certificates and public data objects.
P --token-label ci --hash -m SHA256 -i data -o digest >/dev/null 2>&1
cmp -s digest hash || fail "C_Digest SHA256 differs from openssl"
pass "C_Digest SHA-256 matches openssl"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout certkey.pem -subj /CN=tpm11-test \
  -days 1 -outform DER -out cert.der 2>/dev/null
PU --write-object cert.der --type cert --id 01 --label cert >/dev/null || fail "write certificate"
P --token-label ci --read-object --type cert --id 01 -o cert-back.der >/dev/null || fail "read certificate without login"
cmp -s cert.der cert-back.der || fail "certificate read back differs"
out=$(P --token-label ci -O --type cert 2>&1) || fail "list certificates: $out"
grep -q "CN=tpm11-test" <<<"$out" || fail "certificate subject not derived: $out"
echo "public note" > note
PU --write-object note --type data --label note >/dev/null || fail "write data object"
out=$(P --token-label ci -O --type data 2>&1) || fail "list data objects: $out"
grep -q "note" <<<"$out" || fail "public data object not visible without login: $out"
pass "X.509 certificate and public data object stored, listed and read back without login"
# PEM keys made by openssl, imported into the TPM (C_CreateObject -> TPM2_Import), then signing there.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out imp-rsa.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out imp-ec.pem 2>/dev/null
PU --write-object imp-rsa.pem --type privkey --id 0a --label imported-rsa --usage-sign >/dev/null || fail "import RSA PEM"
PU --write-object imp-ec.pem --type privkey --id 0b --label imported-ec --usage-sign >/dev/null || fail "import EC PEM"
PU --sign --id 0a -m SHA256-RSA-PKCS -i data -o sig >/dev/null || fail "sign with imported RSA"
openssl dgst -sha256 -verify <(openssl pkey -in imp-rsa.pem -pubout) -signature sig data >/dev/null || fail "imported RSA signature"
PU --sign --id 0b -m ECDSA-SHA384 --signature-format openssl -i data -o sig >/dev/null || fail "sign with imported EC"
openssl dgst -sha384 -verify <(openssl pkey -in imp-ec.pem -pubout) -signature sig data >/dev/null || fail "imported EC signature"
out=$(PU -O --type privkey --id 0a 2>&1) || fail "list imported key: $out"
grep -q "Access:.*sensitive" <<<"$out" || fail "imported key not sensitive: $out"
pass "openssl PEM keys (RSA-2048, EC P-384) imported into the TPM; signatures verified by openssl; sensitive"
# pkcs11-tool's own EC test (keygen, attribute changes, sign, delete) on each curve.
for curve in prime256v1 secp384r1 secp521r1; do
  out=$(PU --session-rw --test-ec --id 0c0c --key-type EC:$curve 2>&1) || fail "--test-ec $curve: $out"
  grep -q "==> OK" <<<"$out" || fail "--test-ec $curve: $out"
done
pass "pkcs11-tool --test-ec passes on P-256, P-384 and P-521"

# Larger keys: RSA-3072 and P-521 made in the TPM, signatures verified by openssl.
PU --keypairgen --key-type rsa:3072 --id 0d --label rsa3072 >/dev/null || fail "RSA-3072 keygen"
PU --keypairgen --key-type EC:secp521r1 --id 0e --label p521 >/dev/null || fail "P-521 keygen"
for id in 0d 0e; do
  P --token-label ci --read-object --type pubkey --id $id -o pub$id.der >/dev/null 2>&1
  openssl pkey -pubin -inform DER -in pub$id.der -out pub$id.pem || fail "public key $id"
done
PU --sign --id 0d -m SHA384-RSA-PKCS -i data -o sig >/dev/null
openssl dgst -sha384 -verify pub0d.pem -signature sig data >/dev/null || fail "RSA-3072 signature"
PU --sign --id 0e -m ECDSA-SHA512 --signature-format openssl -i data -o sig >/dev/null
openssl dgst -sha512 -verify pub0e.pem -signature sig data >/dev/null || fail "P-521 signature"
pass "RSA-3072 (SHA384-RSA-PKCS) and P-521 (ECDSA-SHA512) verified by openssl"

# ECDH in the TPM agrees with openssl's.
PU --keypairgen --key-type EC:prime256v1 --id 0f --label ecdh --usage-derive >/dev/null || fail "ECDH keygen"
P --token-label ci --read-object --type pubkey --id 0f -o pub0f.der >/dev/null 2>&1
openssl pkey -pubin -inform DER -in pub0f.der -out pub0f.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.pem 2>/dev/null
openssl pkey -in peer.pem -pubout -outform DER -out peer.der
PU --derive -m ECDH1-DERIVE --id 0f -i peer.der -o z-tpm >/dev/null 2>&1 || fail "C_DeriveKey"
openssl pkeyutl -derive -inkey peer.pem -peerkey pub0f.pem -out z-openssl
cmp -s z-tpm z-openssl || fail "ECDH shared secret differs from openssl's"
pass "ECDH1-DERIVE in the TPM equals openssl's shared secret"

# AES in the TPM: a generated key round-trips; an imported key's ciphertext openssl decrypts.
head -c 1000 /dev/urandom > plain
iv=000102030405060708090a0b0c0d0e0f
PU --keygen --key-type AES:32 --id 10 --label aes >/dev/null || fail "AES keygen"
PU --encrypt --id 10 -m AES-CBC-PAD --iv $iv -i plain -o ct >/dev/null 2>&1 || fail "AES encrypt"
PU --decrypt --id 10 -m AES-CBC-PAD --iv $iv -i ct -o back >/dev/null 2>&1 || fail "AES decrypt"
cmp -s plain back || fail "AES round trip"
head -c 32 /dev/urandom > aes.key
PU --write-object aes.key --type secrkey --key-type AES:32 --id 11 --label aes-imported >/dev/null || fail "AES import"
PU --encrypt --id 11 -m AES-CBC-PAD --iv $iv -i plain -o ct >/dev/null 2>&1 || fail "AES encrypt (imported)"
openssl enc -d -aes-256-cbc -K "$(od -An -tx1 aes.key | tr -d ' \n')" -iv $iv -in ct -out back || fail "openssl AES decrypt"
cmp -s plain back || fail "openssl decrypts to something else"
pass "AES-256-CBC-PAD in the TPM: generated key round-trips, imported key's ciphertext decrypted by openssl"

# An AES key wrapped by openssl with an RSA key of the token is unwrapped
# into the TPM (pkcs11-tool --unwrap), and encrypts as the original key does.
PU --keypairgen --key-type rsa:2048 --id 12 --label wrapper --usage-wrap >/dev/null || fail "RSA wrapping keygen"
PU --read-object --type pubkey --id 12 -o pub12.der >/dev/null || fail "read wrapping public key"
openssl pkey -pubin -inform DER -in pub12.der -out pub12.pem || fail "wrapping public key"
head -c 32 /dev/urandom > kms.key
openssl pkeyutl -encrypt -pubin -inkey pub12.pem -in kms.key -out kms.wrapped || fail "openssl wrap"
out=$(PU --unwrap --mechanism RSA-PKCS --id 12 -i kms.wrapped --key-type AES: --application-id 13 --application-label from-kms 2>&1) \
  || fail "pkcs11-tool --unwrap: $out"
PU --encrypt --id 13 -m AES-CBC-PAD --iv $iv -i plain -o ct >/dev/null 2>&1 || fail "AES encrypt (unwrapped)"
openssl enc -d -aes-256-cbc -K "$(od -An -tx1 kms.key | tr -d ' \n')" -iv $iv -in ct -out back || fail "openssl decrypts the unwrapped key's output"
cmp -s plain back || fail "the unwrapped key is not the wrapped one"
if grep -rqF "$(od -An -tx1 kms.key | tr -d ' \n')" "$TPM11_STORE"; then fail "the unwrapped key is in the store in clear"; fi
pass "pkcs11-tool --unwrap: an AES key wrapped by openssl with the token's RSA key lands in the TPM and encrypts like the original"

# pkcs11-tool --test-threads: C_Initialize from 4 threads at once, then slot queries from each.
out=$(timeout 60 pkcs11-tool --module "$MODULE" --test-threads INGISL --test-threads INGISL --test-threads INGISL \
  --test-threads INGISL -L 2>&1) || fail "--test-threads: $out"
# pkcs11-tool's main thread initializes too: exactly one of the five wins.
# (grep -c exits 1 on a count of 0: || true, or set -e ends the script silently.)
won=$(grep -c -E "C_Initialize returned CKR_OK|Main C_Initialize\(NULL\) rv:CKR_OK$" <<<"$out" || true)
lost=$(grep -c -E "C_Initialize returned CKR_CRYPTOKI_ALREADY_INITIALIZED|Main C_Initialize\(NULL\) rv:CKR_CRYPTOKI_ALREADY_INITIALIZED" <<<"$out" || true)
[ "$won" = 1 ] && [ "$lost" = 4 ] || fail "--test-threads: $won won, $lost already initialized: $out"
[ "$(grep -c "C_GetSlotList returned CKR_OK" <<<"$out" || true)" = 8 ] || fail "--test-threads slot lists: $out"
pass "pkcs11-tool --test-threads: one C_Initialize wins, the others get ALREADY_INITIALIZED, all query slots"

# Four processes at once on one token and one swtpm: keygen, find, sign, destroy.
pids=
for p in 1 2 3 4; do
  (
    for r in 1 2 3; do
      id=$(printf '07%d%d' $p $r)
      PU --keypairgen --key-type EC:prime256v1 --id $id --label mp >/dev/null 2>&1 || { echo "keygen $p/$r" >> mp-errors; continue; }
      PU --sign --id $id -m ECDSA-SHA256 -i data -o sig-$p >/dev/null 2>&1 || echo "sign $p/$r" >> mp-errors
      [ $r = 3 ] || PU --delete-object --type privkey --id $id >/dev/null 2>&1 || echo "delete $p/$r" >> mp-errors
    done
  ) &
  pids="$pids $!"
done
wait $pids  # not a bare wait: swtpm is a background job too
[ -f mp-errors ] && fail "concurrent processes: $(cat mp-errors | tr '\n' ' ')"
out=$(PU -O --type privkey 2>&1) || fail "list after concurrent processes: $out"
n=$(grep -c "label: *mp" <<<"$out" || true)
[ "$n" = 4 ] || fail "expected 4 surviving keys from 4 processes, found $n"
pass "4 concurrent processes: 12 keygens, 12 signs, 8 deletes, no errors, consistent view"
# A private data object: readable after login, never in clear in the store.
echo "private-data-object-value-7d3f9a" > pd.txt
PU --write-object pd.txt --type data --label pd --private >/dev/null || fail "write private data object"
if grep -rq "private-data-object-value-7d3f9a" "$TPM11_STORE"; then fail "private data object value in the store in clear"; fi
out=$(P --token-label ci -O --type data 2>&1) || fail "list data objects: $out"
grep -q "label: *pd$" <<<"$out" && fail "private data object visible without login: $out"
PU --read-object --type data --label pd -o pd.out >/dev/null || fail "read private data object"
cmp -s pd.txt pd.out || fail "private data object read back differs"
pass "private data object: sealed in the store, invisible without login, read back after login"

echo "pkcs11-tool tests passed"
