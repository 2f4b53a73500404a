package tpmtoken

import "github.com/tpm11/tpm11/ck"

// LoginUser is C_LoginUser. The token has one user of each type (CKU_SO,
// CKU_USER) and no user names, so with no name (NULL or empty) it is
// C_Login, return codes and all. The spec says nothing of tokens without
// named users; a name is refused with CKR_ARGUMENTS_BAD rather than
// ignored: a caller naming a user must not end up logged in as another
// identity it did not ask for. CKR_USER_TYPE_INVALID would blame a valid
// user type, and CKR_PIN_INCORRECT a PIN that was never checked; the name
// never reaches the TPM, so it costs no dictionary-attack try.
func (l *Library) LoginUser(h uint64, userType ck.UserType, pin, username []byte) error {
	if len(username) == 0 {
		return l.Login(h, userType, pin)
	}
	if _, err := l.session(h); err != nil {
		return err
	}
	return ck.Errorf(ck.CKR_ARGUMENTS_BAD, "this token has no named users")
}
