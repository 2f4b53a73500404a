package tpmtoken_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// explicitParams is CKA_EC_PARAMS as the ecParameters choice (X9.62
// SpecifiedECDomain) for curve c: what python-pkcs11's EC import tests and
// OpenSSL's "-param_enc explicit" send.
func explicitParams(t *testing.T, c elliptic.Curve) []byte {
	p := c.Params()
	n := (p.BitSize + 7) / 8
	a := new(big.Int).Sub(p.P, big.NewInt(3)) // every NIST curve has a = -3
	type fieldID struct {
		Type  asn1.ObjectIdentifier
		Prime *big.Int
	}
	type curve struct{ A, B []byte }
	der, err := asn1.Marshal(struct {
		Version  int
		Field    fieldID
		Curve    curve
		Base     []byte
		Order    *big.Int
		Cofactor int
	}{1, fieldID{asn1.ObjectIdentifier{1, 2, 840, 10045, 1, 1}, p.P},
		curve{a.FillBytes(make([]byte, n)), p.B.FillBytes(make([]byte, n))},
		elliptic.Marshal(c, p.Gx, p.Gy), p.N, 1}) //nolint:staticcheck // an encoding, not a key
	require.NoError(t, err)
	return der
}

// CKA_EC_PARAMS that name no curve the token can use get the CK_RV
// elliptic_curves.md prescribes: an object identifier of an unknown curve is
// CKR_CURVE_NOT_SUPPORTED; any other representation (ecParameters,
// curveName: the token advertises CKF_EC_OID alone) or bytes that are no
// DER value are CKR_DOMAIN_PARAMS_INVALID. The same for C_GenerateKeyPair
// and for C_CreateObject of a public and of a private key.
func TestECParamsRepresentations(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	point, err := asn1.Marshal(elliptic.Marshal(elliptic.P256(), ek.X, ek.Y)) //nolint:staticcheck
	require.NoError(t, err)
	curveName, err := asn1.MarshalWithParams("prime256v1", "printable")
	require.NoError(t, err)
	info, err := l.MechanismInfo(0, ck.CKM_EC_KEY_PAIR_GEN)
	require.NoError(t, err)
	require.Zero(t, info.Flags&(ck.CKF_EC_ECPARAMETERS|ck.CKF_EC_CURVENAME), "the cases below assume only CKF_EC_OID")
	for _, c := range []struct {
		name   string
		params []byte
		want   ck.RV
	}{
		{"ecParameters of P-256", explicitParams(t, elliptic.P256()), ck.CKR_DOMAIN_PARAMS_INVALID},
		{"curveName", curveName, ck.CKR_DOMAIN_PARAMS_INVALID},
		{"implicitlyCA", []byte{0x05, 0x00}, ck.CKR_DOMAIN_PARAMS_INVALID},
		{"not DER", []byte{0xff, 0x01, 0x02}, ck.CKR_DOMAIN_PARAMS_INVALID},
		{"P-256 OID with trailing bytes", append(append([]byte{}, p256...), 0), ck.CKR_DOMAIN_PARAMS_INVALID},
		{"secp256k1 OID", []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}, ck.CKR_CURVE_NOT_SUPPORTED},
		{"Ed25519 OID", []byte{0x06, 0x03, 0x2b, 0x65, 0x70}, ck.CKR_CURVE_NOT_SUPPORTED},
	} {
		_, _, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, c.params}}, nil)
		require.Equal(t, c.want, rv(err), "C_GenerateKeyPair, %s", c.name)
		_, err = l.CreateObject(h, []tpmtoken.Attr{
			{ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)},
			{ck.CKA_EC_PARAMS, c.params}, {ck.CKA_EC_POINT, point},
		})
		require.Equal(t, c.want, rv(err), "C_CreateObject public key, %s", c.name)
		_, err = l.CreateObject(h, []tpmtoken.Attr{
			{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)},
			{ck.CKA_EC_PARAMS, c.params}, {ck.CKA_VALUE, ek.D.Bytes()},
		})
		require.Equal(t, c.want, rv(err), "C_CreateObject private key, %s", c.name)
	}
}
