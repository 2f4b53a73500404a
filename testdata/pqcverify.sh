#!/usr/bin/env bash
# Installs the HashML-DSA verifier's dependencies (@noble/post-quantum,
# pinned with their integrity hashes in testdata/pqcverify/package-lock.json)
# once into a cache outside the checkout, keyed by the lock file, and prints
# that folder (its node_modules beside testdata/pqcverify/verify.mjs make
# the verifier). Exits non-zero when node/npm are missing or the install
# fails: the PQC tests then fail, never skip. Needs: nodejs (>= 20.19) and
# npm, and the npm registry reachable on first use.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
D=$REPO/testdata/pqcverify
command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "pqcverify.sh: node (>= 20.19) and npm are needed (e.g. NodeSource's nodejs 20, which carries npm)" >&2; exit 1; }
# @noble/post-quantum 0.7.1 asks for node >= 20.19 (its package.json
# engines); Debian 12's own nodejs is 18.
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' ||
  { echo "pqcverify.sh: node $(node --version) is older than the 20.19 @noble/post-quantum needs" >&2; exit 1; }
KEY=$(cat "$D/package.json" "$D/package-lock.json" | sha256sum | cut -c1-16)
PREFIX=${XDG_CACHE_HOME:-$HOME/.cache}/tpm11/pqcverify-$KEY
mkdir -p "$(dirname "$PREFIX")"
exec 9>"$PREFIX.lock"
flock 9
if [ -f "$PREFIX/.tpm11-installed" ]; then
  echo "$PREFIX"
  exit 0
fi
rm -rf "$PREFIX"
mkdir -p "$PREFIX"
cp "$D/package.json" "$D/package-lock.json" "$PREFIX/"
(cd "$PREFIX" && npm ci --no-audit --no-fund --ignore-scripts >&2) ||
  { echo "pqcverify.sh: npm ci failed" >&2; exit 1; }
touch "$PREFIX/.tpm11-installed"
echo "$PREFIX"
