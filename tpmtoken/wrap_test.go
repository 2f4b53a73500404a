package tpmtoken_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Keys unwrapped into the TPM are the keys that were wrapped: checked with
// Go's crypto for an AES key (RFC 3394, RFC 5649 and RSA-OAEP) and for a
// PKCS#8 EC private key; only extractable keys wrap.
func TestWrapAndUnwrap(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	yes, no := []byte{1}, []byte{0}
	secret := func(value []byte, extra ...tpmtoken.Attr) uint64 {
		o, err := l.CreateObject(h, append([]tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
			{ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_VALUE, value}}, extra...))
		require.NoError(t, err)
		return o
	}
	kekValue := make([]byte, 32)
	_, _ = rand.Read(kekValue)
	kek := secret(kekValue, tpmtoken.Attr{Type: ck.CKA_WRAP, Value: yes}, tpmtoken.Attr{Type: ck.CKA_UNWRAP, Value: yes})
	goKEK, _ := aes.NewCipher(kekValue)
	goBlock := func(in []byte, decrypt bool) ([]byte, error) {
		out := make([]byte, 16)
		if decrypt {
			goKEK.Decrypt(out, in)
		} else {
			goKEK.Encrypt(out, in)
		}
		return out, nil
	}
	keyValue := make([]byte, 16)
	_, _ = rand.Read(keyValue)
	readable := secret(keyValue, tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: no}, tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: yes},
		tpmtoken.Attr{Type: ck.CKA_ENCRYPT, Value: yes})
	inTPM := secret(keyValue)

	encryptWith := func(key uint64) []byte {
		require.NoError(t, l.EncryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_AES_ECB}, key))
		ct, _, err := encrypt(l, h, make([]byte, 32), 32, false)
		require.NoError(t, err)
		return ct
	}
	goBlk, _ := aes.NewCipher(keyValue)
	want := make([]byte, 32)
	cipher.NewCBCEncrypter(goBlk, make([]byte, 16)).CryptBlocks(want[:16], make([]byte, 16))
	copy(want[16:], want[:16])

	for _, m := range []ck.MechType{ck.CKM_AES_KEY_WRAP, ck.CKM_AES_KEY_WRAP_KWP} {
		mm := tpmtoken.Mechanism{Type: m}
		n, err := l.WrapKeyLen(h, mm, kek, readable)
		require.NoError(t, err)
		wrapped, err := l.WrapKey(h, mm, kek, readable)
		require.NoError(t, err)
		require.Len(t, wrapped, n)
		goWrapped, _ := mech.KeyWrap(m, goBlock, keyValue)
		require.Equal(t, goWrapped, wrapped, "the TPM's blocks agree with Go's AES")
		got, err := l.UnwrapKey(h, mm, kek, wrapped, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
			{ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_ENCRYPT, yes}})
		require.NoError(t, err)
		require.Equal(t, want, encryptWith(got), "the unwrapped key is the wrapped key")
		wrapped[9] ^= 1
		_, err = l.UnwrapKey(h, mm, kek, wrapped, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}})
		require.Equal(t, ck.CKR_WRAPPED_KEY_INVALID, rv(err))
	}
	_, err := l.WrapKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_WRAP}, kek, inTPM)
	require.Equal(t, ck.CKR_KEY_UNEXTRACTABLE, rv(err))

	// RSA-OAEP: wrapped with the public key, unwrapped by the TPM.
	rsaPub, rsaPriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}, {ck.CKA_WRAP, yes}}, []tpmtoken.Attr{{ck.CKA_UNWRAP, yes}})
	require.NoError(t, err)
	oaep := tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256, Source: ck.CKZ_DATA_SPECIFIED}}
	wrapped, err := l.WrapKey(h, oaep, rsaPub, readable)
	require.NoError(t, err)
	got, err := l.UnwrapKey(h, oaep, rsaPriv, wrapped, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
		{ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_ENCRYPT, yes}})
	require.NoError(t, err)
	require.Equal(t, want, encryptWith(got))

	// A PKCS#8 EC key from elsewhere, wrapped with KWP, signs in the TPM.
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ek)
	wrapped, _ = mech.KeyWrap(ck.CKM_AES_KEY_WRAP_KWP, goBlock, der)
	priv, err := l.UnwrapKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_WRAP_KWP}, kek, wrapped,
		[]tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_TOKEN, yes}, {ck.CKA_SIGN, yes}})
	require.NoError(t, err)
	sig := signWith(t, l, h, priv, ck.CKM_ECDSA_SHA256, []byte("unwrapped"))
	d := sha256.Sum256([]byte("unwrapped"))
	requireECDSA(t, &ek.PublicKey, d[:], sig)
	res, err := l.GetAttributeValue(h, priv, []ck.AttributeType{ck.CKA_LOCAL, ck.CKA_ALWAYS_SENSITIVE})
	require.NoError(t, err)
	require.Equal(t, []byte{0}, res[0].Value)
	require.Equal(t, []byte{0}, res[1].Value)
}
