package tpmtoken_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// opensslExplicit is CKA_EC_PARAMS as OpenSSL writes the ecParameters of a
// named curve, base point in form conv ("uncompressed", "compressed").
func opensslExplicit(t *testing.T, name, conv string) []byte {
	out, err := exec.Command("openssl", "ecparam", "-name", name, "-param_enc", "explicit",
		"-conv_form", conv, "-outform", "DER").Output()
	require.NoError(t, err, "openssl ecparam")
	require.Equal(t, byte(0x30), out[0])
	return out
}

// ecPointOf decodes CKA_EC_POINT (the DER OCTET STRING) on curve c.
func ecPointOf(t *testing.T, c elliptic.Curve, der []byte) *ecdsa.PublicKey {
	var pt []byte
	rest, err := asn1.Unmarshal(der, &pt)
	require.NoError(t, err)
	require.Empty(t, rest)
	x, y := elliptic.Unmarshal(c, pt) //nolint:staticcheck // decoding only; ecdsa.Verify checks
	require.NotNil(t, x)
	return &ecdsa.PublicKey{Curve: c, X: x, Y: y}
}

// CKA_EC_PARAMS as ecParameters (what OpenSSL's "-param_enc explicit",
// python-pkcs11's tests and X.509 certificates with explicit parameters
// carry) are accepted when they are exactly a curve the TPM has, base point
// compressed or uncompressed: keys generated, imported and created with
// them work as the named curve, their signatures verify with Go's
// crypto/ecdsa, and CKA_EC_PARAMS reads back as the caller gave it. A
// public key's CKA_EC_POINT may also be the raw uncompressed point.
func TestECExplicitParams(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	digest := sha256.Sum256([]byte("explicit parameters"))
	read := func(obj uint64, a ck.AttributeType) []byte {
		r, err := l.GetAttributeValue(h, obj, []ck.AttributeType{a})
		require.NoError(t, err)
		return r[0].Value
	}
	sign := func(priv uint64) (r, s *big.Int) {
		require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, priv))
		sig, err := l.Sign(h, digest[:], tpmtoken.Dest{Cap: 256})
		require.NoError(t, err)
		n := len(sig) / 2
		return new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
	}
	for _, cv := range []struct {
		openssl string
		curve   elliptic.Curve
	}{{"prime256v1", elliptic.P256()}, {"secp384r1", elliptic.P384()}} {
		for _, conv := range []string{"uncompressed", "compressed"} {
			params := opensslExplicit(t, cv.openssl, conv)
			name := cv.openssl + " " + conv

			pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
				[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, params}}, []tpmtoken.Attr{{ck.CKA_SIGN, []byte{1}}})
			require.NoError(t, err, "C_GenerateKeyPair, %s", name)
			require.Equal(t, params, read(pub, ck.CKA_EC_PARAMS), name)
			require.Equal(t, params, read(priv, ck.CKA_EC_PARAMS), name)
			gpk := ecPointOf(t, cv.curve, read(pub, ck.CKA_EC_POINT))
			r, s := sign(priv)
			require.True(t, ecdsa.Verify(gpk, digest[:], r, s), "generated key, %s", name)

			ek, err := ecdsa.GenerateKey(cv.curve, rand.Reader)
			require.NoError(t, err)
			d := ek.D.FillBytes(make([]byte, (cv.curve.Params().BitSize+7)/8))
			ipriv, err := l.CreateObject(h, []tpmtoken.Attr{
				{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)},
				{ck.CKA_EC_PARAMS, params}, {ck.CKA_VALUE, d}, {ck.CKA_SIGN, []byte{1}},
			})
			require.NoError(t, err, "C_CreateObject private key, %s", name)
			require.Equal(t, params, read(ipriv, ck.CKA_EC_PARAMS), name)
			r, s = sign(ipriv)
			require.True(t, ecdsa.Verify(&ek.PublicKey, digest[:], r, s), "imported key, %s", name)

			raw := elliptic.Marshal(cv.curve, ek.X, ek.Y) //nolint:staticcheck // an encoding, not a key
			der, err := asn1.Marshal(raw)
			require.NoError(t, err)
			for _, point := range [][]byte{raw, der} {
				obj, err := l.CreateObject(h, []tpmtoken.Attr{
					{ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)},
					{ck.CKA_EC_PARAMS, params}, {ck.CKA_EC_POINT, point},
				})
				require.NoError(t, err, "C_CreateObject public key, %s, point of %d bytes", name, len(point))
				require.Equal(t, params, read(obj, ck.CKA_EC_PARAMS), name)
				// Kept as the spec's DER either way.
				require.Equal(t, der, read(obj, ck.CKA_EC_POINT), name)
				spki, err := x509.ParsePKIXPublicKey(read(obj, ck.CKA_PUBLIC_KEY_INFO))
				require.NoError(t, err)
				require.True(t, ek.PublicKey.Equal(spki), name)
			}
		}
	}
	// A raw point one byte off the uncompressed length is neither form.
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	raw := elliptic.Marshal(elliptic.P256(), ek.X, ek.Y) //nolint:staticcheck
	for _, bad := range [][]byte{raw[:64], append(bytes.Clone(raw), 0)} {
		_, err := l.CreateObject(h, []tpmtoken.Attr{
			{ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)},
			{ck.CKA_EC_PARAMS, p256}, {ck.CKA_EC_POINT, bad},
		})
		require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(err), "point of %d bytes", len(bad))
	}
}
