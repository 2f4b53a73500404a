package tpmtoken_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

func boolAttr(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

// Keys made by Go's crypto are imported into the TPM (TPM2_Import), sign
// there, and Go verifies with the original public key; the attributes say
// the key was not made on the token.
func TestImportPrivateKeys(t *testing.T) {
	dir := t.TempDir()
	l := open(t, startSwtpm(t), dir)
	defer l.Close()
	h := provision(t, l)
	msg := []byte("imported")
	digest := sha256.Sum256(msg)

	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	full := []tpmtoken.Attr{
		{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_RSA)}, {ck.CKA_TOKEN, boolAttr(true)},
		{ck.CKA_SIGN, boolAttr(true)}, {ck.CKA_DECRYPT, boolAttr(true)}, {ck.CKA_ID, []byte{7}},
		{ck.CKA_MODULUS, rk.N.Bytes()}, {ck.CKA_PUBLIC_EXPONENT, big.NewInt(int64(rk.E)).Bytes()},
		{ck.CKA_PRIVATE_EXPONENT, rk.D.Bytes()}, {ck.CKA_PRIME_1, rk.Primes[0].Bytes()}, {ck.CKA_PRIME_2, rk.Primes[1].Bytes()},
		{ck.CKA_EXPONENT_1, rk.Precomputed.Dp.Bytes()}, {ck.CKA_EXPONENT_2, rk.Precomputed.Dq.Bytes()},
		{ck.CKA_COEFFICIENT, rk.Precomputed.Qinv.Bytes()},
	}
	minimal := append([]tpmtoken.Attr{}, full[:9]...) // no primes: the module factors n
	for _, tmpl := range [][]tpmtoken.Attr{full, minimal} {
		obj, err := l.CreateObject(h, tmpl)
		require.NoError(t, err)
		sig := signWith(t, l, h, obj, ck.CKM_SHA256_RSA_PKCS, msg)
		require.NoError(t, rsa.VerifyPKCS1v15(&rk.PublicKey, crypto.SHA256, digest[:], sig))
		res, err := l.GetAttributeValue(h, obj, []ck.AttributeType{ck.CKA_LOCAL, ck.CKA_ALWAYS_SENSITIVE,
			ck.CKA_NEVER_EXTRACTABLE, ck.CKA_SENSITIVE, ck.CKA_MODULUS, ck.CKA_PRIVATE_EXPONENT, ck.CKA_PRIME_1})
		require.NoError(t, err)
		require.Equal(t, []byte{0}, res[0].Value)
		require.Equal(t, []byte{0}, res[1].Value)
		require.Equal(t, []byte{0}, res[2].Value)
		require.Equal(t, []byte{1}, res[3].Value)
		require.Equal(t, rk.N.Bytes(), res[4].Value)
		require.Equal(t, ck.CKR_ATTRIBUTE_SENSITIVE, res[5].RV)
		require.Equal(t, ck.CKR_ATTRIBUTE_SENSITIVE, res[6].RV)
	}
	// A private exponent that does not belong to the modulus is refused.
	bad := append([]tpmtoken.Attr{}, minimal...)
	bad[8] = tpmtoken.Attr{Type: ck.CKA_PRIVATE_EXPONENT, Value: big.NewInt(12345).Bytes()}
	_, err = l.CreateObject(h, bad)
	require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(err))

	for _, c := range []struct {
		curve elliptic.Curve
		oid   []byte
	}{{elliptic.P224(), oidP224}, {elliptic.P256(), oidP256}, {elliptic.P384(), oidP384}, {elliptic.P521(), oidP521}} {
		ek, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		require.NoError(t, err)
		obj, err := l.CreateObject(h, []tpmtoken.Attr{
			{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)},
			{ck.CKA_EC_PARAMS, c.oid}, {ck.CKA_VALUE, ek.D.Bytes()}, {ck.CKA_SIGN, boolAttr(true)},
		})
		require.NoError(t, err)
		requireECDSA(t, &ek.PublicKey, digest[:], signWith(t, l, h, obj, ck.CKM_ECDSA_SHA256, msg))
		// EC keys never decrypt, even when asked to.
		obj, err = l.CreateObject(h, []tpmtoken.Attr{
			{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)},
			{ck.CKA_EC_PARAMS, c.oid}, {ck.CKA_VALUE, ek.D.Bytes()}, {ck.CKA_DECRYPT, boolAttr(true)},
		})
		require.NoError(t, err)
		got, err := l.GetAttributeValue(h, obj, []ck.AttributeType{ck.CKA_DECRYPT})
		require.NoError(t, err)
		require.Equal(t, []byte{0}, got[0].Value)
	}
	// Only TPM-wrapped blobs reach the disk: no store file holds any part of
	// the private key, in any of its encodings.
	requireNotInStore(t, dir, rk.Primes[0].Bytes()[:16], rk.Primes[1].Bytes()[:16], rk.D.Bytes()[:16])

	// Extractable cannot be honoured for a key inside the TPM.
	_, err = l.CreateObject(h, append(append([]tpmtoken.Attr{}, full...), tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: boolAttr(true)}))
	require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(err))
}

// requireNotInStore fails if any secret appears in a store file, raw or in
// any base64 string of its JSON.
func requireNotInStore(t *testing.T, dir string, secrets ...[]byte) {
	t.Helper()
	var strs func(v any, out *[][]byte)
	strs = func(v any, out *[][]byte) {
		switch x := v.(type) {
		case string:
			if b, err := base64.StdEncoding.DecodeString(x); err == nil {
				*out = append(*out, b)
			}
		case map[string]any:
			for _, e := range x {
				strs(e, out)
			}
		case []any:
			for _, e := range x {
				strs(e, out)
			}
		}
	}
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		blobs := [][]byte{raw}
		var v any
		if json.Unmarshal(raw, &v) == nil {
			strs(v, &blobs)
		}
		for _, b := range blobs {
			for _, s := range secrets {
				require.False(t, bytes.Contains(b, s), "secret found in %s", path)
			}
		}
		return nil
	}))
	require.Greater(t, n, 2)
}
