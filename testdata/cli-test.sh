#!/usr/bin/env bash
# The tpm11 command, through the built binary, on a private swtpm and store:
# command-line conventions, data safety (re-initialisation, duplicate IDs,
# bounded inputs), PINs (prompts without echo, asked twice, files, tries
# left, lockout), token selection, list and its URIs, every key type the
# TPM offers, imports (encrypted PKCS#8, PKCS#12, OpenSSH), the CSR -> CA ->
# certificate flow, progress on a terminal, info's configuration report, a
# group-shared store, and deleting tokens, also after a TPM clear.
source "$(dirname "$0")/lib.sh"
start_swtpm "$WORK/tpm" 2>"$WORK/swtpm.log"
# Checks are "command | grep -q": grep stops reading at the first match, so
# pipefail would report the writer's SIGPIPE as a failure.
set +o pipefail
export TPM11_STORE=$WORK/store
unset TPM11_PIN TPM11_SO_PIN TPM11_NEW_PIN TPM11_NEW_SO_PIN TPM11_TOKEN TPM11_PASSPHRASE TPM11_CONFIG TPM11_LOG
BIN=$ROOT/build/tpm11
T() { "$BIN" "$@"; }
VERSION=$(sed -n 's/^const Version = "\(.*\)"/\1/p' "$ROOT/version/version.go")
cd "$WORK"
(cd "$ROOT" && "${GO:-go}" build -o "$WORK/clitool" ./testdata/clitool) || fail "building testdata/clitool"
PTY() { ./clitool pty "$@"; }
J() { ./clitool json "$1"; }

# run CMD...: stdout in out, stderr in err, exit status in rc.
run() { set +e; "$@" >out 2>err; rc=$?; set -e; }
# refused CODE WHAT CMD...: exits CODE with one line on stderr, no stack trace.
refused() {
  local code=$1 what=$2; shift 2
  run "$@"
  [ "$rc" = "$code" ] || fail "$what: exit $rc, want $code: $(cat out err)"
  [ "$(wc -l < err)" = 1 ] || fail "$what: stderr is not one line: $(cat err)"
  ! grep -qE 'goroutine |panic:|runtime\.|\.go:[0-9]+' err || fail "$what: stack trace: $(cat err)"
}

# --- Conventions of a Go CLI ----------------------------------------------
run T --help; [ $rc = 0 ] && grep -q "Usage:" out || fail "--help: $rc $(cat err)"
run T keygen --help; [ $rc = 0 ] || fail "keygen --help"
refused 2 "unknown command" T frobnicate
refused 2 "unknown flag" T list --frobnicate
refused 2 "extra argument" T info extra
refused 2 "no command" T
refused 2 "simulator without --listen" T simulator
[ "$(T --version)" = "tpm11 $VERSION" ] || fail "--version: $(T --version), version.go: $VERSION"
pkcs11-tool --module "$MODULE" -I 2>/dev/null | grep -q "(ver ${VERSION%.*})" || fail "CK_INFO.libraryVersion is not ${VERSION%.*}"
for sh in bash zsh fish; do T completion $sh | grep -q tpm11 || fail "completion $sh"; done
bash -c "source <($BIN completion bash) && declare -F __start_tpm11" >/dev/null || fail "bash completion does not load"
T __complete keygen --type '' 2>/dev/null | grep -q '^ec:p384' || fail "completion of --type"
for page in tpm11 tpm11-keygen tpm11-import tpm11-csr tpm11-delete-token; do
  grep -q '^\.TH "TPM11"' "$ROOT/build/man/$page.1" || fail "man page $page.1"
done
pass "--help exits 0, unknown commands/flags/arguments exit 2 in one line, --version = CK_INFO = $VERSION, completions, man pages"

# --- info: configuration and its mistakes -----------------------------------
printf 'store = %s\ncolour = blue\nlog = verbose\n' "$TPM11_STORE" > config
TPM11_CONFIG=$WORK/config T info > info.txt || fail "info"
grep -q "^config: $WORK/config" info.txt || fail "info does not name the config file: $(cat info.txt)"
grep -q 'unknown key "colour"' info.txt || fail "info does not report the unknown key: $(cat info.txt)"
grep -q "log=\"verbose\" is not a level" info.txt || fail "info does not report the bad log level: $(cat info.txt)"
TPM11_LOG=loud TPM11_CONFIG=/nonexistent T info > info.txt
grep -q 'TPM11_LOG="loud" is not a level' info.txt || fail "info does not report TPM11_LOG: $(cat info.txt)"
grep -q "^config: none (/nonexistent not found)" info.txt || fail "info: $(cat info.txt)"
T info --json > info.json
[ "$(J version < info.json)" = "$VERSION" ] || fail "info --json version"
KEYTYPES=$(J key_types < info.json | tr -d '[]"' | tr ',' '\n' | grep -v hmac)
echo "$KEYTYPES" | grep -q '^ec:p256$' || fail "info --json key types: $KEYTYPES"
pass "info names the config file read, reports unknown keys and log levels; --json"

