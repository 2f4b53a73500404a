package tpmtoken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Attributes that describe what a key may do, and which do not apply to EC.
var (
	ecNever       = []ck.AttributeType{ck.CKA_ENCRYPT, ck.CKA_DECRYPT, ck.CKA_WRAP, ck.CKA_UNWRAP, ck.CKA_SIGN_RECOVER, ck.CKA_VERIFY_RECOVER}
	copiedAttrs   = []ck.AttributeType{ck.CKA_LABEL, ck.CKA_ID, ck.CKA_SUBJECT, ck.CKA_START_DATE, ck.CKA_END_DATE, ck.CKA_APPLICATION}
	generatedOnly = []ck.AttributeType{ck.CKA_MODULUS, ck.CKA_EC_POINT, ck.CKA_LOCAL, ck.CKA_ALWAYS_SENSITIVE,
		ck.CKA_NEVER_EXTRACTABLE, ck.CKA_KEY_GEN_MECHANISM, ck.CKA_UNIQUE_ID, ck.CKA_PRIVATE_EXPONENT, ck.CKA_PUBLIC_KEY_INFO}
	usageAttrs = []ck.AttributeType{ck.CKA_SIGN, ck.CKA_VERIFY, ck.CKA_ENCRYPT, ck.CKA_DECRYPT, ck.CKA_WRAP, ck.CKA_UNWRAP,
		ck.CKA_DERIVE, ck.CKA_SIGN_RECOVER, ck.CKA_VERIFY_RECOVER}
	boolAttrs = append([]ck.AttributeType{ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_MODIFIABLE, ck.CKA_COPYABLE,
		ck.CKA_DESTROYABLE, ck.CKA_SENSITIVE, ck.CKA_EXTRACTABLE, ck.CKA_TRUSTED, ck.CKA_ALWAYS_AUTHENTICATE,
		ck.CKA_WRAP_WITH_TRUSTED}, usageAttrs...)
)

// Defaults of the halves of a key pair where the template is silent.
var (
	pubDefaults = map[ck.AttributeType]bool{ck.CKA_TOKEN: false, ck.CKA_PRIVATE: false, ck.CKA_MODIFIABLE: true, ck.CKA_COPYABLE: true,
		ck.CKA_DESTROYABLE: true, ck.CKA_VERIFY: true, ck.CKA_ENCRYPT: false, ck.CKA_DERIVE: false, ck.CKA_WRAP: false,
		ck.CKA_VERIFY_RECOVER: false, ck.CKA_TRUSTED: false}
	privDefaults = map[ck.AttributeType]bool{ck.CKA_TOKEN: false, ck.CKA_PRIVATE: true, ck.CKA_MODIFIABLE: true, ck.CKA_COPYABLE: true,
		ck.CKA_DESTROYABLE: true, ck.CKA_SIGN: true, ck.CKA_DECRYPT: false, ck.CKA_DERIVE: false, ck.CKA_UNWRAP: false,
		ck.CKA_SIGN_RECOVER: false, ck.CKA_SENSITIVE: true, ck.CKA_EXTRACTABLE: false, ck.CKA_ALWAYS_AUTHENTICATE: false,
		ck.CKA_WRAP_WITH_TRUSTED: false}
)

// keyAllowed is, per key type, which attributes may be true on the public
// and private halves: EC keys sign, verify and derive, never encrypt.
func keyAllowed(kt ck.KeyType) (pub, priv map[ck.AttributeType]bool) {
	pub, priv = set(ck.CKA_VERIFY, ck.CKA_DERIVE), set(ck.CKA_SIGN, ck.CKA_DERIVE)
	if kt == ck.CKK_RSA {
		pub, priv = set(ck.CKA_VERIFY, ck.CKA_ENCRYPT, ck.CKA_WRAP, ck.CKA_VERIFY_RECOVER), set(ck.CKA_SIGN, ck.CKA_DECRYPT, ck.CKA_UNWRAP, ck.CKA_SIGN_RECOVER)
	}
	priv[ck.CKA_ALWAYS_AUTHENTICATE] = true // the PIN again before each use (alwaysauth.go)
	for _, t := range []ck.AttributeType{ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_MODIFIABLE, ck.CKA_COPYABLE,
		ck.CKA_DESTROYABLE, ck.CKA_TRUSTED, ck.CKA_SENSITIVE} {
		pub[t], priv[t] = true, true
	}
	return pub, priv
}

