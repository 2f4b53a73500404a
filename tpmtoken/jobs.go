package tpmtoken

import (
	"math/bits"

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
	case *mech.SignCall:
		c1 := *c // the Signature's planned call: the next Plan reuses it
		scheme := tpm.SigScheme{Alg: c1.Scheme, Hash: c1.Hash}
		return func(e *tpm.Engine) ([]byte, error) { return e.SignBytes(key, c1.Digest, scheme, c1.Len) }
	}
	if job := pqcCallJob(key, call); job != nil { // pqc_jobs.go
		return job
	}
	return func(*tpm.Engine) ([]byte, error) {
		return nil, ck.Errorf(ck.CKR_GENERAL_ERROR, "unknown TPM call %T", call)
	}
}

// mechKey describes key object o to the mechanisms.
func mechKey(o *Object) mech.Key {
	k := mech.Key{Type: o.keyType()}
	switch k.Type {
	case ck.CKK_RSA:
		k.ModulusBits = bitLen(o.Attrs[ck.CKA_MODULUS])
	case ck.CKK_EC:
		k.Curve = mech.CurveOf(o.Attrs[ck.CKA_EC_PARAMS])
	case ck.CKK_ML_DSA, ck.CKK_ML_KEM:
		k.ParamSet = o.Attrs.ULongOr(ck.CKA_PARAMETER_SET)
		if o.key != nil && k.Type == ck.CKK_ML_DSA {
			k.PreHash = preHashOf(o.key) // pqc_keys.go
		}
	default:
		n, _ := o.Attrs.ULong(ck.CKA_VALUE_LEN)
		k.ValueLen = int(n)
	}
	return k
}

// bitLen is the length in bits of the big-endian integer b (C_SignInit of
// an RSA key asks it of the modulus: no big.Int built for it).
func bitLen(b []byte) int {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 {
		return 0
	}
	return 8*(len(b)-1) + bits.Len8(b[0])
}
