# Shared by the shell tests: a private swtpm and store per run, cleaned up on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=$ROOT/build/libtpm11.so
WORK=$(mktemp -d)
SWTPM_PID=
cleanup() {
  [ -n "$SWTPM_PID" ] && kill "$SWTPM_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_swtpm DIR: swtpm on a unix socket in DIR; sets TPM11_TPM.
start_swtpm() {
  local d=$1
  mkdir -p "$d"
  swtpm socket --tpm2 --server type=unixio,path="$d/tpm.sock" \
    --ctrl type=unixio,path="$d/tpm.sock.ctrl" --tpmstate dir="$d" \
    --flags not-need-init,startup-clear &
  SWTPM_PID=$!
  # Listening, not just bound: a connect between bind and listen is refused.
  for _ in $(seq 100); do
    awk -v p="$d/tpm.sock" '$8 == p && $4 == "00010000" { f = 1 } END { exit !f }' /proc/net/unix && break
    sleep 0.05
  done
  export TPM11_TPM="swtpm:unix:$d/tpm.sock"
}

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok   $*"; }