// keyTemplate applies a caller template over defaults for one half of a
// key pair, refusing what the token cannot honour.
func keyTemplate(tmpl Template, class ck.ObjectClass, kt ck.KeyType, defaults map[ck.AttributeType]bool, allowed map[ck.AttributeType]bool) (Attrs, error) {
	a := Attrs{}
	a.SetULong(ck.CKA_CLASS, uint64(class))
	a.SetULong(ck.CKA_KEY_TYPE, uint64(kt))
	for typ, v := range defaults {
		a.SetBool(typ, v)
	}
	for typ, v := range tmpl {
		switch {
		case typ == ck.CKA_CLASS || typ == ck.CKA_KEY_TYPE:
			if got, _, err := tmpl.ULong(typ); err != nil || (typ == ck.CKA_CLASS && got != uint64(class)) || (typ == ck.CKA_KEY_TYPE && got != uint64(kt)) {
				return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "attribute 0x%x", typ)
			}
		case typ == ck.CKA_EC_PARAMS || typ == ck.CKA_MODULUS_BITS || typ == ck.CKA_PUBLIC_EXPONENT,
			class == ck.CKO_PRIVATE_KEY && isVendorKeygenAttr(typ):
			// read by the generator
		case typ == ck.CKA_ALLOWED_MECHANISMS:
			if len(v)%8 != 0 {
				return nil, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_ALLOWED_MECHANISMS is a CK_MECHANISM_TYPE array")
			}
			a[typ] = bytes.Clone(v)
		case contains(generatedOnly, typ):
			return nil, ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x is set by the token", typ)
		case contains(copiedAttrs, typ):
			a[typ] = bytes.Clone(v)
		case contains(boolAttrs, typ):
			b, _, err := tmpl.Bool(typ)
			if err != nil {
				return nil, err
			}
			switch {
			case b && !allowed[typ] && contains(usageAttrs, typ):
				// A usage the key type has no mechanism for (OpenSSL's
				// pkcs11-provider asks for CKA_WRAP on every EC public
				// key): accepted, and the key says what it can do.
				b = false
			case b && !allowed[typ]:
				return nil, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "attribute 0x%x cannot be true on this key", typ)
			}
			a.SetBool(typ, b)
		default:
			return nil, ck.Errorf(ck.CKR_ATTRIBUTE_TYPE_INVALID, "attribute 0x%x", typ)
		}
	}
	return a, nil
}

func contains(list []ck.AttributeType, t ck.AttributeType) bool {
	for _, x := range list {
		if x == t {
			return true
		}
	}
	return false
}

func set(ts ...ck.AttributeType) map[ck.AttributeType]bool {
	m := map[ck.AttributeType]bool{}
	for _, t := range ts {
		m[t] = true
	}
	return m
}

