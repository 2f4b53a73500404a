#!/usr/bin/env bash
# The tpm11 tool and the other real clients against libtpm11.so on a private
# swtpm: provisioning and PEM import with tpm11, then OpenSSL's pkcs11 engine,
# OpenSSH (ssh-keygen -D,
# ssh-agent signing through ssh-pkcs11-helper), GnuTLS p11tool, p11-kit
# server, NSS certutil and Java's SunPKCS11.
source "$(dirname "$0")/lib.sh"
exec 3>&2 2>"$WORK/stderr.log"  # the clients chatter on stderr; test failures go to fd 3
fail() { echo "FAIL: $*" >&3; tail -5 "$WORK/stderr.log" >&3; swtpm_logs >&3; exit 1; }
# No program is piped into grep -q (nor head): grep stops reading at the
# first match, the program dies of SIGPIPE, and pipefail makes that the
# pipeline's status (a spurious failure, or a check that passes wrongly).
# Output goes into a variable first and grep reads it from a here-string.
start_swtpm "$WORK/tpm"
export TPM11_STORE=$WORK/store TPM11_SO_PIN=87654321 TPM11_PIN=123456
T() { "$ROOT/build/tpm11" "$@"; }
cd "$WORK"

T init --label clients >/dev/null || fail "tpm11 init"
T info > info.txt || fail "tpm11 info"
grep -q 'token "clients"' info.txt || fail "info does not show the token: $(cat info.txt)"
grep -q "RSA \[1024 2048 3072\] bits, EC \[P-192 P-224 P-256 P-384 P-521\]" info.txt || fail "info capabilities: $(cat info.txt)"
pass "tpm11 init and info (token, TPM capabilities, lockout state)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout imp.key -subj /CN=imported \
  -days 1 -out imp.crt 2>/dev/null
cat imp.key imp.crt > bundle.pem
T import --id 01 --label imported bundle.pem >/dev/null || fail "tpm11 import"
T keygen --type rsa:2048 --id 02 --label made-here > rsa.pub.pem || fail "tpm11 keygen"
T list > list.txt || fail "tpm11 list"
grep -qE "^01 +\"imported\" +private key +EC P-256 .*imported into the TPM" list.txt || fail "list: $(cat list.txt)"
grep -qE "^02 +\"made-here\" +private key +RSA 2048 .*generated in the TPM" list.txt || fail "list: $(cat list.txt)"
grep -qE "^ +certificate +X.509 .*CN=imported.*type=cert$" list.txt || fail "list: $(cat list.txt)"
T export --id 01 > imp.pub.pem || fail "tpm11 export"
cmp -s imp.pub.pem <(openssl pkey -in imp.key -pubout) || fail "exported public key differs from the PEM's"
T export --id 01 --cert > imp-back.crt || fail "tpm11 export --cert"
out=$(openssl x509 -in imp-back.crt -noout -subject) || fail "exported certificate does not parse"
grep -q "CN *= *imported" <<<"$out" || fail "exported certificate: $out"
T selftest >/dev/null || fail "tpm11 selftest"
pass "tpm11 import (key + certificate), keygen, list, export, selftest"

# OpenSSL through libp11's pkcs11 engine, a pkcs11: URI with the PIN in it:
# a self-signed certificate whose signature was made in the TPM.
PKCS11_MODULE_PATH=$MODULE openssl req -new -x509 -engine pkcs11 -keyform engine \
  -key "pkcs11:token=clients;id=%01;type=private;pin-value=$TPM11_PIN" -subj /CN=engine -days 1 -out engine.crt \
  >/dev/null 2>&1 || fail "openssl req through the pkcs11 engine"
openssl x509 -in engine.crt -noout -pubkey | cmp -s - imp.pub.pem || fail "engine certificate has another key"
openssl verify -CAfile engine.crt engine.crt >/dev/null || fail "engine certificate signature"
pass "OpenSSL (libp11 pkcs11 engine, pkcs11: URI): self-signed certificate signed in the TPM verifies"