# --- init: validated before anything is touched ------------------------------
export TPM11_SO_PIN=87654321 TPM11_PIN=123456
T init --label alpha > out || fail "init alpha"
T keygen --type ec:p256 --id 01 --label keep > /dev/null || fail "keygen in alpha"
refused 1 "init over a label in use" T init --label alpha
grep -q "exists already" err || fail "init over a label: $(cat err)"
refused 1 "re-init without --force" T init --token alpha --label alpha
grep -q -- "--force" err || fail "re-init without --force: $(cat err)"
refused 1 "re-init with a too short user PIN" env TPM11_PIN=12 "$BIN" init --token alpha --label alpha --force
grep -q "nothing changed" err || fail "short PIN: $(cat err)"
refused 2 "too long a token label" T init --label 0123456789012345678901234567890123
T list | grep -q "private key  EC P-256" || fail "a refused init destroyed keys or the user PIN"
refused 1 "re-init with a wrong SO PIN" env TPM11_SO_PIN=wrong-so "$BIN" init --token alpha --label alpha --force
grep -q "wrong SO PIN: [0-9] tr" err || fail "wrong SO PIN: $(cat err)"
T list | grep -q "private key  EC P-256" || fail "a wrong SO PIN destroyed keys"
TPM11_PIN=234567 T init --token alpha --label alpha --force > out || fail "re-init with --force"
grep -q "re-initialized" out || fail "re-init: $(cat out)"
TPM11_PIN=234567 T list | grep -q "no objects" || fail "re-init kept objects"
TPM11_SO_PIN=87654321 TPM11_NEW_PIN=123456 T reset-pin > /dev/null || fail "reset-pin"
pass "init: an existing label, no --force, a bad new PIN, a wrong SO PIN (tries left) destroy nothing; --force re-initialises"

# --- keygen: every type the TPM offers; duplicate IDs ------------------------
i=128
for t in $KEYTYPES hmac:8 hmac:256 hmac:1024; do
  T keygen --type "$t" --id "$(printf %x $i)" --label "k-$t" > out 2>err || fail "keygen $t: $(cat err)"
  i=$((i+1))
