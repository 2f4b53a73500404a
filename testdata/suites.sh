#!/usr/bin/env bash
# Third-party conformance suites against build/libtpm11.so on a private swtpm:
# google/pkcs11test (C++, gtest) and python-pkcs11's test suite. NOT part of
# `make test`: their sources are not in this repository and CI cannot fetch
# them. Usage:
#   testdata/suites.sh [-p PKCS11TEST_DIR] [-y PYTHON_PKCS11_DIR | -Y] [-- gtest/pytest args]
# PKCS11TEST_DIR holds pkcs11test's sources with a Makefile that builds
# ./pkcs11test (Debian: googletest libgtest-dev). PYTHON_PKCS11_DIR holds
# python-pkcs11's sources (pyauth/python-pkcs11, MIT; the unittest-based
# suite of the 0.7 era, whose tests/__init__.py reads PKCS11_MODULE,
# PKCS11_TOKEN_LABEL, PKCS11_TOKEN_PIN and PKCS11_TOKEN_SO_PIN). -Y takes it
# from /work/suites-src/python-pkcs11 (or $PYTHON_PKCS11_DIR) and skips that
# half cleanly when the directory is absent. That copy was retyped by hand
# from a stored code index of public GitHub repositories (this machine
# reaches neither PyPI nor GitHub), outside this repository: third-party
# source is never committed here; its PROVENANCE file names the stored
# version of each file. Debian packages it needs: cython3 python3-asn1crypto
# python3-cached-property python3-cryptography python3-pytest python3-dev.
# Either suite may be left out. Arguments after -- go to each suite run.
# Each suite gets a fresh token: label "suites", user PIN 12345678, SO
# PIN 87654321. Failures are listed, not fatal: the point is the list (see
# DEVELOPERS.md for how each remaining one is explained).
source "$(dirname "$0")/lib.sh"
P11TEST= PYP11= PYP11_DEFAULT=
while getopts p:y:Y o; do
  case $o in
    p) P11TEST=$OPTARG ;;
    y) PYP11=$OPTARG ;;
    Y) PYP11=${PYTHON_PKCS11_DIR:-/work/suites-src/python-pkcs11} PYP11_DEFAULT=1 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ -n "$P11TEST$PYP11" ] || fail "give -p PKCS11TEST_DIR and/or -y PYTHON_PKCS11_DIR (or -Y)"
# -Y: no sources here is not an error (CI and fresh machines have none).
if [ -n "$PYP11_DEFAULT" ] && [ ! -f "$PYP11/pkcs11/_pkcs11.pyx" ]; then
  echo "skip python-pkcs11: no sources in $PYP11"
  PYP11=
  [ -n "$P11TEST" ] || exit 0
fi
[ -f "$MODULE" ] || fail "$MODULE missing: make build"
USER_PIN=12345678 SO_PIN=87654321 LABEL=suites
# The module logs each refused call with its reason (stderr, into the
# suite's log): the reasons are what the failures are classified by.
export TPM11_LOG=${TPM11_LOG:-debug}

# fresh_token NAME: a new swtpm and store for one suite, token initialised.
fresh_token() {
  [ -n "$SWTPM_PID" ] && { kill "$SWTPM_PID" 2>/dev/null; wait "$SWTPM_PID" 2>/dev/null || true; }
  start_swtpm "$WORK/$1-tpm"
  export TPM11_STORE=$WORK/$1-store
  TPM11_LOG= pkcs11-tool --module "$MODULE" --init-token --label $LABEL --so-pin $SO_PIN >/dev/null || fail "init-token"
  TPM11_LOG= pkcs11-tool --module "$MODULE" --token-label $LABEL --login --login-type so --so-pin $SO_PIN \
    --init-pin --pin $USER_PIN >/dev/null || fail "init-pin"
  # The module shows more than one slot with a token (the fresh one beside
  # the initialised one): the suites are told which.
  SLOT=$(TPM11_LOG= pkcs11-tool --module "$MODULE" -L 2>/dev/null | awk -v l="$LABEL" \
    '/^Slot [0-9]+/ {s=$2} $1 == "token" && $2 == "label" && $NF == l {print s+0; exit}')
  [ -n "$SLOT" ] || fail "no slot holds token $LABEL"
}

# summarize_gtest LOG: the failed tests, and passed/failed/skipped counts
# (pkcs11test marks a skip by returning early and listing it at the end).
summarize_gtest() {
  local log=$1 passed failed skipped
  sed -n '/tests, listed below:/,/FAILED TEST/p' "$log" | grep -E '^\[  FAILED  \] [A-Za-z]' || true
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\?\./\1/p' "$log")
  failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) tests\?, listed below:/\1/p' "$log")
  skipped=$(sed -n '/Following tests were skipped/,$p' "$log" | grep -c '^  ' || true)
  echo "pkcs11test: $((${passed:-0} - skipped)) passed, ${failed:-0} failed, $skipped skipped"
}

if [ -n "$P11TEST" ]; then
  make -C "$P11TEST" >/dev/null || fail "building pkcs11test in $P11TEST"
  fresh_token pkcs11test
  echo "== pkcs11test"
  # No -I: the token-init tests would wipe the token mid-run.
  "$P11TEST/pkcs11test" -m "$(basename "$MODULE")" -l "$(dirname "$MODULE")" \
    -s "$SLOT" -u $USER_PIN -o $SO_PIN "$@" >"$WORK/pkcs11test.log" 2>&1 || true
  cp "$WORK/pkcs11test.log" "${SUITES_LOG_DIR:-$ROOT/build}/pkcs11test.log"
  summarize_gtest "$WORK/pkcs11test.log"
fi

# run_python_pkcs11 DIR [pytest args]: builds python-pkcs11's Cython
# extension in a copy of DIR and runs its tests against the module.
run_python_pkcs11() {
  local src=$1 build=$WORK/python-pkcs11
  shift
  # Debian's interpreter: it has cython3 and the python3-* packages (a
  # pyenv shim first on PATH would not).
  local py=/usr/bin/python3
  fresh_token python-pkcs11
  echo "== python-pkcs11"
  cp -r "$src" "$build"
  # The extension alone, with Cython's own driver: setup.py wants
  # setuptools_scm's version magic (use_scm_version, setup_requires), which
  # a copy without git metadata and without network cannot satisfy, and the
  # tests import the package from the source tree.
  (cd "$build" && "$py" -m Cython.Build.Cythonize -3 -i pkcs11/_pkcs11.pyx \
    >"$WORK/pyp11-build.log" 2>&1) ||
    fail "building python-pkcs11: $(tail -20 "$WORK/pyp11-build.log")"
  (cd "$build" && PKCS11_MODULE=$MODULE PKCS11_TOKEN_LABEL=$LABEL PKCS11_TOKEN_PIN=$USER_PIN \
    PKCS11_TOKEN_SO_PIN=$SO_PIN "$py" -m pytest -q -rfEs -p no:cacheprovider tests "$@") \
    >"$WORK/pyp11.log" 2>&1 || true
  cp "$WORK/pyp11.log" "${SUITES_LOG_DIR:-$ROOT/build}/python-pkcs11.log"
  grep -E '^(FAILED|ERROR|SKIPPED)|passed|failed' "$WORK/pyp11.log" || true
}

if [ -n "$PYP11" ]; then
  run_python_pkcs11 "$PYP11" "$@"
fi
