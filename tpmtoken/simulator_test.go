package tpmtoken_test

import (
	"crypto"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm/sim"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// The simulator, in this process (the tpm11 command's) and served by
// `tpm11 simulator` (what `make demo` and users' CI run the module on),
// does what swtpm does: salted sessions, keygen and signing, import, AES,
// HMAC, ECDH, each checked against Go's crypto; and it says it is not
// hardware.
func TestSimulatorBackend(t *testing.T) {
	t.Run("in-process", func(t *testing.T) { simulatorBackend(t, "simulator") })
	t.Run("served", func(t *testing.T) {
		s, err := sim.NewServer(t.TempDir())
		require.NoError(t, err)
		sock := filepath.Join(t.TempDir(), "sim.sock")
		ln, err := net.Listen("unix", sock)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- s.Serve(ln) }()
		defer func() {
			ln.Close()
			require.NoError(t, <-done)
			require.NoError(t, s.Close())
		}()
		simulatorBackend(t, "simulator:unix:"+sock)
	})
}

func simulatorBackend(t *testing.T, spec string) {
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: t.TempDir()})
	require.NoError(t, err)
	defer l.Close()
	_, err = l.Diagnose()
	require.NoError(t, err)
	require.True(t, l.Simulated())
	h := provision(t, l)
	info, err := l.MechanismInfo(0, ck.CKM_ECDSA)
	require.NoError(t, err)
	require.Zero(t, info.Flags&ck.CKF_HW, "a simulator must not claim hardware")

	pubH, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, oidP256}}, []tpmtoken.Attr{{ck.CKA_DERIVE, boolAttr(true)}})
	require.NoError(t, err)
	d := sha256.Sum256([]byte("sim"))
	requireECDSA(t, spki(t, l, h, pubH), d[:], signWith(t, l, h, priv, ck.CKM_ECDSA_SHA256, []byte("sim")))

	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	imp, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_RSA)},
		{ck.CKA_MODULUS, rk.N.Bytes()}, {ck.CKA_PUBLIC_EXPONENT, big.NewInt(int64(rk.E)).Bytes()},
		{ck.CKA_PRIVATE_EXPONENT, rk.D.Bytes()}, {ck.CKA_PRIME_1, rk.Primes[0].Bytes()}})
	require.NoError(t, err)
	require.NoError(t, rsa.VerifyPKCS1v15(&rk.PublicKey, crypto.SHA256, d[:], signWith(t, l, h, imp, ck.CKM_SHA256_RSA_PKCS, []byte("sim"))))

	value, iv, pt := randb(32), randb(16), randb(100)
	aesKey, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
		{ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_VALUE, value}})
	require.NoError(t, err)
	require.NoError(t, l.EncryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CBC_PAD, Param: mech.Bytes(iv)}, aesKey))
	ct, _, err := encrypt(l, h, pt, 112, false)
	require.NoError(t, err)
	require.Equal(t, goAES(t, value, ck.CKM_AES_CBC_PAD, iv, pt), ct)

	macKey, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
		{ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)}, {ck.CKA_VALUE, value}})
	require.NoError(t, err)
	mac := hmac.New(sha256.New, value)
	mac.Write(pt)
	require.Equal(t, mac.Sum(nil), signWith(t, l, h, macKey, ck.CKM_SHA256_HMAC, pt))

	res, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_EC_POINT})
	require.NoError(t, err)
	var point []byte
	_, err = asn1.Unmarshal(res[0].Value, &point)
	require.NoError(t, err)
	tpmPub, err := ecdh.P256().NewPublicKey(point)
	require.NoError(t, err)
	mine, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	z, err := mine.ECDH(tpmPub)
	require.NoError(t, err)
	k, err := l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: ecdhParams(ck.CKD_NULL, nil, mine.PublicKey().Bytes())}, priv,
		[]tpmtoken.Attr{{ck.CKA_SENSITIVE, boolAttr(false)}, {ck.CKA_EXTRACTABLE, boolAttr(true)}})
	require.NoError(t, err)
	res, err = l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	require.Equal(t, z, res[0].Value)
}