done
T list --json > list.json
n=$(J objects.# < list.json)
want=$(( $(echo "$KEYTYPES" | grep -vc '^aes') * 2 + $(echo "$KEYTYPES" | grep -c '^aes') + 3 ))
[ "$n" = "$want" ] || fail "list --json has $n objects, want $want"
T keygen --help > help.txt
grep -q "^Key types this TPM (swtpm:unix:.*) offers" help.txt && grep -q "^  ec:p384$" help.txt || fail "keygen --help does not ask the TPM: $(tail -12 help.txt)"
T keygen --type ec:p256 --id 7f --label js --json > kg.json
[ "$(J objects.0.uri < kg.json)" = "pkcs11:token=alpha;id=%7F;object=js;type=private" ] && J public_key_pem < kg.json | grep -q "BEGIN PUBLIC KEY" \
  || fail "keygen --json: $(cat kg.json)"
T delete --id 7f > /dev/null
refused 1 "keygen of a type the TPM lacks" T keygen --type rsa:4096
grep -q "offers" err || fail "rsa:4096: $(cat err)"
refused 2 "unknown key type" T keygen --type dsa:1024
T keygen --type ec:p256 --id 01 --label first > first.out || fail "keygen id 01"
refused 1 "keygen on a used ID" T keygen --type ec:p384 --id 01
grep -q "already used" err || fail "duplicate ID: $(cat err)"
[ "$(T list --id 01 --json | J objects.#)" = 2 ] || fail "a refused keygen added objects"
T keygen --type ec:p384 --id 01 --label second --replace > second.out 2>err || fail "keygen --replace: $(cat err)"
T list --id 01 --json > id1.json
[ "$(J objects.# < id1.json)" = 2 ] && [ "$(J objects.0.curve < id1.json)" = P-384 ] || fail "--replace: $(cat id1.json)"
T delete --id 01 > out && [ "$(grep -c '^deleted' out)" = 2 ] || fail "delete --id 01: $(cat out)"
pass "keygen makes every type the TPM offers ($(echo $KEYTYPES) hmac) and --help lists them; --json; a used ID is refused, --replace replaces"

# --- list: grouped, sorted, URIs that other tools take -----------------------
T keygen --type ec:p256 --id 0a --label "web server" > /dev/null
T list > list.txt
ids=$(awk 'NR>2 && $1 ~ /^[0-9a-f]+$/ {print $1}' list.txt)
[ "$ids" = "$(echo "$ids" | sort -u)" ] || fail "list is not sorted and grouped by ID: $(cat list.txt)"
grep -qE '^0a +"web server" +private key +EC P-256 +sign,derive +generated in the TPM +pkcs11:token=alpha;id=%0A;object=web%20server;type=private$' list.txt \
  || fail "list line: $(cat list.txt)"
URI=$(T list --id 0a --json | J objects.0.uri)
GNUTLS_PIN=$TPM11_PIN p11tool --provider "$MODULE" --login --test-sign "$URI" > p11tool.txt 2>&1 || true
grep -q "Verifying against public key in the token... ok" p11tool.txt || fail "p11tool does not take the listed URI $URI: $(cat p11tool.txt)"
echo hello > msg
PKCS11_MODULE_PATH=$MODULE openssl pkeyutl -engine pkcs11 -keyform engine -sign -inkey "$URI;pin-value=$TPM11_PIN" \
  -in <(openssl dgst -sha256 -binary msg) -out msg.sig 2>/dev/null || fail "openssl does not take the listed URI"
T export "$(T list --id 0a --json | J objects.1.uri)" > 0a.pub
openssl pkeyutl -verify -pubin -inkey 0a.pub -in <(openssl dgst -sha256 -binary msg) -sigfile msg.sig >/dev/null || fail "signature"
run env -u TPM11_PIN "$BIN" list </dev/null
[ $rc = 0 ] && ! grep -q "private key" out && grep -q "private objects not shown" err || fail "list without a PIN: $(cat out err)"
PTY -e "user PIN for token \"alpha\": " -s "$TPM11_PIN" -- env -u TPM11_PIN "$BIN" list > pty.txt || fail "list on a terminal: $(cat pty.txt)"
grep -q "private key" pty.txt && ! grep -q "$TPM11_PIN" pty.txt || fail "list asks for the PIN, without echo: $(cat pty.txt)"
pass "list: sorted and grouped by ID with type, size, usage, origin and URIs that p11tool and openssl take; asks for the PIN on a terminal"

# --- imports: PEM, encrypted PKCS#8, PKCS#12, OpenSSH; bounded inputs ---------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key -subj /CN=imported -days 2 -out ec.crt 2>/dev/null
openssl genrsa -out rsa.key 2048 2>/dev/null
openssl pkcs8 -topk8 -in ec.key -v2 aes-256-cbc -passout pass:s3cret -out pbes2-aes.key
openssl pkcs8 -topk8 -in ec.key -v2 des3 -v2prf hmacWithSHA1 -passout pass:s3cret -out pbes2-des3.key
openssl pkcs8 -topk8 -in rsa.key -scrypt -passout pass:s3cret -out scrypt.key
openssl pkcs8 -topk8 -in rsa.key -outform DER -nocrypt -out rsa.der
openssl rsa -in rsa.key -traditional -aes128 -passout pass:s3cret -out legacy.key 2>/dev/null
openssl pkcs12 -export -inkey ec.key -in ec.crt -passout pass:s3cret -out bundle.p12
openssl req -x509 -key rsa.key -subj /CN=rsa -days 2 -out rsa.crt
openssl pkcs12 -export -inkey rsa.key -in rsa.crt -passout pass: -out nopass.p12
openssl pkcs12 -export -inkey rsa.key -nocerts -passout pass: -out keyonly.p12 2>/dev/null
ssh-keygen -q -t ecdsa -b 384 -N s3cret -C ssh -f id_ecdsa
ssh-keygen -q -t ed25519 -N "" -f id_ed25519
echo s3cret > passfile
cat ec.key ec.crt > bundle.pem
i=32
for f in bundle.pem pbes2-aes.key pbes2-des3.key scrypt.key rsa.der legacy.key bundle.p12 nopass.p12 id_ecdsa; do
  i=$((i+1))
  T import "$f" --id "$i" --passphrase-file passfile > out 2>err || fail "import $f: $(cat err)"  # flags after the argument
  case $f in id_ecdsa) openssl pkey -in <(ssh-keygen -e -m PKCS8 -f id_ecdsa.pub) -pubin -pubout > want.pub ;;
             *rsa*|scrypt*|legacy*|nopass*) openssl pkey -in rsa.key -pubout > want.pub ;;
             *) openssl pkey -in ec.key -pubout > want.pub ;; esac
  T export --id "$i" | cmp -s - want.pub || fail "import $f: the TPM key is not the file's"
