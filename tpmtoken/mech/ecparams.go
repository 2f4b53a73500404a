package mech

import (
	"encoding/asn1"
	"math/big"

	"github.com/tpm11/tpm11/ck"
)

// CKA_EC_PARAMS may be the ecParameters choice (SEC 1 §C.2, RFC 3279
// SpecifiedECDomain) rather than a named curve's OID: python-pkcs11's
// tests, certificates made with OpenSSL's "-param_enc explicit" and old
// smart-card middleware send it. Like OpenSSL and SoftHSM, tpm11 accepts
// explicit parameters that are exactly a curve it knows (same prime, a, b,
// base point, order and cofactor) and treats the key as that named curve;
// the attribute keeps the bytes the caller gave (the attribute's value is
// what was set). Anything else is a curve it does not support.

// specifiedDomain is SEC 1's SpecifiedECDomain.
type specifiedDomain struct {
	Version  int
	Field    fieldID
	Curve    curveCoeffs
	Base     []byte
	Order    *big.Int
	Cofactor *big.Int      `asn1:"optional"`
	Hash     asn1.RawValue `asn1:"optional"` // SEC 1 v2's hash; ignored
}

type fieldID struct {
	Type       asn1.ObjectIdentifier
	Parameters asn1.RawValue // prime-field: INTEGER p; characteristic-two: a SEQUENCE
}

type curveCoeffs struct {
	A, B []byte
	Seed asn1.BitString `asn1:"optional"`
}

var oidPrimeField = asn1.ObjectIdentifier{1, 2, 840, 10045, 1, 1}

// explicitCurve resolves ecParameters: nil, nil when they are well formed
// but no curve tpm11 knows; an error when they are not ecParameters at all.
func explicitCurve(params []byte) (*Curve, error) {
	var d specifiedDomain
	rest, err := asn1.Unmarshal(params, &d)
	if err != nil || len(rest) != 0 || d.Version < 1 || d.Version > 3 || d.Order == nil {
		return nil, ck.Errorf(ck.CKR_DOMAIN_PARAMS_INVALID, "CKA_EC_PARAMS is neither a curve's object identifier nor ecParameters")
	}
	if !d.Field.Type.Equal(oidPrimeField) {
		return nil, nil // characteristic two: no TPM has it
	}
	var p *big.Int
	if rest, err := asn1.Unmarshal(d.Field.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
		return nil, ck.Errorf(ck.CKR_DOMAIN_PARAMS_INVALID, "ecParameters: prime field without a prime")
	}
	for _, c := range Curves {
		if c.matches(p, &d) {
			return c, nil
		}
	}
	return nil, nil
}

// matches compares explicit parameters with c's, field elements as integers
// and the base point compressed (02/03 || X) or uncompressed (04 || X || Y).
func (c *Curve) matches(p *big.Int, d *specifiedDomain) bool {
	cp := c.Go.Params()
	a := new(big.Int).Sub(cp.P, big.NewInt(3)) // every curve in the table has a = -3
	if p.Cmp(cp.P) != 0 || d.Order.Cmp(cp.N) != 0 ||
		new(big.Int).SetBytes(d.Curve.A).Cmp(a) != 0 || new(big.Int).SetBytes(d.Curve.B).Cmp(cp.B) != 0 {
		return false
	}
	if d.Cofactor != nil && d.Cofactor.Cmp(big.NewInt(1)) != 0 {
		return false
	}
	g := d.Base
	switch {
	case len(g) == 1+2*c.Bytes && g[0] == 4:
		return new(big.Int).SetBytes(g[1:1+c.Bytes]).Cmp(cp.Gx) == 0 && new(big.Int).SetBytes(g[1+c.Bytes:]).Cmp(cp.Gy) == 0
	case len(g) == 1+c.Bytes && (g[0] == 2 || g[0] == 3):
		return new(big.Int).SetBytes(g[1:]).Cmp(cp.Gx) == 0 && cp.Gy.Bit(0) == uint(g[0]&1)
	}
	return false
}
