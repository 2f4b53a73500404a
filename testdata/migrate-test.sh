#!/usr/bin/env bash
# tpm11 migrate, against the real tpm2-pkcs11 (Debian's libtpm2-pkcs11-1 and
# tpm2_ptool) on a private swtpm: tpm2_ptool makes an RSA and an EC key, a
# certificate for the RSA key and an AES key; their public
# keys and ssh authorized_keys lines are read through libtpm2_pkcs11.so
# BEFORE the move. After `tpm11 migrate`, OpenSSH (ssh-agent through
# libtpm11.so, ssh-keygen -Y verify against the lines made before) and
# openssl (a signature by pkcs11-tool through libtpm11.so, verified with the
# public key exported before) accept signatures by the same keys; the
# certificate is there, the AES key is listed as not
# taken over; the tpm2-pkcs11 store is byte for byte what it was and
# tpm2-pkcs11 still signs with it. A wrong tpm2-pkcs11 PIN changes nothing.
#
# (tpm2_ptool --id is a string: its bytes are the CKA_ID, "0a01" is 30613031;
# pkcs11-tool --sign picks its key by --id only.)
# tpm2_ptool drives the TPM through tpm2-tools, which need a resource
# manager (swtpm has 3 object slots and tpm2-tools leave objects loaded):
# tpm2-abrmd on a private D-Bus session bus, started only while tpm2-pkcs11
# runs (swtpm serves one connection at a time; tpm11 connects directly).
source "$(dirname "$0")/lib.sh"
# The README's test command and .ci/run install them: a missing tool fails
# the test (a skipped test cannot fail).
for t in tpm2_ptool tpm2-abrmd dbus-daemon pkcs11-tool ssh-agent; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] && continue
  msg="$t not found (apt-get install libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus opensc openssh-client)"
  fail "$msg"
done
P11=/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so
[ -e "$P11" ] || P11=$(find /usr/lib -name libtpm2_pkcs11.so | head -1)
[ -n "$P11" ] || fail "libtpm2_pkcs11.so not found (Debian package libtpm2-pkcs11-1)"
start_swtpm "$WORK/tpm" 2>"$WORK/swtpm.log"
set +o pipefail
export TPM11_STORE=$WORK/t11
unset TPM11_PIN TPM11_SO_PIN TPM11_NEW_PIN TPM11_NEW_SO_PIN TPM11_TOKEN TPM11_CONFIG TPM11_LOG TPM11_FROM_PIN
BIN=$ROOT/build/tpm11
cd "$WORK"

DBUS_PID= ABRMD_PID= AGENT_PID=
mcleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null
  [ -n "$ABRMD_PID" ] && kill "$ABRMD_PID" 2>/dev/null
  [ -n "$DBUS_PID" ] && kill "$DBUS_PID" 2>/dev/null
  cleanup
}
trap mcleanup EXIT
{ read -r DBUS_SESSION_BUS_ADDRESS; read -r DBUS_PID; } < <(dbus-daemon --session --fork --print-address=1 --print-pid=1)
export DBUS_SESSION_BUS_ADDRESS
BUS=com.intel.tss2.Tabrmd.tpm11test$$
export TPM2TOOLS_TCTI="tabrmd:bus_type=session,bus_name=$BUS" TPM2_PKCS11_TCTI="tabrmd:bus_type=session,bus_name=$BUS"
export TPM2_PKCS11_STORE=$WORK/p11 TPM2_PKCS11_LOG_LEVEL=0
abrmd_start() {
  local end=$((SECONDS + 30))
  /usr/sbin/tpm2-abrmd --session --allow-root --tcti="swtpm:path=$WORK/tpm/tpm.sock" --dbus-name="$BUS" >abrmd.log 2>&1 &
  ABRMD_PID=$!
  until tpm2_getcap properties-fixed >/dev/null 2>&1; do
    kill -0 "$ABRMD_PID" 2>/dev/null || fail "tpm2-abrmd exited: $(cat abrmd.log)"
    [ "$SECONDS" -lt "$end" ] || fail "tpm2-abrmd not ready after 30 s: $(cat abrmd.log)"
    sleep 0.1
  done
}
# abrmd_stop: tpm2-abrmd gone, so swtpm serves tpm11's connection.
abrmd_stop() { kill "$ABRMD_PID"; wait "$ABRMD_PID" 2>/dev/null || true; ABRMD_PID=; }