done
[ "$(T list --id 33 --json | J objects.#)" = 3 ] && T export --id 33 --cert | cmp -s - <(openssl x509 -in ec.crt) || fail "PEM bundle certificate"
[ "$(T list --id 39 --json | J objects.2.class)" = certificate ] || fail "PKCS#12 certificate"
[ "$(T list --id 33 --json | J objects.0.label)" = imported ] || fail "label from the certificate's CN"
PTY -e "passphrase for pbes2-aes.key: " -s s3cret -- "$BIN" import pbes2-aes.key --id 4f > pty.txt || fail "import with a prompted passphrase: $(cat pty.txt)"
! grep -q s3cret pty.txt || fail "the passphrase was echoed"
T import --json ec.key --id 4e > imp.json && [ "$(J objects.0.uri < imp.json)" = "pkcs11:token=alpha;id=%4E;type=private" ] || fail "import --json"
refused 1 "import on a used ID" T import ec.key --id 4e
T import ec.key --id 4e --replace --label again > /dev/null 2>&1 && [ "$(T list --id 4e --json | J objects.0.label)" = again ] || fail "import --replace"
refused 1 "a wrong passphrase" env TPM11_PASSPHRASE=wrong "$BIN" import pbes2-aes.key
grep -q "wrong passphrase" err || fail "wrong passphrase: $(cat err)"
refused 1 "a wrong PKCS#12 password" env TPM11_PASSPHRASE=wrong "$BIN" import bundle.p12
refused 1 "a wrong OpenSSH passphrase" env TPM11_PASSPHRASE=wrong "$BIN" import id_ecdsa
refused 1 "no passphrase and no terminal" T import scrypt.key </dev/null
refused 1 "an Ed25519 key" T import id_ed25519
refused 1 "a PKCS#12 file without a certificate" T import keyonly.p12
refused 1 "/dev/zero as a key" T import /dev/zero
refused 1 "a directory as a key" T import /
refused 1 "not a key" T import /etc/passwd
refused 1 "a missing file" T import /nonexistent
refused 1 "/dev/zero as a PIN file" T list --pin-file /dev/zero
refused 1 "/dev/zero as a certificate" T import-cert /dev/zero
refused 2 "a bad ID" T keygen --id zz
refused 2 "a bad URI attribute" T export 'pkcs11:colour=blue'
refused 2 "too long a label" T keygen --label "$(head -c 300 /dev/zero | tr '\0' x)"
pass "import: PEM bundle, encrypted PKCS#8 (AES, 3DES, scrypt), DER, legacy PEM, PKCS#12, OpenSSH; passphrase prompt without echo; bad inputs refused in one line"

# --- CSR -> CA -> certificate ---------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -subj /CN=test-ca -days 2 -out ca.crt 2>/dev/null
T keygen --type rsa:2048 --id 50 --label host > /dev/null
T csr --id 50 --subject "/CN=host.example.com/O=Example" --san DNS:host.example.com,IP:192.0.2.1 > host.csr || fail "csr"
openssl req -in host.csr -noout -verify 2>&1 | grep -q "verify OK" || fail "CSR signature"
openssl req -in host.csr -noout -text | grep -q "DNS:host.example.com, IP Address:192.0.2.1" || fail "CSR SANs"
openssl x509 -req -in host.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -copy_extensions copy -out host.crt 2>/dev/null || fail "CA"
T import-cert host.crt > out || fail "import-cert: $(cat out)"
grep -q "id 50" out || fail "import-cert found another key: $(cat out)"
T export --id 50 --cert | openssl verify -CAfile ca.crt >/dev/null || fail "the stored certificate does not verify"
refused 1 "a second certificate without --replace" T import-cert host.crt
refused 1 "a certificate for no key" T import-cert ca.crt
T csr 'pkcs11:id=%0A' --subject CN=self --x509 --days 2 -o self.crt && openssl verify -CAfile self.crt self.crt >/dev/null || fail "csr --x509"
T import-cert --id 0a self.crt >/dev/null || fail "import-cert --id"
pass "csr (RSA and EC) -> CA -> import-cert finds the key; the certificate verifies; self-signed with --x509"

# --- PINs: prompts, files, changes ---------------------------------------------
PTY -e "new SO PIN: " -s so-pin-1 -e "new SO PIN again: " -s so-pin-1 -e "new user PIN: " -s user-pin-1 -e "new user PIN again: " -s user-pin-1 \
  -- env -u TPM11_PIN -u TPM11_SO_PIN "$BIN" init --label beta > pty.txt || fail "init on a terminal: $(cat pty.txt)"
! grep -qE "so-pin-1|user-pin-1" pty.txt || fail "PINs echoed: $(cat pty.txt)"
PTY -e "new SO PIN: " -s so-pin-1 -e "new SO PIN again: " -s so-pin-2 -- env -u TPM11_PIN -u TPM11_SO_PIN "$BIN" init --label gamma > pty.txt \
  && fail "two different new PINs accepted"
