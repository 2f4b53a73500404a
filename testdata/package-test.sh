#!/usr/bin/env bash
# The package a distribution could ship.
# 1. make install / make uninstall into a DESTDIR, for PREFIX=/usr/local and
#    /usr: the files, their modes, stripped binaries, the p11-kit
#    registration, and nothing left behind.
# 2. The Debian package (make package, built by nfpm): installed on this
#    machine with dpkg, checked from the installed files (p11-kit
#    list-modules, ssh-keygen -D through the registered module, tpm11
#    --version, man pages, completions, the tpm11 group and /var/lib/tpm11),
#    then purged, also on failure. Needs root and dpkg, else skipped with a
#    message; never run over an installed tpm11 package. Files at the
#    package's paths that are not a package's own (a `make install
#    PREFIX=/usr`), and a /etc/pkcs11/modules/tpm11.module (a `make install`
#    elsewhere) are set aside and put back. Tokens go to a temporary store
#    on a private swtpm, never the user's.
source "$(dirname "$0")/lib.sh"
set +o pipefail  # checks are "command | grep -q", which may stop the writer early
export TPM11_STORE=$WORK/store
unset TPM11_PIN TPM11_SO_PIN TPM11_TOKEN TPM11_CONFIG
VERSION=$(sed -n 's/^const Version = "\(.*\)"/\1/p' "$ROOT/version/version.go")
MULTIARCH=$(gcc -print-multiarch)
cd "$ROOT"

# --- the version: semantic, with its CHANGELOG section, the same everywhere ---
echo "$VERSION" | grep -qE '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$' || fail "version $VERSION is not MAJOR.MINOR.PATCH"
grep -q "^## \[$VERSION\]" CHANGELOG.md || fail "CHANGELOG.md has no section for $VERSION"
[ -f LICENSE ] && grep -q "Apache License" LICENSE || fail "LICENSE"
pass "version $VERSION is semantic and has its CHANGELOG section; LICENSE"

# --- make install / uninstall -------------------------------------------------
stripped() { ! readelf -S "$1" | grep -qE '\.symtab|\.debug_'; }
for prefix in /usr/local /usr; do
  D=$WORK/destdir$prefix
  make -s install PREFIX=$prefix DESTDIR="$D" >/dev/null || fail "make install PREFIX=$prefix"
  for f in bin/tpm11 lib/$MULTIARCH/pkcs11/libtpm11.so share/man/man1/tpm11.1 share/man/man1/tpm11-keygen.1 \
           share/bash-completion/completions/tpm11 share/fish/vendor_completions.d/tpm11.fish share/doc/tpm11/LICENSE; do
    [ -f "$D$prefix/$f" ] || fail "make install PREFIX=$prefix: no $prefix/$f"
  done
  [ -x "$D$prefix/bin/tpm11" ] && stripped "$D$prefix/bin/tpm11" && stripped "$D$prefix/lib/$MULTIARCH/pkcs11/libtpm11.so" \
    || fail "binaries not executable and stripped"
  [ "$("$D$prefix/bin/tpm11" --version)" = "tpm11 $VERSION" ] || fail "installed tpm11 --version"
  if [ $prefix = /usr ]; then
    [ "$(cat "$D/usr/share/p11-kit/modules/tpm11.module")" = "module: libtpm11.so" ] || fail "p11-kit registration for /usr"
    [ -f "$D/usr/share/zsh/vendor-completions/_tpm11" ] || fail "zsh completion for /usr"
  else
    [ "$(cat "$D/etc/pkcs11/modules/tpm11.module")" = "module: $prefix/lib/$MULTIARCH/pkcs11/libtpm11.so" ] || fail "p11-kit registration for $prefix"
    [ -f "$D$prefix/share/zsh/site-functions/_tpm11" ] || fail "zsh completion for $prefix"
  fi
  make -s uninstall PREFIX=$prefix DESTDIR="$D" >/dev/null || fail "make uninstall PREFIX=$prefix"
  left=$(find "$D" -type f)
  [ -z "$left" ] || fail "make uninstall left: $left"
done
pass "make install/uninstall PREFIX=/usr/local and /usr with DESTDIR: module, p11-kit registration, stripped binaries, man pages, completions; nothing left"

# --- the Debian package ---------------------------------------------------------
if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
  echo "skip: the Debian package test installs into the system: it needs root and dpkg"
  exit 0
fi
if dpkg-query -W -f='${Status}' tpm11 2>/dev/null | grep -q "ok installed"; then
  echo "skip: a tpm11 package is installed on this machine; the package test leaves it alone"
  exit 0
fi
make -s package >"$WORK/package.log" 2>&1 || { cat "$WORK/package.log" >&2; fail "make package"; }
DEB=$ROOT/build/tpm11_${VERSION}_$(dpkg --print-architecture).deb
[ -f "$DEB" ] || fail "no $DEB"
# lintian (Debian's package checker) reports nothing: no error, no warning.
if command -v lintian >/dev/null; then
  lintian --allow-root --fail-on error,warning "$DEB" >"$WORK/lintian.log" 2>&1 || fail "lintian: $(cat "$WORK/lintian.log")"
  [ ! -s "$WORK/lintian.log" ] || fail "lintian: $(cat "$WORK/lintian.log")"
  readelf -h "$ROOT/build/tpm11" | grep -q "Position-Independent Executable" || fail "tpm11 is not PIE"
elif [ "${CI:-}" = true ]; then
  fail "lintian not installed (apt-get install lintian)"
else
  echo "skip lintian: not installed"
fi

