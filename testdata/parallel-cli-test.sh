#!/usr/bin/env bash
# Two commands at once (issue 24): tpm11 keygen without --id, four at a
# time, never gives two keys one ID; three `init --label twin` at once never
# make two tokens with one label (the losers exit 1 with one line). A few
# rounds each: a race lost once shows.
source "$(dirname "$0")/lib.sh"
start_swtpm "$WORK/tpm" 2>"$WORK/swtpm.log"
set +o pipefail
export TPM11_STORE=$WORK/store TPM11_SO_PIN=87654321 TPM11_PIN=123456
unset TPM11_TOKEN TPM11_CONFIG TPM11_NEW_PIN TPM11_NEW_SO_PIN
BIN=${TPM11_BIN:-$ROOT/build/tpm11}
cd "$WORK"
"$BIN" init --label keys > /dev/null || fail "init"

keys=0
for round in 1 2 3 4 5 6; do
  pids=()
  for i in 1 2 3 4; do
    "$BIN" keygen --token keys --type ec:p256 --label "r$round-$i" > "kg$i.out" 2> "kg$i.err" & pids+=($!)
  done
  for i in 1 2 3 4; do wait "${pids[$((i - 1))]}" || fail "round $round: keygen $i: $(cat "kg$i.err")"; done
  keys=$((keys + 4))
  "$BIN" list --token keys > list.out || fail "list"
  ids=$(awk '$0 ~ /private key/ {print $1}' list.out)
  [ "$(echo "$ids" | wc -l)" = "$keys" ] || fail "round $round: $keys keys made, listed: $(cat list.out)"
  dup=$(echo "$ids" | sort | uniq -d)
  [ -z "$dup" ] || fail "round $round: two keys with ID $dup: $(cat list.out)"
done
pass "keygen without --id, 4 at a time, 6 rounds: $keys keys, $keys distinct IDs"

for round in 1 2 3; do
  pids=()
  for i in 1 2 3; do
    "$BIN" init --label "twin$round" > "in$i.out" 2> "in$i.err" & pids+=($!)
  done
  ok=0
  for i in 1 2 3; do
    if wait "${pids[$((i - 1))]}"; then
      ok=$((ok + 1))
    else
      [ "$(wc -l < "in$i.err")" = 1 ] || fail "round $round: a refused init says more than one line: $(cat "in$i.err")"
      grep -q "twin$round" "in$i.err" || fail "round $round: the refusal does not name the label: $(cat "in$i.err")"
    fi
  done
  n=$("$BIN" info | grep -c "\"twin$round\"")
  [ "$ok" = 1 ] && [ "$n" = 1 ] || fail "round $round: $ok inits succeeded, $n tokens labelled twin$round: $("$BIN" info)"
done
pass "init --label twin, 3 at a time, 3 rounds: one token per label, the others refused in one line"
