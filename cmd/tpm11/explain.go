package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tpm11/tpm11/ck"
)

// explain turns an error into the line the user reads: a PKCS#11 return
// value is named with what it means here.
func explain(err error) string {
	var ce *ck.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	hint := map[ck.RV]string{
		ck.CKR_DEVICE_ERROR:          "the TPM failed or is unreachable (tpm11 info; TPM11_LOG=debug shows more)",
		ck.CKR_TOKEN_NOT_PRESENT:     "no TPM (tpm11 info)",
		ck.CKR_USER_NOT_LOGGED_IN:    "the user PIN is needed",
		ck.CKR_KEY_SIZE_RANGE:        "this TPM has no key of that size",
		ck.CKR_CURVE_NOT_SUPPORTED:   "this TPM has no such curve",
		ck.CKR_DEVICE_MEMORY:         "the TPM is out of memory",
		ck.CKR_TEMPLATE_INCONSISTENT: "the key's attributes do not fit together",
		ck.CKR_TOKEN_WRITE_PROTECTED: "the token may not be changed: a read-only store, or another user's token in a shared store (only its owner changes it)",
	}[ce.RV]
	msg := err.Error()
	if strings.Contains(msg, "TPM_RC_INTEGRITY") {
		hint = "this TPM cannot open the token's objects: it was cleared, or it is not the TPM the token was made on; see README, troubleshooting"
	}
	if hint != "" {
		msg = fmt.Sprintf("%s (%s)", msg, hint)
	}
	return msg
}
