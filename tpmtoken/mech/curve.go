package mech

import (
	"bytes"
	"crypto/ecdh"
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
)

// Curve is everything tpm11 knows of one named curve.
type Curve struct {
	Name   string // as the CLI spells it: "p256"
	Params []byte // CKA_EC_PARAMS: the DER of its named-curve OID
	TPM    tpm2.TPMECCCurve
	Go     elliptic.Curve
	ECDH   ecdh.Curve // nil where crypto/ecdh lacks the curve (P-224)
	Bytes  int        // field size in bytes: ECDSA signatures are 2 × Bytes
	Bits   int        // key size as CK_MECHANISM_INFO reports it (521 for P-521)
}

// Curves is the one table of curves; a TPM offers a subset (probed).
var Curves = []*Curve{
	{Name: "p224", Params: []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x21},
		TPM: tpm2.TPMECCNistP224, Go: elliptic.P224(), Bytes: 28, Bits: 224}, // no crypto/ecdh curve
	{Name: "p256", Params: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07},
		TPM: tpm2.TPMECCNistP256, Go: elliptic.P256(), ECDH: ecdh.P256(), Bytes: 32, Bits: 256},
	{Name: "p384", Params: []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22},
		TPM: tpm2.TPMECCNistP384, Go: elliptic.P384(), ECDH: ecdh.P384(), Bytes: 48, Bits: 384},
	{Name: "p521", Params: []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23},
		TPM: tpm2.TPMECCNistP521, Go: elliptic.P521(), ECDH: ecdh.P521(), Bytes: 66, Bits: 521},
}

func findCurve(match func(*Curve) bool) *Curve {
	for _, c := range Curves {
		if match(c) {
			return c
		}
	}
	return nil
}

// Point is the uncompressed encoding 04 || X || Y of a point on c.
func (c *Curve) Point(x, y *big.Int) []byte {
	out := make([]byte, 1+2*c.Bytes)
	out[0] = 4
	x.FillBytes(out[1 : 1+c.Bytes])
	y.FillBytes(out[1+c.Bytes:])
	return out
}

// onCurve checks an uncompressed point (04 || X || Y) is on c.
func (c *Curve) onCurve(p []byte) bool {
	if len(p) != 1+2*c.Bytes || p[0] != 4 {
		return false
	}
	if c.ECDH != nil {
		_, err := c.ECDH.NewPublicKey(p)
		return err == nil
	}
	x, y := new(big.Int).SetBytes(p[1:1+c.Bytes]), new(big.Int).SetBytes(p[1+c.Bytes:])
	return c.Go.IsOnCurve(x, y) //nolint:staticcheck // the generic check for curves crypto/ecdh lacks
}

// publicOf computes the public point of scalar d on c.
func (c *Curve) publicOf(d []byte) ([]byte, error) {
	if c.ECDH != nil {
		k, err := c.ECDH.NewPrivateKey(d)
		if err != nil {
			return nil, err
		}
		return k.PublicKey().Bytes(), nil
	}
	n := new(big.Int).SetBytes(d)
	if n.Sign() == 0 || n.Cmp(c.Go.Params().N) >= 0 {
		return nil, errors.New("scalar out of range")
	}
	x, y := c.Go.ScalarBaseMult(d) //nolint:staticcheck // for curves crypto/ecdh lacks
	return c.Point(x, y), nil
}

// CurveOf returns the curve CKA_EC_PARAMS names, nil if unknown.
func CurveOf(params []byte) *Curve {
	return findCurve(func(c *Curve) bool { return bytes.Equal(c.Params, params) })
}

// CurveFor resolves CKA_EC_PARAMS from a template, failing with the CK_RV
// elliptic_curves.md prescribes: an object identifier of a curve this
// module does not know is CKR_CURVE_NOT_SUPPORTED; any other representation
// (ecParameters, curveName, implicitlyCA: the mechanisms advertise
// CKF_EC_OID alone) or bytes that are not exactly one DER value are
// CKR_DOMAIN_PARAMS_INVALID. Whether this TPM has the curve is the
// caller's question.
func CurveFor(params []byte) (*Curve, error) {
	if c := CurveOf(params); c != nil {
		return c, nil
	}
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(params, &oid); err == nil && len(rest) == 0 {
		return nil, ck.Errorf(ck.CKR_CURVE_NOT_SUPPORTED, "curve %v", oid)
	}
	return nil, ck.Errorf(ck.CKR_DOMAIN_PARAMS_INVALID, "CKA_EC_PARAMS is not a curve's object identifier")
}

// CurveOfTPM returns the curve of a TPM curve ID, nil if unknown.
func CurveOfTPM(id tpm2.TPMECCCurve) *Curve {
	return findCurve(func(c *Curve) bool { return c.TPM == id })
}

// CurveOfGo returns the curve of a Go curve, nil if unknown.
func CurveOfGo(g elliptic.Curve) *Curve { return findCurve(func(c *Curve) bool { return c.Go == g }) }

// CurveNamed returns the curve with the CLI's name ("p256"), nil if unknown.
func CurveNamed(name string) *Curve { return findCurve(func(c *Curve) bool { return c.Name == name }) }
