package tpmtoken

import (
	"crypto/subtle"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// CKA_ALWAYS_AUTHENTICATE: a private key that needs the user's PIN again,
// with C_Login(CKU_CONTEXT_SPECIFIC), after each C_SignInit or
// C_DecryptInit; until then the operation returns CKR_USER_NOT_LOGGED_IN.
// The PIN is checked by the TPM (the user seal is unsealed, so a wrong one
// counts against the lockout like any other) and must open the same
// storage value the session is logged in with.

// contextLogin is C_Login(CKU_CONTEXT_SPECIFIC) on session s.
func (l *Library) contextLogin(s *Session, pin []byte) error {
	s.mu.Lock()
	var st *opState
	busy := false
	for _, kind := range []OpKind{OpSign, OpDecrypt, OpSignRecover} {
		if o := s.op(kind); o != nil && o.state().needAuth {
			st, busy = o.state(), o.state().busy
			break
		}
	}
	s.mu.Unlock()
	if busy { // a call is running it (and reading authed)
		return ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a concurrent call is running the operation")
	}
	if st == nil {
		return ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	t := s.tok
	if !t.userLoggedIn() {
		return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	if !pinLenOK(pin) {
		return errPINOutOfRange()
	}
	rec := t.record()
	if rec.User == nil {
		return ck.E(ck.CKR_USER_PIN_NOT_INITIALIZED)
	}
	storage := t.storage
	_, err := t.lib.run(0, func(e *tpm.Engine) (any, error) {
		secret, err := t.unsealPIN(e, ck.CKU_USER, rec.User, pin)
		if err == nil && subtle.ConstantTimeCompare(secret, storage.Auth) != 1 {
			err = ck.E(ck.CKR_PIN_INCORRECT)
		}
		clear(secret)
		return nil, err
	})
	t.notePINCheck(ck.CKU_USER, err)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.busy {
		return ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a concurrent call is running the operation")
	}
	st.authed = true
	return nil
}

// authorized fails an operation on an always-authenticate key that has
// not had its context-specific login.
func (st *opState) authorized() error {
	if st.needAuth && !st.authed {
		return ck.Errorf(ck.CKR_USER_NOT_LOGGED_IN, "the key needs C_Login(CKU_CONTEXT_SPECIFIC) before each use")
	}
	return nil
}
