#!/usr/bin/env bash
# Hostile callers of libtpm11.so (issue 21), each on a swtpm and store of
# its own:
# - finalize_test: C_Finalize while the TPM holds a command unanswered
#   returns without waiting for it (testdata/slowtpm -hold);
# - fuzz_test: every C_* function with random and hostile arguments
#   (FUZZ_CALLS calls), output buffers before guard pages, a watchdog on
#   every call;
# - stress_test: threads sharing sessions and objects at random
#   (STRESS_CALLS calls in all).
# Each fails on a crash, a hang, or a CKR_DEVICE_ERROR/CKR_GENERAL_ERROR.
source "$(dirname "$0")/lib.sh"
exec 3>&2 2>"$WORK/stderr.log"
ONLY=${ROBUST_ONLY:-finalize fuzz stress}
for t in finalize_test fuzz_test stress_test; do
  case " $ONLY " in *" ${t%_test} "*) ;; *) continue ;; esac
  gcc -std=c11 -D_GNU_SOURCE -Wall -Werror -O1 -I"$ROOT/module" -o "$WORK/$t" "$ROOT/testdata/c/$t.c" -ldl -lpthread 2>&3
done
die() { tail -20 "$WORK/stderr.log" >&3; swtpm_logs >&3; fail "$1"; }

case " $ONLY " in *" finalize "*)
  start_swtpm "$WORK/tpm-fin"
  mkdir -p "$WORK/hold"
  start_slowtpm 0s "$WORK/hold"
  # A command deadline far beyond the test: only the abort path ends the
  # held command before the TPM answers.
  out=$(TPM11_TIMEOUT=600s TPM11_STORE=$WORK/store-fin TPM11_TPM=$SLOW_TPM "$WORK/finalize_test" "$MODULE" "$WORK/hold" 2>&3) || die "finalize_test"
  pass "finalize: $out"
  kill "$SLOWTPM_PID"; wait "$SLOWTPM_PID" 2>/dev/null || true; SLOWTPM_PID=
  kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true
;; esac

case " $ONLY " in *" fuzz "*)
  start_swtpm "$WORK/tpm-fuzz"
  out=$(FUZZ_CALLS=${FUZZ_CALLS:-20000} TPM11_STORE=$WORK/store-fuzz "$WORK/fuzz_test" "$MODULE" 2>&3) || die "fuzz_test: $out"
  pass "fuzz: $(tail -1 <<<"$out")"
  kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true
;; esac

case " $ONLY " in *" stress "*)
  start_swtpm "$WORK/tpm-stress"
  out=$(STRESS_CALLS=${STRESS_CALLS:-20000} TPM11_STORE=$WORK/store-stress "$WORK/stress_test" "$MODULE" 2>&3) || die "stress_test: $out"
  pass "stress: $(tail -1 <<<"$out")"
  kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true
;; esac
