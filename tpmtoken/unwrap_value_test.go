package tpmtoken_test

import (
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Issue 22, bug 1: a secret key unwrapped as readable (CKA_SENSITIVE
// false, CKA_EXTRACTABLE true) reads back exactly the bytes that went in,
// with every unwrapping mechanism, and wraps again to what others compute.
// The wrapped inputs and the expected wraps are not ours: RFC 3394 §4.6's
// vector, KWP made with `openssl enc -id-aes256-wrap-pad -iv A65959A6` under
// the same KEK (RFC 5649's 20-byte key data, and RFC 3394's 128-bit key),
// and RSA ciphertexts made by Go's crypto/rsa with the token's public key.
// Before the fix the value read back as zeros: the object kept the
// plaintext buffer UnwrapKey wipes on return.
func TestUnwrappedKeyReadsBack(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	yes, no := []byte{1}, []byte{0}
	kekValue := unhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	kek, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)},
		{ck.CKA_VALUE, kekValue}, {ck.CKA_WRAP, yes}, {ck.CKA_UNWRAP, yes}})
	require.NoError(t, err)
	rsaPub, rsaPriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}}, []tpmtoken.Attr{{ck.CKA_UNWRAP, yes}})
	require.NoError(t, err)
	res, err := l.GetAttributeValue(h, rsaPub, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(res[0].Value)
	require.NoError(t, err)
	pub := pk.(*rsa.PublicKey)

	key128 := unhex("00112233445566778899AABBCCDDEEFF")
	key256 := unhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	rfc5649 := unhex("c37b7e6492584340bed12207808941155068f738")
	kw256 := unhex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21") // RFC 3394 §4.6
	kwp128 := unhex("afc860015ffe2d75bedf43c444fe58f4ad9d89c4ec71e23b")
	kwp5649 := unhex("29b7fa191c2165684374eee9f74595e2a42bace75c425b3053efa26ffe1bb32f")
	pkcs1, err := rsa.EncryptPKCS1v15(rand.Reader, pub, key256)
	require.NoError(t, err)
	oaep, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, key256, nil)
	require.NoError(t, err)
	oaepMech := tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256, Source: ck.CKZ_DATA_SPECIFIED}}
	kw, kwp := tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_WRAP}, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_WRAP_KWP}

	for _, c := range []struct {
		name      string
		m         tpmtoken.Mechanism
		unwrapper uint64
		wrapped   []byte
		kt        ck.KeyType
		want      []byte
		rewrap    tpmtoken.Mechanism
		rewrapped []byte
	}{
		{"AES key wrap", kw, kek, kw256, ck.CKK_AES, key256, kw, kw256},
		{"KWP, AES key", kwp, kek, kwp128, ck.CKK_AES, key128, kwp, kwp128},
		{"KWP, padded generic secret", kwp, kek, kwp5649, ck.CKK_GENERIC_SECRET, rfc5649, kwp, kwp5649},
		{"RSA-PKCS", tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS}, rsaPriv, pkcs1, ck.CKK_AES, key256, kw, kw256},
		{"RSA-OAEP", oaepMech, rsaPriv, oaep, ck.CKK_AES, key256, kw, kw256},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, err := l.UnwrapKey(h, c.m, c.unwrapper, c.wrapped, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
				{ck.CKA_KEY_TYPE, ulong(c.kt)}, {ck.CKA_SENSITIVE, no}, {ck.CKA_EXTRACTABLE, yes}, {ck.CKA_ENCRYPT, yes}})
			require.NoError(t, err)
			res, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE, ck.CKA_VALUE_LEN})
			require.NoError(t, err)
			require.Equal(t, c.want, res[0].Value, "CKA_VALUE is the key that was wrapped")
			require.Equal(t, ulong(len(c.want)), res[1].Value)
			again, err := l.WrapKey(h, c.rewrap, kek, k)
			require.NoError(t, err)
			require.Equal(t, c.rewrapped, again, "wrapped again, it is what RFC 3394/OpenSSL give")
			if c.kt == ck.CKK_AES { // and the key in the TPM is that key too
				require.NoError(t, l.EncryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_AES_ECB}, k))
				ct, _, err := encrypt(l, h, make([]byte, 16), 16, false)
				require.NoError(t, err)
				blk, _ := aes.NewCipher(c.want)
				want := make([]byte, 16)
				blk.Encrypt(want, make([]byte, 16))
				require.Equal(t, want, ct)
			}
		})
	}
}

// On an async session the unwrapped key's TPM job pends after C_UnwrapKey
// returned and wiped its plaintext: the job has its own copy, so the key
// in the TPM and its CKA_VALUE are the key that was wrapped (RFC 3394 §4.6).
func TestAsyncUnwrapKeepsItsValue(t *testing.T) {
	l := open(t, swtpmtest.Slow(t, startSwtpm(t), slowTPM), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	yes, no := []byte{1}, []byte{0}
	kek, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)},
		{ck.CKA_VALUE, unhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")}, {ck.CKA_UNWRAP, yes}})
	require.NoError(t, err)
	key := unhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	a := openAsync(t, l)
	for _, readable := range []bool{true, false} {
		tmpl := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_ENCRYPT, yes}}
		if readable {
			tmpl = append(tmpl, tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: no}, tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: yes})
		}
		_, err = l.UnwrapKey(a, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_WRAP}, kek,
			unhex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"), tmpl)
		require.Equal(t, ck.CKR_PENDING, rv(err), "the TPM2_Create of the key pends")
		res, err := complete(t, l, a, "C_UnwrapKey")
		require.NoError(t, err)
		require.Len(t, res.Objects, 1)
		k := res.Objects[0]
		if readable {
			got, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
			require.NoError(t, err)
			require.Equal(t, key, got[0].Value)
		}
		require.NoError(t, l.EncryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_AES_ECB}, k))
		ct, _, err := encrypt(l, h, make([]byte, 16), 16, false)
		require.NoError(t, err)
		blk, _ := aes.NewCipher(key)
		want := make([]byte, 16)
		blk.Encrypt(want, make([]byte, 16))
		require.Equal(t, want, ct, "the key in the TPM is the key that was wrapped")
	}
}
