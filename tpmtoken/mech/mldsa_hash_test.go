package mech

import (
	"crypto/sha512"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
)

// A HashML-DSA key signs only with its own pre-hash, never pure ML-DSA;
// a pure key never HashML-DSA (the TPM's keys are bound, docs/pqc.md).
// The CKRs the spec gives each refusal; the digest planned for the TPM is
// the pre-hash of the message (SHA-384 here, Go's), or the caller's.
func TestHashMLDSASignatureChecks(t *testing.T) {
	sha384h := HashOf(ck.CKM_SHA384)
	k384 := Key{Type: ck.CKK_ML_DSA, ParamSet: ck.CKP_ML_DSA_65, PreHash: sha384h}
	pure := Key{Type: ck.CKK_ML_DSA, ParamSet: ck.CKP_ML_DSA_65}
	code := func(m Mechanism, k Key) ck.RV {
		_, err := NewSignature(m, k)
		return ck.ToRV(err)
	}
	hctx := func(h ck.MechType, hedge ck.ULong) Param {
		return HashSignContext{Hedge: hedge, Context: []byte("c"), Hash: h}
	}
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, code(Mechanism{Type: ck.CKM_ML_DSA}, k384))
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, code(Mechanism{Type: ck.CKM_HASH_ML_DSA_SHA256}, k384))
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, code(Mechanism{Type: ck.CKM_HASH_ML_DSA_SHA384}, pure))
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, code(Mechanism{Type: ck.CKM_HASH_ML_DSA, Param: hctx(ck.CKM_SHA256, 0)}, k384))
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, code(Mechanism{Type: ck.CKM_HASH_ML_DSA, Param: hctx(ck.CKM_SHA512, 0)}, k384))
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, code(Mechanism{Type: ck.CKM_HASH_ML_DSA, Param: hctx(ck.CKM_SHA384, ck.CKH_DETERMINISTIC_REQUIRED)}, k384))
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, code(Mechanism{Type: ck.CKM_HASH_ML_DSA}, k384))
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, code(Mechanism{Type: ck.CKM_HASH_ML_DSA_SHA384,
		Param: SignContext{Context: make([]byte, 256)}}, k384))
	require.Equal(t, ParamHashSignContext, ParamKindOf(ck.CKM_HASH_ML_DSA))
	require.Equal(t, ParamSignContext, ParamKindOf(ck.CKM_HASH_ML_DSA_SHA256))
	require.True(t, SignOnly(ck.CKM_HASH_ML_DSA_SHA384) && !SignOnly(ck.CKM_ML_DSA))

	// CKM_HASH_ML_DSA_SHA384: multi-part, hashed here.
	s, err := NewSignature(Mechanism{Type: ck.CKM_HASH_ML_DSA_SHA384, Param: SignContext{Context: []byte("ctx")}}, k384)
	require.NoError(t, err)
	require.True(t, s.MultiPart())
	require.Equal(t, 3309, s.Len())
	in := s.NewInput()
	require.NoError(t, in.Write([]byte("part one, ")))
	require.NoError(t, in.Write([]byte("part two")))
	call, err := s.Plan(in.Value())
	require.NoError(t, err)
	want := sha512.Sum384([]byte("part one, part two"))
	require.Equal(t, HashMLDSASignCall{Context: []byte("ctx"), Digest: want[:], Hash: tpm2.TPMAlgSHA384, Len: 3309}, call)

	// CKM_HASH_ML_DSA: single-part over the caller's digest of the hash's length.
	s, err = NewSignature(Mechanism{Type: ck.CKM_HASH_ML_DSA, Param: hctx(ck.CKM_SHA384, ck.CKH_HEDGE_REQUIRED)}, k384)
	require.NoError(t, err)
	require.False(t, s.MultiPart())
	_, err = s.Plan(want[:47])
	require.Equal(t, ck.CKR_DATA_LEN_RANGE, ck.ToRV(err))
	call, err = s.Plan(want[:])
	require.NoError(t, err)
	require.Equal(t, want[:], call.(HashMLDSASignCall).Digest)
	require.Equal(t, []byte("c"), call.(HashMLDSASignCall).Context)
}
