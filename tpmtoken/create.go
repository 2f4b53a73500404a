package tpmtoken

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"math/big"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// CreateObject creates a data object, a certificate, a public key, or
// imports a private or secret key into the TPM, each by its class's schema.
func (l *Library) CreateObject(h uint64, tmpl []Attr) (uint64, error) {
	s, err := l.session(h)
	if err != nil {
		return 0, err
	}
	t, class, err := classTemplate(tmpl)
	if err != nil {
		return 0, err
	}
	switch class {
	case ck.CKO_PRIVATE_KEY:
		return l.importPrivateKey(s, t, opCreate)
	case ck.CKO_SECRET_KEY:
		return l.importSecretKey(s, t, opCreate)
	}
	sc, err := templateSchema(class, t)
	if err != nil {
		return 0, err
	}
	a, err := sc.build(opCreate, t, buildOpts{})
	if err != nil {
		return 0, err
	}
	switch class {
	case ck.CKO_CERTIFICATE:
		err = completeCertificate(a, t, s.tok)
	case ck.CKO_PUBLIC_KEY:
		err = completePublicKey(a)
	}
	if err != nil {
		return 0, err
	}
	if err := s.mayMake(a); err != nil {
		return 0, err
	}
	o := &Object{UID: newUID(), Attrs: a}
	a[ck.CKA_UNIQUE_ID] = []byte(o.UID)
	if !a.Bool(ck.CKA_TOKEN) {
		o.session = h
	}
	if err := s.tok.add(o); err != nil {
		return 0, err
	}
	return o.Handle, nil
}

// templateSchema is the schema of the object a template of class
// describes: its key or certificate type must be in it.
func templateSchema(class ck.ObjectClass, t Template) (*schema, error) {
	var sub uint64
	if st := subtype(class); st != 0 {
		v, ok, err := t.ULong(st)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "attribute 0x%x is required", st)
		}
		sub = v
	}
	return schemaFor(class, sub)
}

// completePublicKey checks a public key's material and adds its SPKI.
func completePublicKey(a Attrs) error {
	kt, _ := a.ULong(ck.CKA_KEY_TYPE)
	var pk any
	var spki []byte // EC keys: mech builds it (crypto/x509 lacks P-192)
	switch ck.KeyType(kt) {
	case ck.CKK_EC:
		c, err := mech.CurveFor(a[ck.CKA_EC_PARAMS])
		if err != nil {
			return err
		}
		// The spec asks for the DER OCTET STRING of the point; like SoftHSM
		// and OpenSC, a raw uncompressed point (04 || X || Y) is accepted
		// too. The two cannot be confused: the raw point is exactly
		// 2·Bytes+1 long, the DER OCTET STRING of it two or three bytes
		// longer (its tag and length).
		pt := a[ck.CKA_EC_POINT]
		if len(pt) != 1+2*c.Bytes || pt[0] != 4 {
			if rest, err := asn1.Unmarshal(a[ck.CKA_EC_POINT], &pt); err != nil || len(rest) != 0 {
				return ck.E(ck.CKR_ATTRIBUTE_VALUE_INVALID)
			}
		}
		x, y := unmarshalPoint(c.Go.Params().BitSize, pt)
		if x == nil || !c.Go.IsOnCurve(x, y) {
			return ck.E(ck.CKR_ATTRIBUTE_VALUE_INVALID)
		}
		// Kept as the spec's DER, however it came: what C_GetAttributeValue
		// returns and C_FindObjects matches is the same for every key.
		der, err := asn1.Marshal(pt)
		if err != nil {
			return ck.E(ck.CKR_ATTRIBUTE_VALUE_INVALID)
		}
		a[ck.CKA_EC_POINT] = der
		spki = c.SPKI(x, y)
	case ck.CKK_RSA:
		n, e := a[ck.CKA_MODULUS], a[ck.CKA_PUBLIC_EXPONENT]
		if len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
		}
		rk := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		a.SetULong(ck.CKA_MODULUS_BITS, uint64(rk.N.BitLen()))
		pk = rk
	case ck.CKK_ML_DSA, ck.CKK_ML_KEM:
		return completePQCPublicKey(a, ck.KeyType(kt)) // pqc_keys.go
	default:
		return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "key type 0x%x", kt)
	}
	if spki == nil {
		var err error
		if spki, err = x509.MarshalPKIXPublicKey(pk); err != nil {
			return ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
		}
	}
	a[ck.CKA_PUBLIC_KEY_INFO] = spki
	a.SetBool(ck.CKA_LOCAL, false)
	return nil
}

// unmarshalPoint decodes an uncompressed point 04||X||Y.
func unmarshalPoint(bits int, p []byte) (*big.Int, *big.Int) {
	n := (bits + 7) / 8
	if len(p) != 1+2*n || p[0] != 4 {
		return nil, nil
	}
	return new(big.Int).SetBytes(p[1 : 1+n]), new(big.Int).SetBytes(p[1+n:])
}
