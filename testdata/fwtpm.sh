#!/usr/bin/env bash
# Builds the post-quantum test TPM (wolfTPM's fwtpm_server, a GPL-3.0 test
# tool never linked or shipped with tpm11) once into a cache outside the
# checkout, keyed by the archives' SHA256SUMS and the build flags, and prints
# the server's path. Exits non-zero (with the build's last lines) when it
# cannot be built: the PQC tests then fail, never skip.
#
# The sources (archives, patches, build-fwtpm.sh) are found in
# $TPM11_TESTTPM_SRC, else in a shared/testtpm folder beside the checkout or
# one level up (/work/shared/testtpm for /work/main and /work/wt/NAME).
# Needs: build-essential autoconf automake libtool.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SRC=${TPM11_TESTTPM_SRC:-}
if [ -z "$SRC" ]; then
  for d in "$REPO/../shared/testtpm" "$REPO/../../shared/testtpm"; do
    [ -f "$d/build-fwtpm.sh" ] && { SRC=$(cd "$d" && pwd); break; }
  done
fi
[ -n "$SRC" ] && [ -f "$SRC/build-fwtpm.sh" ] && [ -f "$SRC/SHA256SUMS" ] ||
  { echo "fwtpm.sh: no test TPM sources (set TPM11_TESTTPM_SRC to the testtpm folder)" >&2; exit 1; }
# 16 transient object slots: tpm11's engine swaps keys out with
# ContextSave, which fwTPM keeps only as a slot reference (its README), so
# tests must not depend on swapping.
export FWTPM_CPPFLAGS=-DFWTPM_MAX_OBJECTS=16
KEY=$( { cat "$SRC/SHA256SUMS"; echo "$FWTPM_CPPFLAGS"; } | sha256sum | cut -c1-16)
PREFIX=${XDG_CACHE_HOME:-$HOME/.cache}/tpm11/fwtpm-$KEY
mkdir -p "$(dirname "$PREFIX")"
# One build at a time (parallel test packages all ask for it).
exec 9>"$PREFIX.lock"
flock 9
if [ -x "$PREFIX/bin/fwtpm_server" ] && [ -f "$PREFIX/.tpm11-built" ]; then
  echo "$PREFIX/bin/fwtpm_server"
  exit 0
fi
echo "fwtpm.sh: building fwtpm_server into $PREFIX (5-10 minutes, once)" >&2
rm -rf "$PREFIX"
"$SRC/build-fwtpm.sh" "$PREFIX" >&2
touch "$PREFIX/.tpm11-built"
echo "$PREFIX/bin/fwtpm_server"