# OpenSSH: ssh-keygen lists both public keys; ssh-agent signs with the TPM key.
ssh-keygen -D "$MODULE" > ssh-keys 2>/dev/null || fail "ssh-keygen -D"
grep -q "^ecdsa-sha2-nistp256 " ssh-keys || fail "ssh-keygen -D: no EC key: $(cat ssh-keys)"
grep -q "^ssh-rsa " ssh-keys || fail "ssh-keygen -D: no RSA key: $(cat ssh-keys)"
[ "$(ssh-keygen -i -m PKCS8 -f imp.pub.pem | cut -d' ' -f2)" = "$(grep ecdsa ssh-keys | cut -d' ' -f2)" ] \
  || fail "ssh-keygen -D shows another EC key"
pass "ssh-keygen -D lists the EC and RSA keys without a PIN"

printf '#!/bin/sh\necho %s\n' "$TPM11_PIN" > askpass && chmod +x askpass
eval "$(ssh-agent -s -a "$WORK/agent.sock" -P "$MODULE")" >/dev/null  # -P: the agent loads only allow-listed modules
trap 'kill $SSH_AGENT_PID 2>/dev/null; cleanup' EXIT
SSH_ASKPASS=$WORK/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=none setsid -w ssh-add -s "$MODULE" </dev/null >/dev/null 2>&1 \
  || fail "ssh-add -s"
ssh-add -L > agent-keys || fail "the agent holds no keys"
grep ecdsa agent-keys > id.pub
echo "signed by ssh through the TPM" > msg
ssh-keygen -Y sign -n file -f id.pub msg >/dev/null 2>&1 || fail "ssh-keygen -Y sign through the agent"
echo "tpm11 $(cat id.pub)" > allowed
ssh-keygen -Y verify -n file -f allowed -I tpm11 -s msg.sig < msg >/dev/null || fail "ssh signature does not verify"
pass "ssh-agent (ssh-pkcs11-helper) signs with the TPM key; ssh-keygen -Y verify accepts it"

# GnuTLS: p11tool lists the token and signs and verifies with each key.
export GNUTLS_PIN=$TPM11_PIN
URL="pkcs11:token=clients"
out=$(p11tool --provider "$MODULE" --list-tokens 2>&1) || fail "p11tool --list-tokens: $out"
grep -q "Label: clients" <<<"$out" || fail "p11tool --list-tokens: $out"
for id in %01 %02; do
  out=$(p11tool --provider "$MODULE" --login --test-sign "$URL;id=$id;type=private" 2>&1) || fail "p11tool --test-sign $id: $out"
  grep -q "Verifying against public key in the token... ok" <<<"$out" || fail "p11tool --test-sign $id: $out"
done
pass "p11tool (GnuTLS) signs with the EC and RSA keys and verifies"

# p11-kit server: the way forking servers reach the module (a Go runtime does
# not survive fork); a client through p11-kit-client.so signs with the key.
CLIENT=$(find /usr/lib -name p11-kit-client.so -print -quit)
[ -n "$CLIENT" ] || fail "p11-kit-client.so not installed"
p11-kit server --provider "$MODULE" -n "$WORK/p11.sock" "pkcs11:" > p11env </dev/null 2>&1 || fail "p11-kit server"
source ./p11env
trap 'kill $SSH_AGENT_PID $P11_KIT_SERVER_PID 2>/dev/null; cleanup' EXIT
PC() { pkcs11-tool --module "$CLIENT" "$@"; }
out=$(PC -L 2>&1) || fail "pkcs11-tool -L through p11-kit-client.so: $out"
grep -q "token label *: clients" <<<"$out" || fail "p11-kit client does not see the token: $out"
# (p11-kit 0.24's RPC refuses CKM_ECDSA_SHA256 itself; CKM_ECDSA over a digest passes.)
openssl dgst -sha256 -binary msg > msg.sha256
PC --token-label clients --login --pin "$TPM11_PIN" --sign --id 01 -m ECDSA --signature-format openssl \
  -i msg.sha256 -o p11kit.sig >p11kit.out 2>&1 || fail "sign through p11-kit server: $(cat p11kit.out)"
