package tpmtoken_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

var (
	oidP224 = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x21}
	oidP256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	oidP384 = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}
	oidP521 = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23}
)

func spki(t testing.TB, l *tpmtoken.Library, h, obj uint64) any {
	t.Helper()
	res, err := l.GetAttributeValue(h, obj, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(res[0].Value)
	require.NoError(t, err)
	return pk
}

func signWith(t testing.TB, l *tpmtoken.Library, h, key uint64, m ck.MechType, msg []byte) []byte {
	t.Helper()
	require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: m}, key))
	_, n, err := sign(l, h, msg, 0, true)
	require.NoError(t, err)
	sig, n2, err := sign(l, h, msg, n, false)
	require.NoError(t, err)
	require.Equal(t, n, n2)
	return sig
}

// Every curve swtpm offers signs in the TPM with every ECDSA hash
// (SHA-224 hashed here, which the TPM lacks) and Go's crypto verifies; the
// mechanism info reports the curves' true range.
func TestCurvesAndHashesVerifiedByGo(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	info, err := l.MechanismInfo(0, ck.CKM_EC_KEY_PAIR_GEN)
	require.NoError(t, err)
	require.Equal(t, [2]uint64{192, 521}, [2]uint64{info.Min, info.Max}) // P-192: TestP192 (Go has no P-192 verifier)
	for _, curve := range [][]byte{oidP224, oidP256, oidP384, oidP521} {
		pubH, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, curve}}, nil)
		require.NoError(t, err)
		pk := spki(t, l, h, pubH)
		for m, hf := range map[ck.MechType]crypto.Hash{ck.CKM_ECDSA_SHA1: crypto.SHA1, ck.CKM_ECDSA_SHA224: crypto.SHA224,
			ck.CKM_ECDSA_SHA256: crypto.SHA256, ck.CKM_ECDSA_SHA384: crypto.SHA384, ck.CKM_ECDSA_SHA512: crypto.SHA512} {
			msg := []byte("curve test")
			sig := signWith(t, l, h, priv, m, msg)
			d := hf.New()
			d.Write(msg)
			requireECDSA(t, pk, d.Sum(nil), sig)
			// The same digest through raw CKM_ECDSA gives a valid signature too.
			requireECDSA(t, pk, d.Sum(nil), signWith(t, l, h, priv, ck.CKM_ECDSA, d.Sum(nil)))
		}
	}
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, []byte{0x06, 0x03, 0x2b, 0x65, 0x70}}}, nil)
	require.Equal(t, ck.CKR_CURVE_NOT_SUPPORTED, rv(err))
}

// RSA sizes are what the TPM makes: swtpm does 1024 to 3072, nothing here
// 4096, and the mechanism info says so. SHA-224 (not a TPM hash) is encoded here and
// raw-signed in the TPM.
func TestRSASizesFromTheTPM(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	info, err := l.MechanismInfo(0, ck.CKM_RSA_PKCS_KEY_PAIR_GEN)
	require.NoError(t, err)
	require.Equal(t, [2]uint64{1024, 3072}, [2]uint64{info.Min, info.Max})
	_, small, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(1024)}}, nil)
	require.NoError(t, err)
	require.Len(t, signWith(t, l, h, small, ck.CKM_SHA256_RSA_PKCS, []byte("rsa-1024")), 128)
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(4096)}}, nil)
	require.Equal(t, ck.CKR_KEY_SIZE_RANGE, rv(err))
	pubH, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(3072)}}, nil)
	require.NoError(t, err)
	pk := spki(t, l, h, pubH).(*rsa.PublicKey)
	require.Equal(t, 3072, pk.N.BitLen())
	msg := []byte("rsa-3072")
	for m, hf := range map[ck.MechType]crypto.Hash{ck.CKM_SHA224_RSA_PKCS: crypto.SHA224, ck.CKM_SHA256_RSA_PKCS: crypto.SHA256,
		ck.CKM_SHA512_RSA_PKCS: crypto.SHA512} {
		sig := signWith(t, l, h, priv, m, msg)
		require.Len(t, sig, 384)
		d := hf.New()
		d.Write(msg)
		require.NoError(t, rsa.VerifyPKCS1v15(pk, hf, d.Sum(nil), sig), "mechanism 0x%x", m)
	}
}
