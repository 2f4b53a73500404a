#!/usr/bin/env bash
# A store shared by a group (README, Services) with two users, root and a
# member (nobody, group nogroup): every user makes tokens and keys of their
# own; a token belongs to its maker, and no one else changes it (refused as
# write-protected, not a device error); a member cannot substitute another
# token's PIN seal: not in a store this release made (the directory is not
# theirs to write), and in one an older release left group-writable the
# substituted record is refused before a PIN is tried against it (the TPM's
# lockout counter does not move).
source "$(dirname "$0")/lib.sh"
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
  echo "skip shared-store-test (needs root and setpriv)"
  exit 0
fi
start_swtpm "$WORK/tpm" 2>"$WORK/swtpm.log"
chmod 711 "$WORK" "$WORK/tpm" && chmod 666 "$WORK/tpm/tpm.sock"
set +o pipefail
BIN=$ROOT/build/tpm11
cd "$WORK"
mkdir shared && chgrp nogroup shared && chmod 2770 shared
export TPM11_STORE=$WORK/shared TPM11_SO_PIN=87654321 TPM11_PIN=123456
unset TPM11_TOKEN TPM11_CONFIG TPM11_NEW_PIN TPM11_NEW_SO_PIN
T() { "$BIN" "$@"; }
M() { setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/nonexistent "$BIN" "$@"; }
AS_M() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
run() { set +e; "$@" >out 2>err; rc=$?; set -e; }
dir_of() { dirname "$(grep -l "\"label\":\"$1\"" shared/tokens/*/token.json)"; }
counter() { T info | sed -n 's/^lockout: \([0-9]*\) of.*/\1/p'; }

T init --label web > /dev/null && T keygen --token web --type ec:p256 --id 01 --label web-key > /dev/null ||
  fail "root: init and keygen in the shared store"
M init --label member > /dev/null || fail "a member cannot make a token in the shared store"
M keygen --token member --type ec:p256 --id 02 --label member-key > /dev/null ||
  fail "a member cannot make a key in its token"
M list --token web > out 2>err && grep -q web-key out || fail "a member cannot use root's token: $(cat out err)"
T list --token member > out 2>err && grep -q member-key out || fail "root cannot use the member's token: $(cat out err)"
web=$(dir_of web) member=$(dir_of member)
bad=$(find shared -path '*/tokens/*' \( \( -type d \( -perm -020 -o ! -perm -2050 \) \) -o \( -type f \( -perm -020 -o ! -perm -040 \) \) -o ! -group nogroup \))
[ -z "$bad" ] || fail "modes of a shared store: $bad $(ls -lR shared)"
[ "$(stat -c %a shared/tokens)" = 3770 ] || fail "tokens/ is $(stat -c %a shared/tokens), want 3770"
pass "two users of a shared store each make tokens and keys; token directories 2750, files 0640, group nogroup, tokens/ 3770"

run M keygen --token web --type ec:p256 --id 03 --label intruder
[ "$rc" != 0 ] && grep -q WRITE_PROTECTED err || fail "a member's key in root's token: exit $rc, $(cat out err)"
run M delete --token web --id 01
[ "$rc" != 0 ] || fail "a member deleted root's key"
T list --token web | grep -q web-key || fail "root's key is gone"
pass "a member cannot add or delete in root's token: CKR_TOKEN_WRITE_PROTECTED, not a device error"

# A member's own record with root's token's serial, in place of root's.
websn=$(basename "$web") msn=$(basename "$member")
run AS_M sh -c "sed 's/$msn/$websn/; s/\"label\":\"member\"/\"label\":\"web\"/' $member/token.json > $web/token.json"
[ "$rc" != 0 ] || fail "a member replaced root's token record"
run AS_M mv -f "$member/token.json" "$web/token.json"
[ "$rc" != 0 ] || fail "a member moved its record over root's"
T list --token web | grep -q web-key || fail "root's token after a member's attempts"

# An older release made token directories group-writable.
chmod 2770 "$web"
AS_M sh -c "sed 's/$msn/$websn/; s/\"label\":\"member\"/\"label\":\"web\"/' $member/token.json > $web/.forged && mv -f $web/.forged $web/token.json" ||
  fail "could not plant the substituted record"
before=$(counter)
run T list --token web
[ "$rc" != 0 ] || fail "root used a substituted token record: $(cat out)"
after=$(counter)
[ -n "$before" ] && [ "$before" = "$after" ] || fail "the lockout counter moved: $before -> $after ($(cat err))"
pass "a member cannot substitute root's PIN seal; planted in a group-writable token directory, it is refused before any PIN is tried (lockout counter $before -> $after)"