grep -q "differ" pty.txt || fail "mismatch: $(cat pty.txt)"
echo user-pin-1 > pin1
T list --token beta --pin-file pin1 > /dev/null || fail "--pin-file"
PTY -e "user PIN for token \"beta\": " -s user-pin-1 -e "new user PIN: " -s user-pin-2 -e "new user PIN again: " -s user-pin-2 \
  -- env -u TPM11_PIN "$BIN" set-pin --token beta > pty.txt || fail "set-pin on a terminal: $(cat pty.txt)"
TPM11_PIN=user-pin-2 T selftest --token beta > /dev/null || fail "the new user PIN"
TPM11_SO_PIN=so-pin-1 TPM11_NEW_SO_PIN=so-pin-2 T set-so-pin --token beta > /dev/null || fail "set-so-pin"
TPM11_SO_PIN=so-pin-2 TPM11_NEW_PIN=user-pin-3 T reset-pin --token beta > /dev/null || fail "reset-pin with the new SO PIN"
refused 1 "a too short new PIN" env TPM11_PIN=user-pin-3 TPM11_NEW_PIN=abc "$BIN" set-pin --token beta
TPM11_PIN=user-pin-3 T selftest --token beta > /dev/null || fail "a refused set-pin changed the PIN"
pass "PIN prompts do not echo, new PINs are asked twice, --pin-file, set-pin, set-so-pin, reset-pin"

# --- choosing the token -----------------------------------------------------------
refused 1 "two tokens, none chosen" T list
grep -q '"alpha"' err && grep -q '"beta"' err || fail "the tokens are not named: $(cat err)"
SERIAL=$(T info --json | J tokens.1.serial)
for sel in beta "$SERIAL" "pkcs11:token=beta" "pkcs11:serial=$SERIAL" ; do
  [ "$(TPM11_PIN=user-pin-3 T list --token "$sel" --json | J token.label)" = beta ] || fail "--token $sel"
done
[ "$(TPM11_TOKEN=beta TPM11_PIN=user-pin-3 T list --json | J token.label)" = beta ] || fail "TPM11_TOKEN"
[ "$(TPM11_PIN=user-pin-3 T list --slot 1 --json | J token.label)" = beta ] || fail "--slot"
T export "pkcs11:token=alpha;id=%0A;type=public" | cmp -s - 0a.pub || fail "the token in an object URI"
refused 1 "an unknown token" T list --token nosuch
pass "the token by label, serial, pkcs11: URI (--token or the object's URI), TPM11_TOKEN or --slot"

# --- progress on a terminal, silence otherwise --------------------------------------
start_slowtpm 200ms # a TPM whose every command takes 200 ms more (testdata/slowtpm)
PTY -- env TPM11_TPM="$SLOW_TPM" "$BIN" keygen --token alpha --type rsa:2048 --id 60 > pty.txt || fail "keygen on a terminal"
grep -q "generating the RSA-2048 key pair in the TPM: [0-9.]*s" pty.txt || fail "no elapsed time on the terminal: $(cat pty.txt)"
TPM11_TPM="$SLOW_TPM" T keygen --token alpha --type rsa:2048 --id 61 > /dev/null 2>err && [ ! -s err ] || fail "progress off a terminal: $(cat err)"
pass "slow steps show the elapsed time on a terminal and stay silent otherwise"

# --- legacy single-dash flags (tpm11 0.1 used Go's flag package) ------------------------
T keygen -type ec:p256 -id 62 -label legacy --token alpha > /dev/null || fail "single-dash flags"
T list -token alpha -id 62 | grep -q legacy || fail "single-dash flags"
refused 2 "delete without naming anything" T delete --token alpha
refused 1 "delete of nothing" T delete --token alpha --id 7777
pass "single-dash long flags of 0.1 still work; delete needs a selection"

# --- a label (or ID) that names two keys: refused, listed, asked ----------------------
T keygen --token alpha --type ec:p256 --id 70 --label dup > /dev/null && T keygen --token alpha --type ec:p256 --id 71 --label dup > /dev/null || fail "keygen dup"
refused 1 "export of an ambiguous label" T export --token alpha --label dup
grep -q "more than one key" err && [ "$(grep -o -- '--unique-id [0-9a-f]*' err | sort -u | wc -l)" = 2 ] && grep -q "id 70 " err && grep -q "id 71 " err || fail "export does not list both public keys: $(cat err)"
refused 1 "csr of an ambiguous label" T csr --token alpha --label dup --subject CN=x
grep -q "2 private keys match" err || fail "csr: $(cat err)"
refused 1 "delete of an ambiguous label without --yes" T delete --token alpha --label dup </dev/null
grep -q "nothing deleted: give --yes" err || fail "delete: $(cat err)"
[ "$(T list --token alpha --label dup --json | J objects.#)" = 4 ] || fail "a refused delete deleted"
PTY -e "delete all 4 objects? [y/N] " -s n -- "$BIN" delete --token alpha --label dup > pty.txt 2>&1 || true; grep -q "nothing deleted" pty.txt || fail "delete on a terminal, answered n: $(cat pty.txt)"
[ "$(T list --token alpha --label dup --json | J objects.#)" = 4 ] || fail "delete answered n deleted"
uid=$(T list --token alpha --id 71 --json | J objects.0.unique_id)
T export --token alpha --unique-id "$uid" > 71.pub && cmp -s 71.pub <(T export --token alpha --id 71) || fail "export --unique-id"
T delete --token alpha --label dup --yes > out && [ "$(grep -c '^deleted' out)" = 4 ] || fail "delete --yes: $(cat out)"
pass "a label naming two keys: export and csr refuse listing the candidates (--unique-id); delete asks on a terminal, refuses otherwise, --yes deletes all"

