# Shared by the shell tests: a private swtpm and store per run, cleaned up on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=$ROOT/build/libtpm11.so
WORK=$(mktemp -d)
SWTPM_PID=
SLOWTPM_PID=
cleanup() {
  [ -n "$SLOWTPM_PID" ] && kill "$SLOWTPM_PID" 2>/dev/null || true
  [ -n "$SWTPM_PID" ] && kill "$SWTPM_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_swtpm DIR: swtpm on a unix socket in DIR, its output in DIR/swtpm.log;
# sets TPM11_TPM. Returns once swtpm answers on its control channel, which it
# does only from its main loop: after both sockets listen and the TPM is up.
# (The socket file alone is not enough: it appears at bind, before listen,
# and a client connecting then is refused.) Fails with swtpm's log if that
# takes more than 20 s.
start_swtpm() {
  local d=$1 end=$((SECONDS + 20))
  command -v swtpm_ioctl >/dev/null || fail "swtpm_ioctl not found (Debian package swtpm-tools)"
  mkdir -p "$d"
  swtpm socket --tpm2 --server type=unixio,path="$d/tpm.sock" \
    --ctrl type=unixio,path="$d/tpm.sock.ctrl" --tpmstate dir="$d" \
    --flags not-need-init,startup-clear >"$d/swtpm.log" 2>&1 &
  SWTPM_PID=$!
  # swtpm_ioctl is refused at once until swtpm listens; timeout bounds a
  # swtpm that accepts but never answers.
  until timeout 5 swtpm_ioctl --unix "$d/tpm.sock.ctrl" -c >/dev/null 2>&1; do
    kill -0 "$SWTPM_PID" 2>/dev/null || fail "swtpm in $d exited at start: $(cat "$d/swtpm.log")"
    [ "$SECONDS" -lt "$end" ] || fail "swtpm in $d not ready after 20 s: $(cat "$d/swtpm.log")"
    sleep 0.02
  done
  export TPM11_TPM="swtpm:unix:$d/tpm.sock"
}

# start_slowtpm DELAY: starts a slow TPM, a relay (testdata/slowtpm) in front
# of the swtpm TPM11_TPM names that holds every command for DELAY (a Go
# duration) as a TPM chip's latency would, and sets SLOW_TPM to its spec.
# It makes operations on async sessions pend with no test hook in the
# module. One at a time: a second call replaces the first. With a second
# argument HOLD_DIR it also holds commands on demand (slowtpm -hold).
start_slowtpm() {
  local d=$WORK/slowtpm-$1 end=$((SECONDS + 60)) hold=()
  [ -n "${2:-}" ] && hold=(-hold "$2")
  [ -x "$WORK/slowtpm" ] || (cd "$ROOT" && "${GO:-go}" build -o "$WORK/slowtpm" ./testdata/slowtpm) || fail "building testdata/slowtpm"
  [ -n "$SLOWTPM_PID" ] && { kill "$SLOWTPM_PID" 2>/dev/null; wait "$SLOWTPM_PID" 2>/dev/null || true; }
  mkdir -p "$d"
  "$WORK/slowtpm" -upstream "$TPM11_TPM" -listen "$d/tpm.sock" -delay "$1" "${hold[@]}" >"$d/spec" 2>"$d/slowtpm.log" &
  SLOWTPM_PID=$!
  # It prints its spec once it listens.
  until [ -s "$d/spec" ]; do
    kill -0 "$SLOWTPM_PID" 2>/dev/null || fail "slowtpm exited at start: $(cat "$d/slowtpm.log")"
    [ "$SECONDS" -lt "$end" ] || fail "slowtpm not listening after 60 s"
    sleep 0.02
  done
  SLOW_TPM=$(cat "$d/spec")
}

# swtpm_logs: the end of each swtpm's log, for failure messages.
swtpm_logs() {
  local f
  for f in "$WORK"/*/swtpm.log; do
    [ -s "$f" ] && { echo "--- $f"; tail -5 "$f"; }
  done
  return 0
}

# Failures go to fd 3 where a script keeps the terminal's stderr there (its
# own stderr then goes to a log), else to stderr.
fail() {
  if { true >&3; } 2>/dev/null; then echo "FAIL: $*" >&3; else echo "FAIL: $*" >&2; fi
  exit 1
}
pass() { echo "ok   $*"; }

# Swtpms with EK certificates (attest-test.sh, acme-test.sh).
# manufacture DIR CA: a TPM state whose EK certificates CA's swtpm_localca issued.
manufacture() {
  local d=$1 ca=$2
  mkdir -p "$d" "$ca"
  printf 'statedir = %s\nsigningkey = %s/signkey.pem\nissuercert = %s/issuercert.pem\ncertserial = %s/certserial\n' \
    "$ca" "$ca" "$ca" "$ca" > "$ca.conf"
  printf -- '--platform-manufacturer tpm11\n--platform-version 1.0\n--platform-model test\n' > "$ca.options"
  printf 'create_certs_tool = swtpm_localca\ncreate_certs_tool_config = %s.conf\ncreate_certs_tool_options = %s.options\nactive_pcr_banks = sha256\n' \
    "$ca" "$ca" > "$ca.setup"
  local runas=()
  [ "$(id -u)" = 0 ] && runas=(--runas root)
  swtpm_setup --tpm2 --tpmstate "$d" --create-ek-cert --overwrite --config "$ca.setup" "${runas[@]}" \
    --logfile "$d/setup.log" >/dev/null 2>&1 || fail "swtpm_setup: $(cat "$d/setup.log")"
}

# start_on DIR: swtpm on the state in DIR; prints its PID (start_swtpm keeps
# one PID).
start_on() {
  local d=$1
  swtpm socket --tpm2 --server type=unixio,path="$d/tpm.sock" --ctrl type=unixio,path="$d/tpm.sock.ctrl" \
    --tpmstate dir="$d" --flags not-need-init,startup-clear >"$d/swtpm.log" 2>&1 &
  echo $!
  local end=$((SECONDS + 20))
  until timeout 5 swtpm_ioctl --unix "$d/tpm.sock.ctrl" -c >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || fail "swtpm in $d not ready: $(cat "$d/swtpm.log")"
    sleep 0.02
  done
}
