package tpmtoken

import (
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// callJob turns what a mechanism asks of the TPM into a job on the
// worker with key; the job's value is the output bytes.
func callJob(key *tpm.Loadable, call mech.TPMCall) func(e *tpm.Engine) ([]byte, error) {
	switch c := call.(type) {
	case mech.HMACCall:
		return func(e *tpm.Engine) ([]byte, error) { return e.HMAC(key, c.Hash, c.Data) }
	case mech.RSARawCall:
		return func(e *tpm.Engine) ([]byte, error) {
			out, err := e.RSARaw(key, c.Block)
			if err != nil {
				return nil, err
			}
			return mech.LeftPad(out, c.Len), nil
		}
	case mech.SignCall:
		scheme := tpm.SigScheme{Alg: c.Scheme, Hash: c.Hash}
		return func(e *tpm.Engine) ([]byte, error) {
			sig, err := e.Sign(key, c.Digest, scheme)
			if err != nil {
				return nil, err
			}
			return signatureBytes(sig, c.Len)
		}
	}
	if job := pqcCallJob(key, call); job != nil { // pqc_jobs.go
		return job
	}
	return func(*tpm.Engine) ([]byte, error) {
		return nil, ck.Errorf(ck.CKR_GENERAL_ERROR, "unknown TPM call %T", call)
	}
}

// signatureBytes is a TPM signature as PKCS#11 has it: r||s for ECDSA,
// each half n/2 bytes; the n-byte signature for RSA.
func signatureBytes(sig *tpm2.TPMTSignature, n int) ([]byte, error) {
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		ec, err := sig.Signature.ECDSA()
		if err != nil {
			return nil, err
		}
		out := make([]byte, n)
		new(big.Int).SetBytes(ec.SignatureR.Buffer).FillBytes(out[:n/2])
		new(big.Int).SetBytes(ec.SignatureS.Buffer).FillBytes(out[n/2:])
		return out, nil
	case tpm2.TPMAlgRSAPSS:
		rs, err := sig.Signature.RSAPSS()
		if err != nil {
			return nil, err
		}
		return mech.LeftPad(rs.Sig.Buffer, n), nil
	default:
		rs, err := sig.Signature.RSASSA()
		if err != nil {
			return nil, err
		}
		return mech.LeftPad(rs.Sig.Buffer, n), nil
	}
}

// mechKey describes key object o to the mechanisms.
func mechKey(o *Object) mech.Key {
	k := mech.Key{Type: o.keyType()}
	switch k.Type {
	case ck.CKK_RSA:
		k.ModulusBits = new(big.Int).SetBytes(o.Attrs[ck.CKA_MODULUS]).BitLen()
	case ck.CKK_EC:
		k.Curve = mech.CurveOf(o.Attrs[ck.CKA_EC_PARAMS])
	case ck.CKK_ML_DSA, ck.CKK_ML_KEM:
		k.ParamSet = o.Attrs.ULongOr(ck.CKA_PARAMETER_SET)
	default:
		n, _ := o.Attrs.ULong(ck.CKA_VALUE_LEN)
		k.ValueLen = int(n)
	}
	return k
}
