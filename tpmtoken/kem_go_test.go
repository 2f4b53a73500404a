package tpmtoken_test

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Key encapsulation (C_EncapsulateKey, C_DecapsulateKey) with Go's crypto
// as the other party, both ways; testdata/c/kem_test.c does the same with
// openssl through the ABI. Decapsulation: Go encrypts a secret to the
// token's RSA key (OAEP-SHA256, PKCS#1 v1.5) or makes an ephemeral P-256 key
// and its ECDH secret with the token's key; the key the TPM's decryption or
// TPM2_ECDH_ZGen makes reads back as Go's secret. Encapsulation: to public
// keys Go made and the token imported; Go's private keys recover the
// secret the new key holds.
func TestKEMWithGoCrypto(t *testing.T) {
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
	oaep := tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256}}

	// RSA decapsulation in the TPM.
	rsaPub, rsaPriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}}, []tpmtoken.Attr{{ck.CKA_UNWRAP, []byte{1}}})
	require.NoError(t, err)
	spki, err := l.GetAttributeValue(h, rsaPub, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(spki[0].Value)
	require.NoError(t, err)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pk.(*rsa.PublicKey), secret, nil)
	require.NoError(t, err)
	k, err := l.DecapsulateKey(h, oaep, rsaPriv, secretTmpl(), ct)
	require.NoError(t, err)
	require.Equal(t, secret, value(k), "OAEP: the decapsulated key is Go's secret")
	ct1, err := rsa.EncryptPKCS1v15(rand.Reader, pk.(*rsa.PublicKey), secret)
	require.NoError(t, err)
	k, err = l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS}, rsaPriv, secretTmpl(), ct1)
	require.NoError(t, err)
	require.Equal(t, secret, value(k), "PKCS#1 v1.5: the decapsulated key is Go's secret")
	ct[len(ct)/2] ^= 1
	k, err = l.DecapsulateKey(h, oaep, rsaPriv, secretTmpl(), ct)
	require.Error(t, err, "a tampered ciphertext is the caller's error, never a key")
	require.Zero(t, k)
	_, err = l.DecapsulateKey(h, oaep, rsaPriv, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}}, ct1)
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err), "an encapsulated key is a secret key")

	// RSA encapsulation to Go's key.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	goRSA, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_RSA)},
		{ck.CKA_MODULUS, rk.N.Bytes()}, {ck.CKA_PUBLIC_EXPONENT, big.NewInt(int64(rk.E)).Bytes()}, {ck.CKA_ENCRYPT, []byte{1}}})
	require.NoError(t, err)
	n, err := l.EncapsulateKeyLen(h, oaep, goRSA)
	require.NoError(t, err)
	require.Equal(t, 256, n, "the length query")
	_, _, err = l.EncapsulateKey(h, oaep, goRSA, secretTmpl(), tpmtoken.Dest{Cap: 255})
	require.Equal(t, ck.CKR_BUFFER_TOO_SMALL, rv(err))
	ct, k, err = l.EncapsulateKey(h, oaep, goRSA, secretTmpl(), tpmtoken.Dest{Cap: 256})
	require.NoError(t, err)
	got, err := rsa.DecryptOAEP(sha256.New(), nil, rk, ct, nil)
	require.NoError(t, err)
	require.Equal(t, got, value(k), "Go's private key recovers the new key's secret")

	// ECDH decapsulation in the TPM.
	ecPub, ecPriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{ck.CKA_DERIVE, []byte{1}}})
	require.NoError(t, err)
	spki, err = l.GetAttributeValue(h, ecPub, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err = x509.ParsePKIXPublicKey(spki[0].Value)
	require.NoError(t, err)
	tokenKey, err := pk.(*ecdsa.PublicKey).ECDH()
	require.NoError(t, err)
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	z, err := eph.ECDH(tokenKey)
	require.NoError(t, err)
	ecdh1 := tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: mech.ECDH1Params{KDF: ck.CKD_NULL}}
	k, err = l.DecapsulateKey(h, ecdh1, ecPriv, secretTmpl(), eph.PublicKey().Bytes())
	require.NoError(t, err)
	require.Equal(t, z, value(k), "ECDH: the decapsulated key is Go's shared secret")

	// ECDH encapsulation to Go's key: the ciphertext is the ephemeral point.
	gk, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	point := append([]byte{0x04, 65}, gk.PublicKey().Bytes()...) // CKA_EC_POINT: a DER OCTET STRING
	goEC, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)},
		{ck.CKA_EC_PARAMS, p256}, {ck.CKA_EC_POINT, point}, {ck.CKA_DERIVE, []byte{1}}})
	require.NoError(t, err)
	ct, k, err = l.EncapsulateKey(h, ecdh1, goEC, secretTmpl(), tpmtoken.Dest{Cap: 65})
	require.NoError(t, err)
	peer, err := ecdh.P256().NewPublicKey(ct)
	require.NoError(t, err)
	z, err = gk.ECDH(peer)
	require.NoError(t, err)
	require.Equal(t, z, value(k), "Go's private key recovers the new key's secret")
	_, _, err = l.EncapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: mech.ECDH1Params{KDF: ck.CKD_NULL, PublicData: ct}},
		goEC, secretTmpl(), tpmtoken.Dest{Cap: 65})
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(err), "public data is the ciphertext's, not the caller's")
	_, err = l.EncapsulateKeyLen(h, tpmtoken.Mechanism{Type: ck.CKM_AES_ECB}, goEC)
	require.Error(t, err, "not a KEM")
}
