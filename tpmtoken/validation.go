package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
)

// CKS_LAST_VALIDATION_OK is C_GetSessionValidationFlags' one flag type.
const CKS_LAST_VALIDATION_OK = 0

// SessionValidationFlags is C_GetSessionValidationFlags: the validation
// flags of the session's last operation. The token has no validation
// objects (no FIPS or other validation to claim), so none is ever set.
func (l *Library) SessionValidationFlags(h uint64, typ uint64) (ck.Flags, error) {
	if _, err := l.anySession(h); err != nil {
		return 0, err
	}
	if typ != CKS_LAST_VALIDATION_OK {
		return 0, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "validation flags type 0x%x", typ)
	}
	return 0, nil
}