# --- sign, verify, encrypt, decrypt, mechanisms; secret keys; rename; a CA --------------
T keygen --token alpha --type rsa:2048 --id c0 --label cr > /dev/null && T keygen --token alpha --type ec:p256 --id c1 --label ce > /dev/null || fail "keygen for crypto"
T export --token alpha --id c0 > c0.pem && T export --token alpha --id c1 > c1.pem
head -c 3000 /dev/urandom > data
for m in SHA256-RSA-PKCS SHA384-RSA-PKCS SHA512-RSA-PKCS SHA1-RSA-PKCS; do
  h=$(echo "$m" | sed 's/-RSA-PKCS//; s/SHA1/sha1/; s/SHA/sha/')
  T sign --token alpha --id c0 -m "$m" -i data -o s.sig || fail "sign $m"
  openssl dgst -"$h" -verify c0.pem -signature s.sig data >/dev/null || fail "openssl rejects $m"
  T verify --token alpha --id c0 -m "$m" -s s.sig -i data >/dev/null || fail "verify $m"
done
for m in SHA256-RSA-PKCS-PSS SHA384-RSA-PKCS-PSS SHA512-RSA-PKCS-PSS; do
  h=$(echo "$m" | sed 's/-RSA-PKCS-PSS//; s/SHA/sha/')
  T sign --token alpha --id c0 -m "$m" < data > s.sig || fail "sign $m"
  openssl dgst -"$h" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -verify c0.pem -signature s.sig data >/dev/null || fail "openssl rejects $m"
done
for m in ECDSA-SHA256 ECDSA-SHA384 ECDSA-SHA512 ECDSA-SHA1; do
  h=$(echo "$m" | sed 's/ECDSA-//; s/SHA1/sha1/; s/SHA/sha/')
  T sign --token alpha --id c1 -m "$m" < data > s.sig || fail "sign $m"
  openssl dgst -"$h" -verify c1.pem -signature s.sig data >/dev/null || fail "openssl rejects $m"
  T verify --token alpha --id c1 -m "$m" -s s.sig < data > out || fail "verify $m"
done
openssl dgst -sha256 -sign <(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null) -out other.sig data
refused 1 "verify of another key's signature" T verify --token alpha --id c1 -s other.sig -i data
grep -q "NOT valid" err || fail "a bad signature: $(cat err)"
openssl pkeyutl -encrypt -pubin -inkey c0.pem -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in <(head -c 100 data) -out e.bin
T decrypt --token alpha --id c0 < e.bin | cmp -s - <(head -c 100 data) || fail "decrypt of openssl's RSA-OAEP"
openssl pkeyutl -encrypt -pubin -inkey c0.pem -in <(head -c 100 data) -out e1.bin
T decrypt --token alpha --id c0 -m RSA-PKCS < e1.bin | cmp -s - <(head -c 100 data) || fail "decrypt of openssl's RSA-PKCS"
head -c 32 /dev/urandom > aes.key && head -c 32 /dev/urandom > hmac.key
T import-secret --token alpha --type aes --id c2 --label sa aes.key > /dev/null && T import-secret --token alpha --type hmac --id c3 hmac.key > /dev/null || fail "import-secret"
refused 1 "an AES key of 20 bytes" T import-secret --token alpha --type aes <(head -c 20 /dev/urandom)
IV=000102030405060708090a0b0c0d0e0f K=$(xxd -p -c 64 aes.key)
for m in AES-CBC-PAD:aes-256-cbc AES-CTR:aes-256-ctr AES-OFB:aes-256-ofb AES-CFB128:aes-256-cfb; do
  T encrypt --token alpha --id c2 -m "${m%%:*}" --iv $IV < data | openssl enc -d -"${m#*:}" -K "$K" -iv $IV | cmp -s - data || fail "openssl does not decrypt ${m%%:*}"
  openssl enc -"${m#*:}" -K "$K" -iv $IV < data | T decrypt --token alpha --id c2 -m "${m%%:*}" --iv $IV | cmp -s - data || fail "tpm11 does not decrypt openssl's ${m#*:}"