# Set aside what the package would overwrite or what would shadow it.
ASIDE=$WORK/aside
mkdir -p "$ASIDE"
group_existed=$(getent group tpm11 >/dev/null && echo yes || echo no)
store_existed=$([ -e /var/lib/tpm11 ] && echo yes || echo no)
for f in $(dpkg-deb --fsys-tarfile "$DEB" | tar -t | sed -n 's|^\./|/|p') /etc/pkcs11/modules/tpm11.module; do
  if [ -f "$f" ] || [ -L "$f" ]; then
    mkdir -p "$ASIDE$(dirname "$f")" && mv "$f" "$ASIDE$f"
  fi
done
restore() {
  set +e
  dpkg --purge tpm11 >/dev/null 2>&1
  (cd "$ASIDE" && find . \( -type f -o -type l \) -print0) | while IFS= read -r -d '' f; do
    mkdir -p "$(dirname "${f#.}")" && mv -f "$ASIDE/${f#./}" "${f#.}"
  done
  if [ "$group_existed" = no ] && getent group tpm11 >/dev/null; then groupdel tpm11; fi
  if [ "$store_existed" = no ]; then rmdir /var/lib/tpm11/tokens /var/lib/tpm11 2>/dev/null; fi
  cleanup
}
trap restore EXIT

dpkg -i "$DEB" >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; fail "dpkg -i"; }
[ "$(dpkg-query -W -f='${Version}' tpm11)" = "$VERSION" ] || fail "installed version"
[ "$(/usr/bin/tpm11 --version)" = "tpm11 $VERSION" ] || fail "/usr/bin/tpm11 --version: $(/usr/bin/tpm11 --version)"
SO=/usr/lib/$MULTIARCH/pkcs11/libtpm11.so
[ -f "$SO" ] || fail "no $SO"
[ "$(cat /usr/share/p11-kit/modules/tpm11.module)" = "module: libtpm11.so" ] || fail "p11-kit registration"
zcat /usr/share/man/man1/tpm11-keygen.1.gz | grep -q '^\.TH "TPM11"' || fail "man page"
! command -v man >/dev/null || man -w tpm11-import >/dev/null 2>&1 || fail "man does not find tpm11-import"
bash -c 'source /usr/share/bash-completion/completions/tpm11 && declare -F __start_tpm11' >/dev/null || fail "bash completion"
[ -f /usr/share/zsh/vendor-completions/_tpm11 ] && [ -f /usr/share/fish/vendor_completions.d/tpm11.fish ] || fail "zsh/fish completions"
[ -f /usr/share/doc/tpm11/copyright ] && [ -f /usr/share/doc/tpm11/changelog.gz ] || fail "copyright, changelog"
grep -q '^#define CKA_TPM11_ATTESTATION' /usr/include/tpm11.h || fail "no /usr/include/tpm11.h with the vendor attributes"
dpkg-query -W -f='${Conffiles}' tpm11 | grep -q /etc/tpm11/config || fail "/etc/tpm11/config is not a conffile"
getent group tpm11 >/dev/null || fail "no tpm11 group"
[ "$(stat -c '%a %U %G' /var/lib/tpm11)" = "3770 root tpm11" ] || fail "/var/lib/tpm11: $(stat -c '%a %U %G' /var/lib/tpm11)"
pass "dpkg -i: /usr/bin/tpm11 $VERSION, the module in /usr/lib/$MULTIARCH/pkcs11, p11-kit registration, man pages, completions, tpm11.h, conffile, tpm11 group and /var/lib/tpm11"

# Use the installed files: a token on a private swtpm, a key, then what a
# user runs.
start_swtpm "$WORK/tpm" 2>"$WORK/swtpm.log"
export TPM11_SO_PIN=87654321 TPM11_PIN=123456
/usr/bin/tpm11 init --label pkg > /dev/null || fail "installed tpm11 init"
/usr/bin/tpm11 keygen --type ec:p256 --label pkg-key --ssh > "$WORK/keygen.out" 2>&1 || fail "installed tpm11 keygen: $(cat "$WORK/keygen.out")"
p11-kit list-modules > "$WORK/modules.txt" 2>&1 || fail "p11-kit list-modules: $(cat "$WORK/modules.txt")"
grep -A3 "^tpm11: " "$WORK/modules.txt" | grep -q "library-version: ${VERSION%.*}" || fail "p11-kit list-modules: $(cat "$WORK/modules.txt")"
grep -q "token: pkg" "$WORK/modules.txt" || fail "p11-kit does not show the token: $(cat "$WORK/modules.txt")"
ssh-keygen -D "$SO" > "$WORK/ssh.txt" 2>/dev/null || fail "ssh-keygen -D $SO"
want=$(grep ^ecdsa "$WORK/keygen.out" | cut -d' ' -f2)
grep -q "$want" "$WORK/ssh.txt" || fail "ssh-keygen -D does not list the key: $(cat "$WORK/ssh.txt")"
PROXY=/usr/lib/$MULTIARCH/p11-kit-proxy.so
if [ -f "$PROXY" ]; then
  ssh-keygen -D "$PROXY" 2>/dev/null | grep -q "$want" || fail "ssh-keygen -D through p11-kit-proxy (the registration)"
fi
pass "from the installed files: p11-kit list-modules shows module and token, ssh-keygen -D lists the key (directly and through p11-kit-proxy)"

dpkg --purge tpm11 > /dev/null 2>&1 || fail "dpkg --purge"
[ ! -e /usr/bin/tpm11 ] && [ ! -e "$SO" ] && [ ! -e /usr/share/p11-kit/modules/tpm11.module ] && [ ! -e /etc/tpm11/config ] \
  || fail "files left after purge"
p11-kit list-modules 2>/dev/null | grep -q "^tpm11: " && fail "p11-kit still lists tpm11 after purge"
pass "dpkg --purge removes it"
echo "package tests passed"
