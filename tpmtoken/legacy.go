package tpmtoken

import "github.com/tpm11/tpm11/ck"

// NotParallel is C_GetFunctionStatus and C_CancelFunction: legacy functions
// that, once the session is known, only say that no function runs in
// parallel with the application (CKR_FUNCTION_NOT_PARALLEL; the spec says
// they cannot return CKR_OK). A session with a pending asynchronous
// operation is no exception: that is C_AsyncComplete's business.
func (l *Library) NotParallel(h uint64) error {
	if _, err := l.anySession(h); err != nil {
		return err
	}
	return ck.E(ck.CKR_FUNCTION_NOT_PARALLEL)
}
