package tpmtoken_test

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Keys bound to PCR 16 decapsulate (RSA OAEP, ECDH) while PCR 16 holds its
// value: Go's secret and Go's ECDH Z come out as the new keys' values
// (the TPM's answer crossed the bus encrypted: tpm's
// TestPolicyKeySecretsEncrypted watches it); once PCR 16 moves, both
// refuse with CKR_KEY_FUNCTION_NOT_PERMITTED.
func TestPCRBoundKeyDecapsulates(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	secretTmpl := func() []tpmtoken.Attr {
		return []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
			{ck.CKA_VALUE_LEN, ulong(32)}, {ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, []byte{1}}}
	}
	value := func(k uint64) []byte {
		t.Helper()
		res, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
		require.NoError(t, err)
		return res[0].Value
	}
	gen := func(m ck.MechType, pub tpmtoken.Attr) (any, uint64) {
		t.Helper()
		pubH, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: m}, []tpmtoken.Attr{pub},
			[]tpmtoken.Attr{{ck.CKA_DECAPSULATE, []byte{1}}, {tpmtoken.CKA_TPM11_PCR_POLICY, []byte("16")}})
		require.NoError(t, err)
		spki, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
		require.NoError(t, err)
		pk, err := x509.ParsePKIXPublicKey(spki[0].Value)
		require.NoError(t, err)
		return pk, priv
	}
	rpk, rsaPriv := gen(ck.CKM_RSA_PKCS_KEY_PAIR_GEN, tpmtoken.Attr{ck.CKA_MODULUS_BITS, ulong(2048)})
	epk, ecPriv := gen(ck.CKM_EC_KEY_PAIR_GEN, tpmtoken.Attr{ck.CKA_EC_PARAMS, p256})
	oaep := tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256}}
	ecdh1 := tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: mech.ECDH1Params{KDF: ck.CKD_NULL}}
	tokenEC, err := epk.(*ecdsa.PublicKey).ECDH()
	require.NoError(t, err)

	decapsulate := func() (want, got [2][]byte, err [2]error) {
		want[0] = make([]byte, 32)
		_, _ = rand.Read(want[0])
		ct, e := rsa.EncryptOAEP(sha256.New(), rand.Reader, rpk.(*rsa.PublicKey), want[0], nil)
		require.NoError(t, e)
		k, e := l.DecapsulateKey(h, oaep, rsaPriv, secretTmpl(), ct)
		if err[0] = e; e == nil {
			got[0] = value(k)
		}
		eph, e := ecdh.P256().GenerateKey(rand.Reader)
		require.NoError(t, e)
		want[1], e = eph.ECDH(tokenEC)
		require.NoError(t, e)
		k, e = l.DecapsulateKey(h, ecdh1, ecPriv, secretTmpl(), eph.PublicKey().Bytes())
		if err[1] = e; e == nil {
			got[1] = value(k)
		}
		return
	}
	for i := range 2 {
		want, got, err := decapsulate()
		require.NoError(t, err[0], "RSA %d", i)
		require.NoError(t, err[1], "ECDH %d", i)
		require.Equal(t, want[0], got[0], "OAEP %d: the decapsulated key is Go's secret", i)
		require.Equal(t, want[1], got[1], "ECDH %d: the decapsulated key is Go's Z", i)
	}
	require.NoError(t, l.ExtendPCR(h, 16, []byte("another kernel")))
	_, _, err2 := decapsulate()
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(err2[0]), "RSA: %v", err2[0])
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(err2[1]), "ECDH: %v", err2[1])
}
