package tpmtoken_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// CKA_ENCAPSULATE / CKA_DECAPSULATE (3.2) of RSA and EC keys: by default
// the usage the spec makes them equivalent to (C_UnwrapKey's for RSA,
// C_DeriveKey's for EC; encryption or wrapping for an RSA public key);
// given, they decide on their own; false is CKR_KEY_FUNCTION_NOT_PERMITTED;
// C_SetAttributeValue turns them off, never on.
func TestKEMUsageAttributes(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	tmpl := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
		{ck.CKA_VALUE_LEN, ulong(32)}, {ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, []byte{1}}}
	oaep := tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256}}
	ecdh1 := tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: mech.ECDH1Params{KDF: ck.CKD_NULL}}
	attr := func(k uint64, typ ck.AttributeType) bool {
		t.Helper()
		res, err := l.GetAttributeValue(h, k, []ck.AttributeType{typ})
		require.NoError(t, err)
		require.Len(t, res[0].Value, 1)
		return res[0].Value[0] != 0
	}
	t1 := []byte{1}
	f0 := []byte{0}
	rsaPair := func(pub, priv []tpmtoken.Attr) (uint64, uint64) {
		t.Helper()
		p, q, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
			append([]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}}, pub...), priv)
		require.NoError(t, err)
		return p, q
	}
	rsaDecap := func(pub, priv uint64) error {
		t.Helper()
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, publicOf(t, l, h, pub).(*rsa.PublicKey), secret, nil)
		require.NoError(t, err)
		k, err := l.DecapsulateKey(h, oaep, priv, tmpl, ct)
		if err == nil {
			res, gerr := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
			require.NoError(t, gerr)
			require.Equal(t, secret, res[0].Value, "Go's secret")
		}
		return err
	}
	encap := func(m tpmtoken.Mechanism, pub uint64) error {
		_, _, err := l.EncapsulateKey(h, m, pub, tmpl, tpmtoken.Dest{Cap: 512})
		return err
	}

	// A signing RSA key pair: neither, so no raw RSA decryption with it.
	pub, priv := rsaPair(nil, nil)
	require.False(t, attr(pub, ck.CKA_ENCAPSULATE))
	require.False(t, attr(priv, ck.CKA_DECAPSULATE))
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(rsaDecap(pub, priv)))
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(encap(oaep, pub)))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(l.SetAttributeValue(h, priv, []tpmtoken.Attr{{ck.CKA_DECAPSULATE, t1}})),
		"a usage is never added")

	// Given: they decide alone, without CKA_ENCRYPT/CKA_UNWRAP.
	pub, priv = rsaPair([]tpmtoken.Attr{{ck.CKA_ENCAPSULATE, t1}}, []tpmtoken.Attr{{ck.CKA_DECAPSULATE, t1}})
	require.False(t, attr(priv, ck.CKA_UNWRAP))
	require.NoError(t, rsaDecap(pub, priv))
	require.NoError(t, encap(oaep, pub))

	// Default from CKA_UNWRAP / CKA_WRAP, turned off afterwards.
	pub, priv = rsaPair([]tpmtoken.Attr{{ck.CKA_WRAP, t1}}, []tpmtoken.Attr{{ck.CKA_UNWRAP, t1}})
	require.True(t, attr(pub, ck.CKA_ENCAPSULATE))
	require.True(t, attr(priv, ck.CKA_DECAPSULATE))
	require.NoError(t, rsaDecap(pub, priv))
	require.NoError(t, l.SetAttributeValue(h, priv, []tpmtoken.Attr{{ck.CKA_DECAPSULATE, f0}}))
	require.NoError(t, l.SetAttributeValue(h, pub, []tpmtoken.Attr{{ck.CKA_ENCAPSULATE, f0}}))
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(rsaDecap(pub, priv)), "CKA_DECAPSULATE false, CKA_UNWRAP true")
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(encap(oaep, pub)), "CKA_ENCAPSULATE false, CKA_WRAP true")
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(l.SetAttributeValue(h, priv, []tpmtoken.Attr{{ck.CKA_DECAPSULATE, t1}})))
	require.True(t, attr(priv, ck.CKA_UNWRAP), "the other usage stays")

	// EC: CKA_DECAPSULATE and CKA_DERIVE are separate usages.
	ecPair := func(priv []tpmtoken.Attr) (uint64, uint64) {
		t.Helper()
		p, q, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN}, []tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, priv)
		require.NoError(t, err)
		return p, q
	}
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	derive := func(priv uint64) error {
		_, err := l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: ecdhParams(ck.CKD_NULL, nil, eph.PublicKey().Bytes())}, priv, tmpl)
		return err
	}
	decap := func(priv uint64) error {
		_, err := l.DecapsulateKey(h, ecdh1, priv, tmpl, eph.PublicKey().Bytes())
		return err
	}
	pub, priv = ecPair([]tpmtoken.Attr{{ck.CKA_DERIVE, t1}})
	require.True(t, attr(priv, ck.CKA_DECAPSULATE), "follows CKA_DERIVE")
	require.True(t, attr(pub, ck.CKA_ENCAPSULATE) == attr(pub, ck.CKA_DERIVE))
	_, priv = ecPair([]tpmtoken.Attr{{ck.CKA_DERIVE, t1}, {ck.CKA_DECAPSULATE, f0}})
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(decap(priv)))
	require.NoError(t, derive(priv))
	_, priv = ecPair([]tpmtoken.Attr{{ck.CKA_DECAPSULATE, t1}})
	require.NoError(t, decap(priv))
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(derive(priv)))

	// Each half has its own: CKA_DECAPSULATE is no public key's.
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}, {ck.CKA_DECAPSULATE, t1}}, nil)
	require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, rv(err))
}
