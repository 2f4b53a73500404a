package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
)

// PIN rules.
//
// A PIN outside MinPINLen..MaxPINLen (the token's ulMinPinLen..ulMaxPinLen;
// the empty PIN included) cannot be any PIN the token has, because none
// could be set: it never reaches the TPM, so it costs no dictionary-attack
// try. Setting such a PIN (C_InitToken, C_InitPIN, C_SetPIN's new PIN) is
// CKR_PIN_LEN_RANGE; presenting one (C_Login, C_SetPIN's old PIN) is
// CKR_PIN_INCORRECT, and it is not counted as a failure below, since it
// used up nothing.
//
// The TPM enforces: PIN objects are DA-protected, so every wrong PIN that
// reaches it counts against its one, TPM-wide lockout counter, and in
// lockout every PIN check fails with CKR_PIN_LOCKED; the token shows that
// as CKF_USER_PIN_LOCKED and CKF_SO_PIN_LOCKED (the counter is shared).
//
// That counter does not mean what CKF_*_PIN_COUNT_LOW means, though ("an
// incorrect PIN has been entered at least once since the last successful
// authentication"): it counts failures on every token and in every process
// on the TPM, and a success does not reset it (it only decays with time).
// So COUNT_LOW comes from the token's own count of wrong PINs for that user
// type since that user's last successful PIN check (C_Login, C_SetPIN's old
// PIN, C_InitToken's SO PIN). The count is kept in memory: it is per
// process and starts at zero at each C_Initialize; failures in other
// processes show only through the TPM's lockout state.
//
// CKF_*_PIN_FINAL_TRY is set when that user has failed since its last
// success and the TPM says one more failure locks it out. The spec lets a
// token leave FINAL_TRY clear when it will not say; we do so when the TPM is
// one failure from lockout only through other failures (another token, the
// other user type, another process, or failures before this user's last
// success), so FINAL_TRY never shows without COUNT_LOW.

// pinLenOK says whether pin could be a PIN of this token.
func pinLenOK(pin []byte) bool { return len(pin) >= MinPINLen && len(pin) <= MaxPINLen }

func checkPINLen(pin []byte) error {
	if !pinLenOK(pin) {
		return ck.Errorf(ck.CKR_PIN_LEN_RANGE, "PIN must be %d..%d bytes", MinPINLen, MaxPINLen)
	}
	return nil
}

// errPINOutOfRange is a presented PIN no PIN of this token can equal.
func errPINOutOfRange() error {
	return ck.Errorf(ck.CKR_PIN_INCORRECT, "PIN length outside %d..%d bytes", MinPINLen, MaxPINLen)
}

// notePINCheck records the outcome of a PIN check the TPM made for
// userType: a success clears its failures, a wrong PIN adds one. Anything
// else (lockout, a device error) says nothing about the PIN.
func (t *Token) notePINCheck(userType ck.UserType, err error) {
	if userType != ck.CKU_SO && userType != ck.CKU_USER {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil:
		t.pinFailures[userType] = 0
	case ck.ToRV(err) == ck.CKR_PIN_INCORRECT:
		t.pinFailures[userType]++
	}
}

// pinFlags are token t's PIN flags: lockout from the TPM, failures since
// the last success from the token (see above). The TPM's lockout state is
// the one last read (a refused PIN, or a background read when it is missing
// or older than StaleAfter): token queries never wait on the TPM, but for
// the first of a process, at most DAWait (see daState).
func (l *Library) pinFlags(t *Token) ck.Flags {
	st, known := l.daState()
	if !known {
		return 0
	}
	locked := st.InLockout || (st.MaxTries > 0 && st.Counter >= st.MaxTries)
	lastTry := st.MaxTries > 0 && st.Counter+1 == st.MaxTries
	t.mu.Lock()
	failures := t.pinFailures
	t.mu.Unlock()
	var f ck.Flags
	for _, u := range []struct {
		n                       int
		countLow, finalTry, lck ck.Flags
	}{
		{failures[ck.CKU_USER], ck.CKF_USER_PIN_COUNT_LOW, ck.CKF_USER_PIN_FINAL_TRY, ck.CKF_USER_PIN_LOCKED},
		{failures[ck.CKU_SO], ck.CKF_SO_PIN_COUNT_LOW, ck.CKF_SO_PIN_FINAL_TRY, ck.CKF_SO_PIN_LOCKED},
	} {
		if u.n > 0 {
			f |= u.countLow
		}
		switch {
		case locked:
			f |= u.lck
		case lastTry && u.n > 0:
			f |= u.finalTry
		}
	}
	return f
}