openssl pkeyutl -verify -pubin -inkey imp.pub.pem -in msg.sha256 -sigfile p11kit.sig >/dev/null || fail "p11-kit signature does not verify"
pass "through p11-kit server and p11-kit-client.so: token listed, signature verified by openssl"

# NSS: the module in an NSS database; certutil lists the key and certificate,
# makes a key on the token, and signs a certificate request with the TPM key.
mkdir nss
certutil -N -d sql:nss --empty-password || fail "certutil -N"
modutil -dbdir sql:nss -add tpm11 -libfile "$MODULE" -force >/dev/null 2>&1 || fail "modutil -add"
echo "$TPM11_PIN" > pinfile
head -c 64 /dev/urandom > noise
out=$(certutil -d sql:nss -L -h all -f pinfile 2>&1) || fail "certutil -L: $out"
grep -q "^clients:imported " <<<"$out" || fail "NSS does not list the certificate: $out"
certutil -d sql:nss -G -k ec -q nistp256 -h clients -f pinfile -z noise >/dev/null 2>&1 || fail "NSS keygen on the token"
out=$(certutil -d sql:nss -K -h clients -f pinfile 2>&1) || fail "certutil -K: $out"
[ "$(grep -c '> ec ' <<<"$out" || true)" -ge 2 ] || fail "NSS does not list both EC keys: $out"
certutil -d sql:nss -R -k 01 -h clients -s CN=nss -f pinfile -z noise -a -o nss.csr >/dev/null 2>&1 || fail "NSS certificate request"
out=$(openssl req -in nss.csr -noout -verify 2>&1) || fail "NSS request signature: $out"
grep -q "verify OK" <<<"$out" || fail "NSS request signature: $out"
pass "NSS certutil: certificate listed, key made on the token, request signed with the TPM key (openssl verifies)"

# Java: SunPKCS11 sees the key entry and keytool signs a certificate request with it.
printf 'name = tpm11\nlibrary = %s\nslot = 0\n' "$MODULE" > sunpkcs11.cfg
KT() { keytool -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 -providerArg sunpkcs11.cfg -storepass "$TPM11_PIN" "$@"; }
out=$(KT -list 2>&1) || fail "keytool -list: $out"
grep -q "^imported, PrivateKeyEntry" <<<"$out" || fail "keytool -list: $out"
KT -certreq -alias imported -file java.csr >/dev/null 2>&1 || fail "keytool -certreq"
out=$(openssl req -in java.csr -noout -verify 2>&1) || fail "Java request signature: $out"
grep -q "verify OK" <<<"$out" || fail "Java request signature: $out"
pass "Java SunPKCS11 (keytool): key entry listed, request signed with the TPM key (openssl verifies)"

TPM11_NEW_PIN=654321 T set-pin >/dev/null || fail "tpm11 set-pin"
TPM11_PIN=123456 T selftest >/dev/null 2>&1 && fail "the old PIN still works"
TPM11_PIN=654321 T selftest >/dev/null || fail "the new PIN does not work"
TPM11_NEW_PIN=$TPM11_PIN T reset-pin >/dev/null || fail "tpm11 reset-pin"
T selftest >/dev/null || fail "the reset PIN does not work"
out=$(T list --id 02) || fail "tpm11 list after PIN changes"
grep -q "private key" <<<"$out" || fail "keys lost by PIN changes: $out"
pass "tpm11 set-pin and reset-pin (SO); keys kept"

T delete --id 02 >/dev/null || fail "tpm11 delete"
out=$(T list --json) || fail "tpm11 list after delete"
grep -q '"id": "02"' <<<"$out" && fail "deleted objects still listed: $out"
pass "tpm11 delete"
echo "client tests passed"
