package tpmtoken_test

import (
	"crypto"
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

// RSA decryption in the TPM round-trips with Go's crypto: PKCS#1 v1.5 and
// OAEP-SHA256 with a label (which a TPM's own OAEP cannot serve).
func TestRSADecryptAgainstGoCrypto(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}}, []tpmtoken.Attr{{ck.CKA_DECRYPT, []byte{1}}})
	require.NoError(t, err)
	res, err := l.GetAttributeValue(h, priv, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(res[0].Value)
	require.NoError(t, err)
	pub := pk.(*rsa.PublicKey)
	msg := []byte("decrypted inside the TPM")

	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
	require.NoError(t, err)
	require.NoError(t, l.DecryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS}, priv))
	_, n, err := decrypt(l, h, ct, 0, true)
	require.NoError(t, err)
	require.Equal(t, 256, n)
	got, _, err := decrypt(l, h, ct, 256, false)
	require.NoError(t, err)
	require.Equal(t, msg, got)

	label := []byte("a label")
	ct, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, label)
	require.NoError(t, err)
	param := mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256, Source: 1, Label: label}
	require.NoError(t, l.DecryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: param}, priv))
	got, _, err = decrypt(l, h, ct, 256, false)
	require.NoError(t, err)
	require.Equal(t, msg, got)

	// Every OAEP hash, with and without a label.
	for ckh, hf := range map[ck.MechType]crypto.Hash{ck.CKM_SHA_1: crypto.SHA1, ck.CKM_SHA224: crypto.SHA224,
		ck.CKM_SHA384: crypto.SHA384, ck.CKM_SHA512: crypto.SHA512} {
		mgf := map[crypto.Hash]ck.MGF{crypto.SHA1: ck.CKG_MGF1_SHA1, crypto.SHA224: ck.CKG_MGF1_SHA224,
			crypto.SHA384: ck.CKG_MGF1_SHA384, crypto.SHA512: ck.CKG_MGF1_SHA512}[hf]
		for _, lb := range [][]byte{nil, []byte("label")} {
			ct, err := rsa.EncryptOAEP(hf.New(), rand.Reader, pub, msg, lb)
			require.NoError(t, err)
			p := mech.OAEPParams{HashAlg: ckh, MGF: mgf, Source: 1, Label: lb}
			require.NoError(t, l.DecryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: p}, priv))
			got, _, err := decrypt(l, h, ct, 256, false)
			require.NoError(t, err, "OAEP %v label %q", hf, lb)
			require.Equal(t, msg, got)
		}
	}

	// The wrong label is refused, not silently decrypted.
	require.NoError(t, l.DecryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256, Source: 1, Label: []byte("other")}}, priv))
	_, _, err = decrypt(l, h, ct, 256, false)
	require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, ck.ToRV(err))
}
