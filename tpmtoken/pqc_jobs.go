package tpmtoken

import (
	"errors"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// pqcCallJob is the TPM job of an ML-DSA or ML-KEM call (nil for another call).
func pqcCallJob(key *tpm.Loadable, call mech.TPMCall) func(e *tpm.Engine) ([]byte, error) {
	switch c := call.(type) {
	case mech.MLDSASignCall:
		return func(e *tpm.Engine) ([]byte, error) {
			sig, err := e.SignMessage(key, c.Context, c.Message)
			if errors.Is(err, tpm2.TPMRCMemory) {
				// The TPM holds no more of a message (fwTPM: 1024 bytes);
				// the sequence was flushed, nothing signed.
				return nil, ck.Wrap(ck.CKR_DATA_LEN_RANGE, err)
			}
			if err != nil {
				return nil, err
			}
			if sig.Alg != tpm.AlgMLDSA || len(sig.Sig) != c.Len {
				return nil, ck.Errorf(ck.CKR_DEVICE_ERROR, "the TPM made a %d-byte signature of type %#x, not an ML-DSA one of %d", len(sig.Sig), uint16(sig.Alg), c.Len)
			}
			return sig.Sig, nil
		}
	case mech.HashMLDSASignCall:
		return func(e *tpm.Engine) ([]byte, error) {
			sig, err := e.SignDigest(key, c.Context, c.Digest)
			if err != nil {
				return nil, err
			}
			if sig.Alg != tpm.AlgHashMLDSA || sig.Hash != c.Hash || len(sig.Sig) != c.Len {
				return nil, ck.Errorf(ck.CKR_DEVICE_ERROR, "the TPM made a %d-byte signature of type %#x (hash %#x), not a HashML-DSA one of %d", len(sig.Sig), uint16(sig.Alg), uint16(sig.Hash), c.Len)
			}
			return sig.Sig, nil
		}
	case mech.MLKEMDecapCall:
		return func(e *tpm.Engine) ([]byte, error) {
			ss, err := e.Decapsulate(key, c.Ciphertext)
			if err != nil {
				return nil, err
			}
			if len(ss) != mech.MLKEMSharedSecretLen {
				return nil, ck.Errorf(ck.CKR_DEVICE_ERROR, "the TPM made a %d-byte shared secret", len(ss))
			}
			return ss, nil
		}
	}
	return nil
}
