package mech

import (
	"bytes"
	"crypto/mlkem"
	"testing"

	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
	"github.com/cloudflare/circl/pki"
	"github.com/cloudflare/circl/sign"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
)

// Our ML-DSA SubjectPublicKeyInfo is circl's, byte for byte, and circl
// parses it back to the same key; our verifier accepts circl's signatures
// (with a context) and rejects tampered ones.
func TestMLDSASPKIAndVerifyAgainstCircl(t *testing.T) {
	for p, set := range MLDSASets {
		t.Run(set.Name, func(t *testing.T) {
			require.Equal(t, set.scheme, pki.SchemeByOid(set.OID))
			pk, sk, err := set.scheme.GenerateKey()
			require.NoError(t, err)
			pub, _ := pk.MarshalBinary()
			require.Len(t, pub, set.PubLen)
			der, err := PQCSubjectPublicKeyInfo(set.OID, pub)
			require.NoError(t, err)
			theirs, err := pki.MarshalPKIXPublicKey(pk)
			require.NoError(t, err)
			require.Equal(t, theirs, der)
			back, err := pki.UnmarshalPKIXPublicKey(der)
			require.NoError(t, err)
			require.True(t, back.Equal(pk))
			kt, ps, got, err := ParsePQCSubjectPublicKeyInfo(der)
			require.NoError(t, err)
			require.Equal(t, ck.CKK_ML_DSA, kt)
			require.Equal(t, p, ps)
			require.Equal(t, pub, got)

			msg, ctx := []byte("message"), []byte("context")
			sig := set.scheme.Sign(sk, msg, &sign.SignatureOpts{Context: string(ctx)})
			require.True(t, set.Verify(pub, msg, ctx, sig))
			require.False(t, set.Verify(pub, msg, nil, sig))
			require.False(t, set.Verify(pub, []byte("Message"), ctx, sig))
			require.False(t, set.Verify(pub, msg, ctx, sig[1:]))
			require.Error(t, set.CheckPublic(pub[1:]))
		})
	}
	_, err := MLDSASetOf(4)
	require.True(t, ck.ToRV(err) == ck.CKR_PARAMETER_SET_NOT_SUPPORTED, "%v", err)
}

func TestMLDSAContextParameter(t *testing.T) {
	m := func(p Param) Mechanism { return Mechanism{Type: ck.CKM_ML_DSA, Param: p} }
	ctx, err := MLDSAContext(m(nil))
	require.NoError(t, err)
	require.Empty(t, ctx)
	ctx, err = MLDSAContext(m(SignContext{Hedge: ck.CKH_HEDGE_REQUIRED, Context: []byte("abc")}))
	require.NoError(t, err)
	require.Equal(t, []byte("abc"), ctx)
	for _, bad := range []Param{
		SignContext{Context: bytes.Repeat([]byte{1}, 256)},
		SignContext{Hedge: ck.CKH_DETERMINISTIC_REQUIRED},
		SignContext{Hedge: 7},
		Bytes{1},
		PSSParams{},
	} {
		_, err := MLDSAContext(m(bad))
		require.True(t, ck.ToRV(err) == ck.CKR_MECHANISM_PARAM_INVALID, "%#v: %v", bad, err)
	}
}

// Encapsulation in software decapsulates, in Go's crypto/mlkem (768,
// 1024) and circl (512), to the same secret; the SPKI names the key.
func TestMLKEMEncapsulate(t *testing.T) {
	for p, set := range MLKEMSets {
		t.Run(set.Name, func(t *testing.T) {
			var ek []byte
			var decap func(ct []byte) []byte
			switch p {
			case ck.CKP_ML_KEM_512:
				pk, sk, err := mlkem512.GenerateKeyPair(nil)
				require.NoError(t, err)
				ek, _ = pk.MarshalBinary()
				decap = func(ct []byte) []byte {
					ss, err := mlkem512.Scheme().Decapsulate(sk, ct)
					require.NoError(t, err)
					return ss
				}
			case ck.CKP_ML_KEM_768:
				dk, err := mlkem.GenerateKey768()
				require.NoError(t, err)
				ek = dk.EncapsulationKey().Bytes()
				decap = func(ct []byte) []byte {
					ss, err := dk.Decapsulate(ct)
					require.NoError(t, err)
					return ss
				}
			default:
				dk, err := mlkem.GenerateKey1024()
				require.NoError(t, err)
				ek = dk.EncapsulationKey().Bytes()
				decap = func(ct []byte) []byte {
					ss, err := dk.Decapsulate(ct)
					require.NoError(t, err)
					return ss
				}
			}
			require.Len(t, ek, set.PubLen)
			ss, ct, err := set.Encapsulate(ek)
			require.NoError(t, err)
			require.Len(t, ct, set.CtLen)
			require.Len(t, ss, MLKEMSharedSecretLen)
			require.Equal(t, ss, decap(ct))
			_, _, err = set.Encapsulate(ek[1:])
			require.True(t, ck.ToRV(err) == ck.CKR_ATTRIBUTE_VALUE_INVALID, "%v", err)

			der, err := PQCSubjectPublicKeyInfo(set.OID, ek)
			require.NoError(t, err)
			kt, ps, got, err := ParsePQCSubjectPublicKeyInfo(der)
			require.NoError(t, err)
			require.Equal(t, ck.CKK_ML_KEM, kt)
			require.Equal(t, p, ps)
			require.Equal(t, ek, got)
		})
	}
}
