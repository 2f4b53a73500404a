package tpmtoken_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Calls the C layer makes that no other Go test reached: C_Digest in one
// part (Go's SHA-256 agrees), an operation ended by the C layer's bad
// arguments, a session for a caller without async support, the legacy
// parallel functions, and C_WrapKey's length to a Go RSA key whose private
// half recovers the wrapped key.
func TestSmallCalls(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)

	msg := []byte("one part")
	require.NoError(t, l.DigestInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256}))
	d, err := l.Digest(h, msg, tpmtoken.Dest{Cap: 32})
	require.NoError(t, err)
	want := sha256.Sum256(msg)
	require.Equal(t, want[:], d)
	require.NoError(t, l.DigestInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256}))
	l.EndOperation(h, tpmtoken.OpDigest)
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(l.DigestUpdate(h, msg)), "ended by the C layer")

	_, err = l.OpenSyncSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_ASYNC_SESSION)
	require.Equal(t, ck.CKR_SESSION_ASYNC_NOT_SUPPORTED, rv(err), "a 2.40 or 3.0 caller has no C_AsyncComplete")
	s, err := l.OpenSyncSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_FUNCTION_NOT_PARALLEL, rv(l.NotParallel(s)))
	require.NoError(t, l.CloseSession(s))
	require.Equal(t, ck.CKR_SESSION_HANDLE_INVALID, rv(l.NotParallel(s)))

	aesKey, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN}, []tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(32)},
		{ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, []byte{1}}})
	require.NoError(t, err)
	val, err := l.GetAttributeValue(h, aesKey, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	wrapper, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_RSA)},
		{ck.CKA_MODULUS, rk.N.Bytes()}, {ck.CKA_PUBLIC_EXPONENT, big.NewInt(int64(rk.E)).Bytes()}, {ck.CKA_WRAP, []byte{1}}})
	require.NoError(t, err)
	oaep := tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256}}
	n, err := l.WrapKeyLen(h, oaep, wrapper, aesKey)
	require.NoError(t, err)
	require.Equal(t, 256, n)
	wrapped, err := l.WrapKey(h, oaep, wrapper, aesKey)
	require.NoError(t, err)
	require.Len(t, wrapped, n)
	got, err := rsa.DecryptOAEP(sha256.New(), nil, rk, wrapped, nil)
	require.NoError(t, err)
	require.Equal(t, val[0].Value, got, "Go's private key unwraps the key's value")
	_, err = l.WrapKeyLen(h, oaep, aesKey, aesKey)
	require.Error(t, err, "an AES key does not wrap with RSA OAEP")
}
