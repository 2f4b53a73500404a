package tpmtoken

import (
	"errors"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/asyncq"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// rcTable is the one place TPM response codes become CK_RVs.
var rcTable = []struct {
	rc tpm2.TPMRC
	rv ck.RV
}{
	{tpm2.TPMRCAuthFail, ck.CKR_PIN_INCORRECT},
	{tpm2.TPMRCBadAuth, ck.CKR_PIN_INCORRECT},
	{tpm2.TPMRCLockout, ck.CKR_PIN_LOCKED},
	{tpm2.TPMRCObjectMemory, ck.CKR_DEVICE_MEMORY},
	{tpm2.TPMRCSessionMemory, ck.CKR_DEVICE_MEMORY},
	{tpm2.TPMRCMemory, ck.CKR_DEVICE_MEMORY},
	{tpm2.TPMRCKeySize, ck.CKR_KEY_SIZE_RANGE},
	{tpm2.TPMRCCurve, ck.CKR_CURVE_NOT_SUPPORTED},
	{tpm2.TPMRCScheme, ck.CKR_MECHANISM_INVALID},
	{tpm2.TPMRCHash, ck.CKR_MECHANISM_INVALID},
	{tpm2.TPMRCSize, ck.CKR_DATA_LEN_RANGE},
	{tpm2.TPMRCValue, ck.CKR_DATA_INVALID},
}

// tpmError classifies an error from a TPM job.
func tpmError(err error) error {
	if err == nil {
		return nil
	}
	var ce *ck.Error
	if errors.As(err, &ce) {
		return err
	}
	switch {
	case errors.Is(err, asyncq.ErrCancelled):
		return ck.Wrap(ck.CKR_FUNCTION_CANCELED, err)
	case errors.Is(err, asyncq.ErrClosed):
		return ck.Wrap(ck.CKR_CRYPTOKI_NOT_INITIALIZED, err)
	case errors.Is(err, tpm.ErrPolicy), errors.Is(err, tpm.ErrPolicyUnsupported):
		// A key bound to platform state, with the platform elsewhere, or
		// given to an operation that cannot meet a policy.
		return ck.Wrap(ck.CKR_KEY_FUNCTION_NOT_PERMITTED, err)
	}
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		for _, m := range rcTable {
			if errors.Is(rc, m.rc) {
				return ck.Wrap(m.rv, err)
			}
		}
	}
	// Any other TPM response, or a transport failure: the device failed.
	return ck.Wrap(ck.CKR_DEVICE_ERROR, err)
}

// storeErr gives a failed store write rv unless the store gave it its own
// (a full store: CKR_DEVICE_MEMORY; one that may not be written:
// CKR_TOKEN_WRITE_PROTECTED).
func storeErr(rv ck.RV, err error) error {
	var ce *ck.Error
	if err == nil || errors.As(err, &ce) {
		return err
	}
	return ck.Wrap(rv, err)
}
