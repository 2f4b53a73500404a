package tpmtoken_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

// startSwtpm runs a private swtpm on a unix socket (the library dials it
// like a user's config would) and returns its spec.
func startSwtpm(t testing.TB) string { return swtpmtest.Socket(t) }

func open(t testing.TB, spec, store string) *tpmtoken.Library {
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: store})
	require.NoError(t, err)
	return l
}

func rv(err error) ck.RV { return ck.ToRV(err) }

func ulong[T ~uint64 | ~int](v T) []byte {
	b := make([]byte, 8)
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

var p256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

// provision makes a token with SO PIN "sopin1" and user PIN "userpin".
func provision(t testing.TB, l *tpmtoken.Library) uint64 {
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("test token")))
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_SO, []byte("sopin1")))
	require.NoError(t, l.InitPIN(h, []byte("userpin")))
	require.NoError(t, l.Logout(h))
	require.Equal(t, ck.CKR_USER_NOT_LOGGED_IN, rv(l.Logout(h)))
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.Login(h, ck.CKU_USER, []byte("wrong"))))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	require.Equal(t, ck.CKR_USER_ALREADY_LOGGED_IN, rv(l.Login(h, ck.CKU_USER, []byte("userpin"))))
	require.Equal(t, ck.CKR_USER_ANOTHER_ALREADY_LOGGED_IN, rv(l.Login(h, ck.CKU_SO, []byte("sopin1"))))
	return h
}

func TestTokenKeygenSignAcrossLibraries(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l := open(t, spec, store)
	h := provision(t, l)
	pubH, privH, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, []byte{0x42}}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte{0x42}}, {ck.CKA_DECRYPT, []byte{0}}})
	require.NoError(t, err)
	require.NotZero(t, pubH)

	// EC keys never decrypt or wrap; a template asking for it (OpenSSL's
	// pkcs11-provider asks for CKA_WRAP/CKA_UNWRAP) is accepted, and the
	// key says what it can do.
	ecPub, ecPriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}, {ck.CKA_WRAP, []byte{1}}}, []tpmtoken.Attr{{ck.CKA_DECRYPT, []byte{1}}, {ck.CKA_UNWRAP, []byte{1}}})
	require.NoError(t, err)
	got, err := l.GetAttributeValue(h, ecPriv, []ck.AttributeType{ck.CKA_DECRYPT, ck.CKA_UNWRAP, ck.CKA_SIGN})
	require.NoError(t, err)
	require.Equal(t, [][]byte{{0}, {0}, {1}}, [][]byte{got[0].Value, got[1].Value, got[2].Value})
	got, err = l.GetAttributeValue(h, ecPub, []ck.AttributeType{ck.CKA_WRAP})
	require.NoError(t, err)
	require.Equal(t, []byte{0}, got[0].Value)
	// A template that contradicts itself is refused.
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}, {ck.CKA_LABEL, []byte("a")}, {ck.CKA_LABEL, []byte("b")}}, nil)
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}, {ck.CKA_LABEL, []byte("a")}, {ck.CKA_LABEL, []byte("a")}}, nil)
	require.NoError(t, err, "a repeated attribute with the same value is no contradiction")

	res, err := l.GetAttributeValue(h, privH, []ck.AttributeType{ck.CKA_VALUE, ck.CKA_SIGN, 0x7777, ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	require.Equal(t, ck.CKR_ATTRIBUTE_SENSITIVE, res[0].RV)
	require.Equal(t, []byte{1}, res[1].Value)
	require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, res[2].RV)
	pk, err := x509.ParsePKIXPublicKey(res[3].Value)
	require.NoError(t, err)

	msg := []byte("signed in the TPM")
	require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, privH))
	_, n, err := sign(l, h, msg, 0, true)
	require.NoError(t, err)
	require.Equal(t, 64, n)
	_, _, err = sign(l, h, msg, 10, false)
	require.Equal(t, ck.CKR_BUFFER_TOO_SMALL, rv(err))
	sig, _, err := sign(l, h, msg, 64, false)
	require.NoError(t, err)
	d := sha256.Sum256(msg)
	requireECDSA(t, pk, d[:], sig)
	require.NoError(t, l.VerifyInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, pubH))
	require.NoError(t, l.Verify(h, msg, sig))
	require.NoError(t, l.SeedRandom(h, make([]byte, 300)), "TPM2_StirRandom in chunks")
	r1, err := random(l, h, 100)
	require.NoError(t, err)
	r2, _ := random(l, h, 100)
	require.Len(t, r1, 100)
	require.NotEqual(t, r1, r2)
	l.Close()

	// A new library (as after C_Finalize/C_Initialize, or another process)
	// finds the key and signs with it.
	l2 := open(t, spec, store)
	defer l2.Close()
	h2, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l2.FindObjectsInit(h2, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}}))
	found, err := l2.FindObjects(h2, 10)
	require.NoError(t, err)
	require.Empty(t, found, "private keys are invisible before login")
	require.NoError(t, l2.FindObjectsFinal(h2))
	require.NoError(t, l2.Login(h2, ck.CKU_USER, []byte("userpin")))
	require.NoError(t, l2.FindObjectsInit(h2, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_ID, []byte{0x42}}}))
	found, _ = l2.FindObjects(h2, 10)
	require.Len(t, found, 1)
	require.NoError(t, l2.FindObjectsFinal(h2))
	require.NoError(t, l2.SignInit(h2, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, found[0]))
	sig, _, err = sign(l2, h2, d[:], 64, false)
	require.NoError(t, err)
	requireECDSA(t, pk, d[:], sig)
}

// Many goroutines, each with its own session, sign at once with no lock of
// their own: every signature must verify.
func TestConcurrentSessionsSign(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l := open(t, spec, store)
	defer l.Close()
	h := provision(t, l)
	_, privH, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 16*20)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
			if err != nil {
				errs <- err
				return
			}
			for i := 0; i < 20; i++ {
				if err := l.SignInit(s, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, privH); err != nil {
					errs <- err
					continue
				}
				if _, _, err := sign(l, s, []byte{byte(i)}, 64, false); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// requireECDSA checks a raw r||s signature over digest with Go's crypto.
func requireECDSA(t testing.TB, pk any, digest, sig []byte) {
	t.Helper()
	n := len(sig) / 2
	require.True(t, ecdsa.Verify(pk.(*ecdsa.PublicKey), digest, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])))
}