done
[ "$(T sign --token alpha --id c3 < data | xxd -p -c 64)" = "$(openssl dgst -sha256 -mac HMAC -macopt hexkey:"$(xxd -p -c 64 hmac.key)" -r < data | cut -d' ' -f1)" ] || fail "HMAC differs from openssl's"
refused 2 "an unknown mechanism" T sign --token alpha --id c0 -m RSA-MD5 -i data
T mechanisms --token alpha > mechs.txt
grep -qE '^ECDSA-SHA256 +[0-9]+-[0-9]+ +TPM +sign,verify$' mechs.txt && grep -qE '^AES-CBC-PAD ' mechs.txt || fail "mechanisms: $(cat mechs.txt)"
pass "sign (RSA PKCS#1 and PSS, ECDSA, HMAC), verify, encrypt and decrypt (RSA OAEP and PKCS#1, AES CBC-PAD/CTR/OFB/CFB) from the command line, checked by openssl; import-secret; mechanisms"
T keygen --token alpha --type ec:p256 --id c4 --label old-name > /dev/null
T csr --token alpha --id c4 --subject CN=r --x509 > c4.crt && T import-cert --token alpha --id c4 c4.crt > /dev/null || fail "cert for rename"
T rename --token alpha --id c4 --new-label new-name --new-id c5 > out || fail "rename: $(cat out)"
[ "$(grep -c '"new-name" id c5' out)" = 3 ] && [ "$(T list --token alpha --id c4 --json | J objects.#)" = 0 ] || fail "rename did not move the 3 objects: $(cat out)"
refused 1 "rename onto a used ID" T rename --token alpha --id c5 --new-id c1
[ "$(T list --token alpha --id c5 --json | J objects.#)" = 3 ] || fail "a refused rename changed something"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca2.key -out ca2.crt -subj "/CN=Test Root" -days 2 2>/dev/null
T import-ca --token alpha ca2.crt > /dev/null || fail "import-ca"
p11tool --provider "$MODULE" --list-all-trusted "pkcs11:token=alpha" 2>/dev/null | grep -A5 "object=Test%20Root" | grep -q "CKA_CERTIFICATE_CATEGORY=CA; CKA_TRUSTED" || fail "p11tool does not see the trusted CA"
pass "rename moves a key's label and ID with its certificate; import-ca stores a trusted CA certificate (as SO) that p11tool lists as trusted"

# --- messages that say what happened ------------------------------------------------------
refused 1 "an empty PIN" env TPM11_PIN= "$BIN" selftest --token alpha
grep -q "user PIN given is empty: nothing was tried" err || fail "empty PIN: $(cat err)"
refused 1 "an over-long PIN" env TPM11_PIN="$(head -c 300 /dev/zero | tr '\0' a)" "$BIN" selftest --token alpha
grep -q "longer than any tpm11 PIN" err || fail "over-long PIN: $(cat err)"
refused 2 "a token label ending in spaces" T init --label "sp  "
refused 2 "a 100,000-character CSR subject" T csr --token alpha --id c1 --subject "CN=$(head -c 100000 /dev/zero | tr '\0' a)"
echo "$TPM11_PIN" | env -u TPM11_PIN "$BIN" list --token alpha | grep -q "private key" || fail "list ignores a PIN on standard input"
refused 1 "info with the TPM unreachable" env TPM11_TPM="swtpm:unix:$WORK/none" "$BIN" info
grep -q "not reachable" out || fail "info does not say the TPM is unreachable: $(cat out)"
refused 1 "a timeout that is not a duration" env TPM11_TIMEOUT=abc "$BIN" list --token alpha
grep -q 'TPM11_TIMEOUT="abc" is not a positive duration' err || fail "bad timeout: $(cat err)"
TPM11_KEYGEN_TIMEOUT=-1s T info | grep -q 'warning: TPM11_KEYGEN_TIMEOUT="-1s" is not a positive duration' || fail "info does not report a bad timeout"
T __complete keygen --type '' 2>/dev/null > compl.txt
grep -q '^ec:p256$' compl.txt && ! grep -q '^rsa:4096$' compl.txt || fail "completion offers key types swtpm does not make: $(cat compl.txt)"
TPM11_TOKEN=alpha T init --label delta > /dev/null || fail "TPM11_TOKEN=alpha with init --label delta"
T delete-token --token delta > /dev/null || fail "delete-token delta"
pass "an empty or over-long PIN is not tried; label spaces, long subjects refused; list takes a PIN on stdin; info exits 1 without a TPM; bad timeouts refused (info reports them); TPM11_TOKEN does not turn init into a re-initialisation; completion offers what the TPM makes"