// GenerateKeyPair creates a key pair in the TPM under the token's storage
// key. The private half never leaves the TPM unwrapped.
func (l *Library) GenerateKeyPair(h uint64, m Mechanism, pubT, privT []Attr) (uint64, uint64, error) {
	s, err := l.session(h)
	if err != nil {
		return 0, 0, err
	}
	pt, err := NewTemplate(pubT)
	if err != nil {
		return 0, 0, err
	}
	vt, err := NewTemplate(privT)
	if err != nil {
		return 0, 0, err
	}
	var kt ck.KeyType
	var template tpm2.TPMTPublic
	var ecParams []byte
	switch m.Type {
	case ck.CKM_EC_KEY_PAIR_GEN:
		kt = ck.CKK_EC
		ecParams = pt[ck.CKA_EC_PARAMS]
		if ecParams == nil {
			ecParams = vt[ck.CKA_EC_PARAMS]
		}
		if ecParams == nil {
			return 0, 0, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
		}
		c := mech.CurveOf(ecParams)
		if c == nil || !slices.Contains(l.caps().Curves, c.TPM) {
			return 0, 0, ck.E(ck.CKR_CURVE_NOT_SUPPORTED)
		}
		template = tpm.ECCKeyTemplate(c.TPM)
	case ck.CKM_RSA_PKCS_KEY_PAIR_GEN:
		kt = ck.CKK_RSA
		bits, ok, err := pt.ULong(ck.CKA_MODULUS_BITS)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
		}
		if !slices.Contains(l.caps().RSABits, int(bits)) {
			return 0, 0, ck.Errorf(ck.CKR_KEY_SIZE_RANGE, "RSA %d bits", bits)
		}
		if e, ok := pt[ck.CKA_PUBLIC_EXPONENT]; ok && new(big.Int).SetBytes(e).Int64() != 65537 {
			return 0, 0, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "the TPM only makes keys with exponent 65537")
		}
		template = tpm.RSAKeyTemplate(int(bits))
	default:
		return 0, 0, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	pubAllowed, privAllowed := keyAllowed(kt)
	pub, err := keyTemplate(pt, ck.CKO_PUBLIC_KEY, kt,
		pubDefaults, pubAllowed)
	if err != nil {
		return 0, 0, err
	}
	priv, err := keyTemplate(vt, ck.CKO_PRIVATE_KEY, kt,
		s.tok.keyDefaults(privDefaults), privAllowed)
	if err != nil {
		return 0, 0, err
	}
	if kt == ck.CKK_EC {
		for _, t := range ecNever {
			pub.SetBool(t, false)
			priv.SetBool(t, false)
		}
	}
	template, policy, err := s.tok.applyPolicy(h, vt, priv, template) // pcrpolicy.go
	if err != nil {
		return 0, 0, err
	}
	if (pub.Bool(ck.CKA_TOKEN) || priv.Bool(ck.CKA_TOKEN)) && !s.rw() {
		return 0, 0, ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	if pub.Bool(ck.CKA_PRIVATE) && !s.tok.userLoggedIn() {
		return 0, 0, ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	storage, err := s.tok.parentFor(priv.Bool(ck.CKA_PRIVATE))
	storage, err = portableParent(vt, priv, storage, err) // keyfile.go
	if err != nil {
		return 0, 0, err
	}
	// Saveable only if it makes no session objects.
	var persist *persistSpec[*tpm.Loadable]
	if pub.Bool(ck.CKA_TOKEN) && priv.Bool(ck.CKA_TOKEN) {
		persist = &persistSpec[*tpm.Loadable]{save: func(v *tpm.Loadable, err error) (asyncRecord, error) {
			if err != nil {
				return asyncRecord{}, err
			}
			pubH, privH, err := s.tok.addKeyPair(v, kt, ecParams, pub, priv, m.Type, 0)
			if err != nil {
				return asyncRecord{}, err
			}
			return asyncRecord{UIDs: s.tok.uids(pubH, privH)}, nil
		}}
	}
	res, err := start(l, s, "C_GenerateKeyPair", ck.CKF_GENERATE_KEY_PAIR, func(e *tpm.Engine) (*tpm.Loadable, error) {
		p, k, err := e.Create(storage, template, nil, nil)
		if err != nil {
			return nil, err
		}
		return &tpm.Loadable{Parent: storage, Public: p, Private: k, Policy: policy}, nil
	}, func(v *tpm.Loadable, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		pubH, privH, err := s.tok.addKeyPair(v, kt, ecParams, pub, priv, m.Type, h)
		return Result{Objects: []uint64{pubH, privH}}, err
	}, persist, Dest{})
	if err != nil {
		return 0, 0, err
	}
	return res.Objects[0], res.Objects[1], nil
}

// addKeyPair makes the objects of a key pair the TPM created.
func (t *Token) addKeyPair(key *tpm.Loadable, kt ck.KeyType, ecParams []byte, pub, priv Attrs, mech ck.MechType, session uint64) (uint64, uint64, error) {
	spki, err := publicAttrs(key, kt, ecParams, pub, priv)
	if err != nil {
		return 0, 0, err
	}
	// CKA_EXTRACTABLE is always false (nothing can take a key out of the
	// TPM), so even a key marked not sensitive never reveals its value.
	for _, a := range []Attrs{pub, priv} {
		a.setOrigin(true, mech, true, true)
		a[ck.CKA_PUBLIC_KEY_INFO] = spki
	}
	pubObj := &Object{UID: newUID(), Attrs: pub}
	privObj := &Object{UID: newUID(), Attrs: priv, key: key}
	key.ID = "key:" + privObj.UID
	for _, o := range []*Object{pubObj, privObj} {
		o.Attrs[ck.CKA_UNIQUE_ID] = []byte(o.UID)
		if !o.Attrs.Bool(ck.CKA_TOKEN) {
			o.session = session
		}
	}
	if err := t.addAll(privObj, pubObj); err != nil { // both halves or neither
		return 0, 0, err
	}
	return pubObj.Handle, privObj.Handle, nil
}

// publicAttrs fills the public-key attributes from the TPM's public area
// and returns the SubjectPublicKeyInfo.
func publicAttrs(key *tpm.Loadable, kt ck.KeyType, ecParams []byte, pub, priv Attrs) ([]byte, error) {
	p, err := key.Public.Contents()
	if err != nil {
		return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
	}
	var pk any
	if kt == ck.CKK_EC {
		pt, err := p.Unique.ECC()
		if err != nil {
			return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
		}
		c := mech.CurveOf(ecParams)
		if c == nil {
			return nil, ck.E(ck.CKR_CURVE_NOT_SUPPORTED)
		}
		// Built here rather than by go-tpm, which knows fewer curves.
		epk := &ecdsa.PublicKey{Curve: c.Go, X: new(big.Int).SetBytes(pt.X.Buffer), Y: new(big.Int).SetBytes(pt.Y.Buffer)}
		point, _ := asn1.Marshal(c.Point(epk.X, epk.Y))
		pub[ck.CKA_EC_PARAMS], priv[ck.CKA_EC_PARAMS] = ecParams, ecParams
		pub[ck.CKA_EC_POINT] = point
		pk = epk
	} else {
		parms, err := p.Parameters.RSADetail()
		if err != nil {
			return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
		}
		n, err := p.Unique.RSA()
		if err != nil {
			return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
		}
		rpk, err := tpm2.RSAPub(parms, n)
		if err != nil {
			return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
		}
		e := big.NewInt(int64(rpk.E)).Bytes()
		for _, a := range []Attrs{pub, priv} {
			a[ck.CKA_MODULUS] = rpk.N.Bytes()
			a[ck.CKA_PUBLIC_EXPONENT] = e
		}
		pub.SetULong(ck.CKA_MODULUS_BITS, uint64(rpk.N.BitLen()))
		pk = rpk
	}
	spki, err := x509.MarshalPKIXPublicKey(pk)
	if err != nil {
		return nil, ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	return spki, nil
}

// uids returns the UIDs of objects by handle.
func (t *Token) uids(hs ...uint64) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, h := range hs {
		if o := t.objects[h]; o != nil {
			out = append(out, o.UID)
		}
	}
	return out
}
