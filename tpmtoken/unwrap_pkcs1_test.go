package tpmtoken_test

import (
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// RSA PKCS#1 v1.5 unwrapping gives the key that was wrapped (its plaintext is a
// slice of the decrypted block, which is wiped after).
func TestUnwrapPKCS1(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	yes := []byte{1}
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}, {ck.CKA_WRAP, yes}}, []tpmtoken.Attr{{ck.CKA_UNWRAP, yes}})
	require.NoError(t, err)
	pk := spki(t, l, h, pub).(*rsa.PublicKey)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	w, _ := rsa.EncryptPKCS1v15(rand.Reader, pk, key)
	got, err := l.UnwrapKey(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS}, priv, w, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
		{ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}})
	require.NoError(t, err)
	require.NoError(t, l.EncryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_AES_ECB}, got))
	ct, _, err := encrypt(l, h, make([]byte, 16), 16, false)
	require.NoError(t, err)
	b, _ := aes.NewCipher(key)
	want := make([]byte, 16)
	b.Encrypt(want, make([]byte, 16))
	require.Equal(t, want, ct)
}
