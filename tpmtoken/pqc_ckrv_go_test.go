package tpmtoken_test

import (
	"crypto/mlkem"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

// ML-DSA and ML-KEM key pairs on the PQC test TPM: the spec's return values
// for templates the TPM cannot make and for decapsulation with the wrong
// key, mechanism or use; and a token ML-KEM key pair kept in the store,
// which after the library is reopened decapsulates Go's crypto/mlkem
// ciphertext to Go's secret.
func TestPQCKeyPairAndDecapsulateCKRVs(t *testing.T) {
	f := swtpmtest.StartFwTPM(t)
	store := t.TempDir()
	l := open(t, f.Spec, store)
	defer l.Close()
	h := provision(t, l)
	dsa := tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN}
	kem := tpmtoken.Mechanism{Type: ck.CKM_ML_KEM_KEY_PAIR_GEN}
	ps := func(v ck.ULong) []tpmtoken.Attr { return []tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(v)}} }

	// (ML-DSA's: TestMLDSAThroughToken.)
	_, _, err := l.GenerateKeyPair(h, kem, nil, nil)
	require.Equal(t, ck.CKR_TEMPLATE_INCOMPLETE, rv(err), "no CKA_PARAMETER_SET")
	_, _, err = l.GenerateKeyPair(h, kem, ps(99), nil)
	require.Equal(t, ck.CKR_PARAMETER_SET_NOT_SUPPORTED, rv(err))
	_, _, err = l.GenerateKeyPair(h, kem, ps(ck.CKP_ML_KEM_768), []tpmtoken.Attr{{tpmtoken.CKA_TPM11_PCR_POLICY, []byte("16")}})
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err), "no PCR policy on ML-KEM keys")
	require.Empty(t, allObjects(t, l, h), "a refused template made an object")

	secretTmpl := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
		{ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, []byte{1}}}
	token := []tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte{0x4b}}}
	kemPub, kemPriv, err := l.GenerateKeyPair(h, kem, append(ps(ck.CKP_ML_KEM_768), token...), token)
	require.NoError(t, err)
	_, dsaPriv, err := l.GenerateKeyPair(h, dsa, ps(ck.CKP_ML_DSA_44), nil)
	require.NoError(t, err)
	_, noDecap, err := l.GenerateKeyPair(h, kem, ps(ck.CKP_ML_KEM_512), []tpmtoken.Attr{{ck.CKA_DECAPSULATE, []byte{0}}})
	require.NoError(t, err)
	got, err := l.GetAttributeValue(h, kemPub, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	ek, err := mlkem.NewEncapsulationKey768(got[0].Value)
	require.NoError(t, err)
	ss, ct := ek.Encapsulate()

	mlkemM := tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}
	_, err = l.DecapsulateKey(h+1000, mlkemM, kemPriv, secretTmpl, ct)
	require.Equal(t, ck.CKR_SESSION_HANDLE_INVALID, rv(err))
	_, err = l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256}, kemPriv, secretTmpl, ct)
	require.Equal(t, ck.CKR_MECHANISM_INVALID, rv(err))
	_, err = l.DecapsulateKey(h, mlkemM, 0xdead, secretTmpl, ct)
	require.Equal(t, ck.CKR_KEY_HANDLE_INVALID, rv(err))
	_, err = l.DecapsulateKey(h, mlkemM, dsaPriv, secretTmpl, ct)
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, rv(err), "an ML-DSA key")
	_, err = l.DecapsulateKey(h, mlkemM, kemPub, secretTmpl, ct)
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, rv(err), "a public key")
	_, err = l.DecapsulateKey(h, mlkemM, noDecap, secretTmpl, ct)
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(err), "CKA_DECAPSULATE false")

	// The token key pair, from the store, in another library.
	l.Close()
	l2 := open(t, f.Spec, store)
	defer l2.Close()
	h2, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l2.Login(h2, ck.CKU_USER, []byte("userpin")))
	priv := privateWithID(t, l2, h2, []byte{0x4b})
	k, err := l2.DecapsulateKey(h2, mlkemM, priv, secretTmpl, ct)
	require.NoError(t, err)
	v, err := l2.GetAttributeValue(h2, k, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	require.Equal(t, ss, v[0].Value, "the stored ML-KEM key decapsulates Go's ciphertext to Go's secret")
}
