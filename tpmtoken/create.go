package tpmtoken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"math/big"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// storageAttrs every created object may carry.
var storageAttrs = []ck.AttributeType{ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_MODIFIABLE, ck.CKA_COPYABLE,
	ck.CKA_DESTROYABLE, ck.CKA_LABEL}

// createAttrs lists, per class, the attributes C_CreateObject accepts.
var createAttrs = map[ck.ObjectClass][]ck.AttributeType{
	ck.CKO_DATA:        {ck.CKA_APPLICATION, ck.CKA_OBJECT_ID, ck.CKA_VALUE},
	ck.CKO_CERTIFICATE: append(append([]ck.AttributeType{}, certCommon...), append(certX509, certAttr...)...),
	ck.CKO_PUBLIC_KEY: {ck.CKA_KEY_TYPE, ck.CKA_ID, ck.CKA_SUBJECT, ck.CKA_START_DATE, ck.CKA_END_DATE,
		ck.CKA_DERIVE, ck.CKA_ENCRYPT, ck.CKA_VERIFY, ck.CKA_VERIFY_RECOVER, ck.CKA_WRAP, ck.CKA_TRUSTED,
		ck.CKA_MODULUS, ck.CKA_PUBLIC_EXPONENT, ck.CKA_EC_PARAMS, ck.CKA_EC_POINT},
}

// CreateObject creates a data object, an X.509 certificate, a public key,
// or imports a private or secret key into the TPM.
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
		return l.importPrivateKey(s, t, "C_CreateObject")
	case ck.CKO_SECRET_KEY:
		return l.importSecretKey(s, t, "C_CreateObject")
	}
	allowed, known := createAttrs[class]
	if !known {
		return 0, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "cannot create objects of class 0x%x", class)
	}
	a := Attrs{}
	a.SetULong(ck.CKA_CLASS, uint64(class))
	for _, b := range []ck.AttributeType{ck.CKA_TOKEN, ck.CKA_PRIVATE} {
		a.SetBool(b, false)
	}
	for _, b := range []ck.AttributeType{ck.CKA_MODIFIABLE, ck.CKA_COPYABLE, ck.CKA_DESTROYABLE} {
		a.SetBool(b, true)
	}
	a[ck.CKA_LABEL] = []byte{}
	for typ, v := range t {
		switch {
		case typ == ck.CKA_CLASS:
		case contains(boolAttrs, typ) && (contains(storageAttrs, typ) || contains(allowed, typ)):
			b, _, err := t.Bool(typ)
			if err != nil {
				return 0, err
			}
			a.SetBool(typ, b)
		case contains(storageAttrs, typ) || contains(allowed, typ):
			a[typ] = bytes.Clone(v)
		case contains(generatedOnly, typ):
			return 0, ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x is set by the token", typ)
		default:
			return 0, ck.Errorf(ck.CKR_ATTRIBUTE_TYPE_INVALID, "attribute 0x%x for class 0x%x", typ, class)
		}
	}
	switch class {
	case ck.CKO_CERTIFICATE:
		err = completeCertificate(a, s.tok)
	case ck.CKO_PUBLIC_KEY:
		err = completePublicKey(a)
	case ck.CKO_DATA:
		if _, ok := a[ck.CKA_VALUE]; !ok {
			a[ck.CKA_VALUE] = []byte{}
		}
	}
	if err != nil {
		return 0, err
	}
	if a.Bool(ck.CKA_TOKEN) && !s.rw() {
		return 0, ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	if a.Bool(ck.CKA_PRIVATE) && !s.tok.userLoggedIn() {
		return 0, ck.E(ck.CKR_USER_NOT_LOGGED_IN)
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

// completePublicKey checks a public key's material and adds its SPKI.
func completePublicKey(a Attrs) error {
	kt, ok := a.ULong(ck.CKA_KEY_TYPE)
	if !ok {
		return ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	}
	var pk any
	switch ck.KeyType(kt) {
	case ck.CKK_EC:
		var pt []byte
		if _, err := asn1.Unmarshal(a[ck.CKA_EC_POINT], &pt); err != nil {
			return ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
		}
		c := mech.CurveOf(a[ck.CKA_EC_PARAMS])
		if c == nil {
			return ck.E(ck.CKR_CURVE_NOT_SUPPORTED)
		}
		x, y := unmarshalPoint(c.Go.Params().BitSize, pt)
		if x == nil || !c.Go.IsOnCurve(x, y) {
			return ck.E(ck.CKR_ATTRIBUTE_VALUE_INVALID)
		}
		pk = &ecdsa.PublicKey{Curve: c.Go, X: x, Y: y}
	case ck.CKK_RSA:
		n, e := a[ck.CKA_MODULUS], a[ck.CKA_PUBLIC_EXPONENT]
		if len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
		}
		rk := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		a.SetULong(ck.CKA_MODULUS_BITS, uint64(rk.N.BitLen()))
		pk = rk
	default:
		return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "key type 0x%x", kt)
	}
	spki, err := x509.MarshalPKIXPublicKey(pk)
	if err != nil {
		return ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
	}
	a[ck.CKA_PUBLIC_KEY_INFO] = spki
	a.SetBool(ck.CKA_LOCAL, false)
	for _, b := range []ck.AttributeType{ck.CKA_VERIFY} {
		if _, ok := a[b]; !ok {
			a.SetBool(b, true)
		}
	}
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