# --- tpm2-pkcs11's token, as its users make it -----------------------------
abrmd_start
mkdir -p p11
tpm2_ptool init --path=p11 >ptool.log 2>&1 || fail "tpm2_ptool init: $(cat ptool.log)"
tpm2_ptool addtoken --pid=1 --sopin=sopin123 --userpin=userpin1 --label=old --path=p11 >>ptool.log 2>&1 || fail "tpm2_ptool addtoken: $(cat ptool.log)"
tpm2_ptool addkey --algorithm=rsa2048 --label=old --userpin=userpin1 --key-label=rsakey --id=0a01 --path=p11 >>ptool.log 2>&1 || fail "addkey rsa: $(cat ptool.log)"
tpm2_ptool addkey --algorithm=ecc256 --label=old --userpin=userpin1 --key-label=eckey --id=0a02 --path=p11 >>ptool.log 2>&1 || fail "addkey ecc: $(cat ptool.log)"
tpm2_ptool addkey --algorithm=aes128 --label=old --userpin=userpin1 --key-label=aeskey --id=0a03 --path=p11 >>ptool.log 2>&1 || fail "addkey aes: $(cat ptool.log)"
# Public keys and ssh lines, read through tpm2-pkcs11 before the move.
pkcs11-tool --module "$P11" --read-object --type pubkey --id 30613031 -o rsa.der >tool.log 2>&1 || fail "reading the RSA public key through tpm2-pkcs11: $(tail -3 tool.log)"
pkcs11-tool --module "$P11" --read-object --type pubkey --id 30613032 -o ec.der >tool.log 2>&1 || fail "reading the EC public key through tpm2-pkcs11: $(tail -3 tool.log)"
openssl pkey -pubin -inform DER -in rsa.der -out rsa.pem && openssl pkey -pubin -inform DER -in ec.der -out ec.pem || fail "openssl reads the public keys"
ssh-keygen -D "$P11" > before.pub 2>/dev/null || fail "ssh-keygen -D through tpm2-pkcs11"
[ "$(grep -c . before.pub)" = 2 ] || fail "ssh-keygen -D through tpm2-pkcs11: $(cat before.pub)"
# A certificate for the RSA key (a CA signs its public key).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -subj /CN=ca -days 2 2>/dev/null
openssl x509 -new -CA ca.crt -CAkey ca.key -force_pubkey rsa.pem -subj /CN=rsakey -days 2 -out rsa.crt 2>/dev/null \
  || openssl x509 -req -in <(openssl req -new -key ca.key -subj /CN=rsakey) -CA ca.crt -CAkey ca.key -force_pubkey rsa.pem -days 2 -out rsa.crt 2>/dev/null \
  || fail "openssl makes the certificate"
tpm2_ptool addcert --label=old --key-label=rsakey --path=p11 rsa.crt >>ptool.log 2>&1 || fail "tpm2_ptool addcert: $(cat ptool.log)"
abrmd_stop
sha256sum p11/tpm2_pkcs11.sqlite3 > store.sum
pass "tpm2_ptool made RSA, EC and AES keys, a certificate; public keys read before the move"

# --- the tpm11 token --------------------------------------------------------
TPM11_SO_PIN=so123456 TPM11_PIN=user1234 "$BIN" init --label new >/dev/null || fail "tpm11 init"

# A wrong tpm2-pkcs11 PIN changes nothing.
set +e
TPM11_FROM_PIN=wrongpin1 TPM11_PIN=user1234 "$BIN" migrate --from p11 >out 2>err; rc=$?
set -e
[ "$rc" = 1 ] || fail "migrate with a wrong PIN: exit $rc: $(cat out err)"
grep -q "tpm2-pkcs11 user PIN .* is wrong" err && [ "$(wc -l < err)" = 1 ] || fail "wrong PIN: $(cat err)"
TPM11_PIN=user1234 "$BIN" list --json > objs.json
! grep -q '"class"' objs.json || fail "a wrong PIN left objects behind: $(cat objs.json)"
sha256sum -c --quiet store.sum || fail "a wrong PIN changed the tpm2-pkcs11 store"
pass "a wrong tpm2-pkcs11 PIN: one line, exit 1, no object made, the store unchanged"

TPM11_FROM_PIN=userpin1 TPM11_PIN=user1234 "$BIN" migrate --from p11 >out 2>err || fail "migrate: $(cat out err)"
grep -q 'migrated: private key "rsakey" id 30613031' out && grep -q 'migrated: private key "eckey" id 30613032' out || fail "migrate: $(cat out)"
grep -q 'copied: certificate "rsakey" id 30613031' out || fail "migrate did not copy the certificate: $(cat out)"
grep -q 'not taken over: secret key "aeskey" id 30613033' err || fail "the AES key is not listed as not taken over: $(cat err)"
sha256sum -c --quiet store.sum || fail "migrate changed the tpm2-pkcs11 store"
pass "migrate: 2 keys, the certificate taken over, the AES key listed, the store unchanged"