# --- a store shared by a group (services) -----------------------------------------------
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  mkdir shared && chgrp nogroup shared && chmod 2770 shared
  chmod 711 "$WORK" "$WORK/tpm" && chmod 666 "$WORK/tpm/tpm.sock"
  S() { T --store "$WORK/shared" "$@"; }
  S init --label svc > /dev/null && S keygen --type ec:p256 --id 01 --label svc-key > /dev/null || fail "init in the shared store"
  bad=$(find shared \( -type d ! -perm -2050 \) -o \( -type f ! -perm -040 \) -o ! -group nogroup)
  [ -z "$bad" ] || fail "not group-shared: $bad $(ls -lR shared)"
  AS_SVC() { setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/nonexistent "$@"; }
  AS_SVC "$BIN" --store "$WORK/shared" list > out 2>err || fail "a group member cannot use the shared store: $(cat err)"
  grep -q "private key" out || fail "a group member does not see the private key: $(cat out)"
  run AS_SVC "$BIN" list
  [ $rc = 1 ] && [ "$(wc -l < err)" = 1 ] || fail "a private store is readable by others: $(cat out err)"
  pass "a set-group-ID store is kept group-readable: another user in the group lists and logs in; a private store stays private"
else
  echo "skip shared store (needs root and setpriv)"
fi

# --- backup while others write; restore on this TPM only ----------------------------------
( for i in 1 2 3 4 5 6; do T keygen --token alpha --type ec:p256 --id "d$i" > /dev/null || exit 1; done ) & kg=$!
T backup --token alpha -o alpha.tar 2>err || fail "backup: $(cat err)"
wait $kg || fail "keygen beside the backup"
TPM11_STORE=$WORK/restored T restore alpha.tar > out || fail "restore: $(cat out)"
for i in 1 2 3 4 5 6; do
  n=$(TPM11_STORE=$WORK/restored T list --token alpha --id "d$i" --json | J objects.#)
  [ "$n" = 0 ] || [ "$n" = 2 ] || fail "the backup holds half of key d$i ($n objects)"
done
[ "$(TPM11_STORE=$WORK/restored T list --token alpha --id c1 --json | J objects.#)" = 2 ] || fail "the restored token lacks key c1"
TPM11_STORE=$WORK/restored T sign --token alpha --id c1 -i data -o r.sig && openssl dgst -sha256 -verify c1.pem -signature r.sig data >/dev/null || fail "the restored key does not sign"
refused 1 "restore over an existing token" env TPM11_STORE="$WORK/restored" "$BIN" restore alpha.tar
grep -q "exists in this store" err || fail "restore over: $(cat err)"
pass "backup while keygens run holds whole key pairs; the restored token signs on its TPM; restore does not overwrite"

# --- delete-token; after a TPM clear --------------------------------------------------------
refused 2 "delete-token without naming the token" T delete-token
TPM11_SO_PIN=so-pin-2 T delete-token --token beta > out && grep -q 'token "beta"' out || fail "delete-token: $(cat out)"
T info | grep -q '"beta"' && fail "beta is still there"
kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true
start_swtpm "$WORK/tpm2" 2>>"$WORK/swtpm.log"   # a cleared TPM: new seeds
refused 1 "restore onto another TPM" env TPM11_STORE="$WORK/elsewhere" "$BIN" restore alpha.tar
grep -q "belongs to another TPM" err || fail "restore onto another TPM: $(cat err)"
refused 1 "a token of another TPM" T list --token alpha
grep -q "cleared" err || fail "no hint about a TPM clear: $(cat err)"
refused 1 "delete-token unchecked without --force" T delete-token --token alpha
T delete-token --token alpha --force > /dev/null || fail "delete-token --force after a TPM clear"
pass "delete-token needs the token named and its SO PIN; after a TPM clear, --force"

# --- wrong PINs: tries left, then lockout (a fresh swtpm allows 3) -------------------------
T init --label lock > /dev/null
refused 1 "wrong PIN 1" env TPM11_PIN=bad-pin "$BIN" selftest --token lock
grep -q "wrong user PIN: 2 tries left" err || fail "tries left: $(cat err)"
refused 1 "wrong PIN 2" env TPM11_PIN=bad-pin "$BIN" selftest --token lock
grep -q "wrong user PIN: 1 try left" err || fail "tries left: $(cat err)"
refused 1 "wrong PIN 3" env TPM11_PIN=bad-pin "$BIN" selftest --token lock
grep -q "lockout" err || fail "last try: $(cat err)"
refused 1 "right PIN in lockout" T selftest --token lock
grep -q "dictionary-attack lockout" err || fail "lockout: $(cat err)"
T info | grep -q "locked out: true" || fail "info does not show the lockout"
pass "a wrong PIN says how many tries are left; lockout is explained"
echo "cli tests passed"
