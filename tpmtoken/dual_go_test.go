package tpmtoken_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// C_SignEncryptUpdate and C_DecryptVerifyUpdate: each part is encrypted
// (or decrypted) with AES-CBC in the TPM and fed to an ECDSA signature (or
// verification); Go's AES and ECDSA check the ciphertext and the signature,
// and the verification accepts the token's signature and refuses another.
func TestSignEncryptAndDecryptVerifyUpdates(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	pubH, privH, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
	require.NoError(t, err)
	spki, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pub, err := x509.ParsePKIXPublicKey(spki[0].Value)
	require.NoError(t, err)
	aesKey, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN}, []tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(16)},
		{ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, []byte{1}}})
	require.NoError(t, err)
	val, err := l.GetAttributeValue(h, aesKey, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	iv := make([]byte, 16)
	_, _ = rand.Read(iv)
	cbc := tpmtoken.Mechanism{Type: ck.CKM_AES_CBC, Param: mech.Bytes(iv)}
	ecdsaSHA256 := tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}
	pt := make([]byte, 64)
	_, _ = rand.Read(pt)

	require.NoError(t, l.EncryptInit(h, cbc, aesKey))
	_, err = l.SignEncryptUpdate(h, pt, tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "no signature active")
	require.NoError(t, l.SignInit(h, ecdsaSHA256, privH))
	ct1, err := l.SignEncryptUpdate(h, pt[:32], tpmtoken.Dest{Cap: 32})
	require.NoError(t, err)
	ct2, err := l.SignEncryptUpdate(h, pt[32:], tpmtoken.Dest{Cap: 32})
	require.NoError(t, err)
	sig, err := l.SignFinal(h, tpmtoken.Dest{Cap: 64})
	require.NoError(t, err)
	_, err = l.EncryptFinal(h, tpmtoken.Dest{Cap: 16})
	require.NoError(t, err)
	blk, err := aes.NewCipher(val[0].Value)
	require.NoError(t, err)
	goCT := make([]byte, 64)
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(goCT, pt)
	ct := append(ct1, ct2...)
	require.Equal(t, goCT, ct, "the TPM's AES-CBC is Go's")
	digest := sha256.Sum256(pt)
	requireECDSA(t, pub, digest[:], sig)

	for _, c := range []struct {
		sig  []byte
		want ck.RV
	}{{sig, ck.CKR_OK}, {append([]byte{sig[0] ^ 1}, sig[1:]...), ck.CKR_SIGNATURE_INVALID}} {
		require.NoError(t, l.DecryptInit(h, cbc, aesKey))
		_, err = l.DecryptVerifyUpdate(h, ct, tpmtoken.Dest{Cap: 64})
		require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "no verification active")
		require.NoError(t, l.VerifyInit(h, ecdsaSHA256, pubH))
		back, err := l.DecryptVerifyUpdate(h, ct, tpmtoken.Dest{Cap: 64})
		require.NoError(t, err)
		require.Equal(t, pt, back)
		_, err = l.DecryptFinal(h, tpmtoken.Dest{Cap: 16})
		require.NoError(t, err)
		require.Equal(t, c.want, rv(l.VerifyFinal(h, c.sig)))
	}
}