# The same keys, seen and used through libtpm11.so by other programs.
ssh-keygen -D "$MODULE" > after.pub 2>/dev/null || fail "ssh-keygen -D through tpm11"
for k in $(cut -d' ' -f2 before.pub); do grep -q "$k" after.pub || fail "ssh key $k not in tpm11: $(cat after.pub)"; done
pkcs11-tool --module "$MODULE" --read-object --type cert --id 30613031 -o got.der >tool.log 2>&1 || fail "reading the certificate through tpm11: $(tail -3 tool.log)"
cmp -s got.der <(openssl x509 -in rsa.crt -outform DER) || fail "the certificate differs"
echo "signed after the move" > msg
pkcs11-tool --module "$MODULE" --login --pin user1234 --sign --id 30613031 -m SHA256-RSA-PKCS -i msg -o msg.rsa >tool.log 2>&1 || fail "pkcs11-tool signs with the migrated RSA key: $(tail -3 tool.log)"
openssl dgst -sha256 -verify rsa.pem -signature msg.rsa msg >/dev/null || fail "openssl: the RSA signature does not verify with the public key read before the move"
pkcs11-tool --module "$MODULE" --login --pin user1234 --sign --id 30613032 -m ECDSA-SHA256 --signature-format openssl -i msg -o msg.ec >tool.log 2>&1 || fail "pkcs11-tool signs with the migrated EC key: $(tail -3 tool.log)"
openssl dgst -sha256 -verify ec.pem -signature msg.ec msg >/dev/null || fail "openssl: the EC signature does not verify with the public key read before the move"
pass "the same public keys (ssh-keygen -D), certificate; openssl verifies RSA and EC signatures made through tpm11 with the keys read before"

# OpenSSH: the agent signs through libtpm11.so; the lines made before verify.
printf '#!/bin/sh\necho user1234\n' > askpass; chmod +x askpass
eval "$(ssh-agent -s -a "$WORK/agent.sock" -P "$MODULE")" >/dev/null
AGENT_PID=$SSH_AGENT_PID
SSH_ASKPASS=$WORK/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=none setsid -w ssh-add -s "$MODULE" </dev/null >/dev/null 2>&1 || fail "ssh-add -s"
n=0
while read -r typ key _; do
  n=$((n + 1))
  echo "$typ $key" > id$n.pub
  echo "old $typ $key" > allowed$n
  ssh-keygen -Y sign -n file -f id$n.pub msg >/dev/null 2>&1 || fail "ssh-keygen -Y sign with the migrated $typ key"
  ssh-keygen -Y verify -n file -f allowed$n -I old -s msg.sig < msg >/dev/null || fail "$typ: the signature does not verify against the line made before the move"
  rm -f msg.sig
done < before.pub
[ $n = 2 ] || fail "$n ssh keys"
pass "ssh-agent signs with both migrated keys; ssh-keygen -Y verify accepts them against the authorized lines made before the move"

# The key's authorization follows the tpm11 user PIN through a change.
TPM11_PIN=user1234 TPM11_NEW_PIN=newpin12 "$BIN" set-pin >/dev/null 2>&1 || fail "tpm11 set-pin"
pkcs11-tool --module "$MODULE" --login --pin newpin12 --sign --id 30613032 -m ECDSA-SHA256 --signature-format openssl -i msg -o msg.ec2 >tool.log 2>&1 || fail "the migrated key does not sign after a PIN change: $(tail -3 tool.log)"
openssl dgst -sha256 -verify ec.pem -signature msg.ec2 msg >/dev/null || fail "the signature after a PIN change does not verify"
set +e
pkcs11-tool --module "$MODULE" --login --pin user1234 --sign --id 30613032 -m ECDSA-SHA256 -i msg -o msg.ec3 >tool.log 2>&1; rc=$?
set -e
[ $rc != 0 ] && grep -q CKR_PIN_INCORRECT tool.log || fail "the old PIN still signs: $rc $(cat tool.log)"
pass "after tpm11 set-pin the migrated key signs with the new PIN only"

# tpm2-pkcs11 still works with its untouched store.
abrmd_start
pkcs11-tool --module "$P11" --login --pin userpin1 --sign --id 30613032 -m ECDSA-SHA256 --signature-format openssl -i msg -o msg.old >/dev/null 2>&1 \
  || fail "tpm2-pkcs11 no longer signs after the move"
openssl dgst -sha256 -verify ec.pem -signature msg.old msg >/dev/null || fail "tpm2-pkcs11's signature after the move does not verify"
abrmd_stop
pass "tpm2-pkcs11 still signs with its own store"
