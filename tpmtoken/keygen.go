package tpmtoken

import (
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
	if pqcKeyGen(m.Type) {
		return l.generatePQCKeyPair(h, s, m, pt, vt) // pqc_keys.go
	}
	kt, template, ecParams, err := l.keyPairSpec(m.Type, pt, vt)
	if err != nil {
		return 0, 0, err
	}
	pub, priv, err := keyPairAttrs(opGenerate, kt, pt, vt, buildOpts{}, s.tok.keyDefaults())
	if err != nil {
		return 0, 0, err
	}
	template, policy, err := s.tok.applyPolicy(h, vt, priv, template) // pcrpolicy.go
	if err != nil {
		return 0, 0, err
	}
	if err := s.mayMake(pub, priv); err != nil {
		return 0, 0, err
	}
	storage, err := s.tok.parentFor(priv.Bool(ck.CKA_PRIVATE))
	storage, err = portableParent(vt, priv, storage, err) // keyfile.go
	if err != nil {
		return 0, 0, err
	}
	// Made in the TPM: CKA_EXTRACTABLE is always false (nothing can take
	// a key out of the TPM), so even a key marked not sensitive never
	// reveals its value.
	generated := keyOrigin{local: true, mech: m.Type, alwaysSensitive: true, neverExtractable: true}
	// Saveable only if it makes no session objects.
	var persist *persistSpec[*tpm.Loadable]
	if pub.Bool(ck.CKA_TOKEN) && priv.Bool(ck.CKA_TOKEN) {
		persist = &persistSpec[*tpm.Loadable]{save: func(v *tpm.Loadable, err error) (asyncRecord, error) {
			if err != nil {
				return asyncRecord{}, err
			}
			pubH, privH, err := s.tok.addKeyPair(v, kt, ecParams, pub, priv, generated, 0)
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
		pubH, privH, err := s.tok.addKeyPair(v, kt, ecParams, pub, priv, generated, h)
		return Result{Objects: []uint64{pubH, privH}}, err
	}, persist, Dest{})
	if err != nil {
		return 0, 0, err
	}
	return res.Objects[0], res.Objects[1], nil
}

// keyPairSpec reads what mechanism m makes from the templates: the key
// type, the TPM's template and, for EC, the curve's parameters.
func (l *Library) keyPairSpec(m ck.MechType, pt, vt Template) (ck.KeyType, tpm2.TPMTPublic, []byte, error) {
	switch m {
	case ck.CKM_EC_KEY_PAIR_GEN:
		ecParams := pt[ck.CKA_EC_PARAMS]
		if ecParams == nil {
			ecParams = vt[ck.CKA_EC_PARAMS]
		}
		if ecParams == nil {
			return 0, tpm2.TPMTPublic{}, nil, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
		}
		c, err := mech.CurveFor(ecParams)
		if err != nil {
			return 0, tpm2.TPMTPublic{}, nil, err
		}
		if !slices.Contains(l.caps().Curves, c.TPM) {
			return 0, tpm2.TPMTPublic{}, nil, ck.Errorf(ck.CKR_CURVE_NOT_SUPPORTED, "this TPM has no curve %s", c.Name)
		}
		return ck.CKK_EC, tpm.ECCKeyTemplate(c.TPM), ecParams, nil
	case ck.CKM_RSA_PKCS_KEY_PAIR_GEN:
		bits, ok, err := pt.ULong(ck.CKA_MODULUS_BITS)
		if err != nil {
			return 0, tpm2.TPMTPublic{}, nil, err
		}
		if !ok {
			return 0, tpm2.TPMTPublic{}, nil, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
		}
		if !slices.Contains(l.caps().RSABits, int(bits)) {
			return 0, tpm2.TPMTPublic{}, nil, ck.Errorf(ck.CKR_KEY_SIZE_RANGE, "RSA %d bits", bits)
		}
		if e, ok := pt[ck.CKA_PUBLIC_EXPONENT]; ok && new(big.Int).SetBytes(e).Int64() != 65537 {
			return 0, tpm2.TPMTPublic{}, nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "the TPM only makes keys with exponent 65537")
		}
		return ck.CKK_RSA, tpm.RSAKeyTemplate(int(bits)), nil, nil
	}
	return 0, tpm2.TPMTPublic{}, nil, ck.E(ck.CKR_MECHANISM_INVALID)
}

// keyPairAttrs builds both halves of a key pair of type kt by the schema
// (schema_key.go) for operation o.
func keyPairAttrs(o op, kt ck.KeyType, pt, vt Template, pubOpts, privOpts buildOpts) (Attrs, Attrs, error) {
	pub, err := schemaOf(ck.CKO_PUBLIC_KEY, uint64(kt)).build(o, pt, pubOpts)
	if err != nil {
		return nil, nil, err
	}
	priv, err := schemaOf(ck.CKO_PRIVATE_KEY, uint64(kt)).build(o, vt, privOpts)
	if err != nil {
		return nil, nil, err
	}
	return pub, priv, nil
}

// keyOrigin is where a key came from (setOrigin).
type keyOrigin struct {
	local                             bool
	mech                              ck.MechType
	alwaysSensitive, neverExtractable bool
}

// addKeyPair makes the objects of a key pair the TPM created.
func (t *Token) addKeyPair(key *tpm.Loadable, kt ck.KeyType, ecParams []byte, pub, priv Attrs, org keyOrigin, session uint64) (uint64, uint64, error) {
	spki, err := publicAttrs(key, kt, ecParams, pub, priv)
	if err != nil {
		return 0, 0, err
	}
	for _, a := range []Attrs{pub, priv} {
		a.setOrigin(org.local, org.mech, org.alwaysSensitive, org.neverExtractable)
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
	if tpm.IsPQCPublic(key.Public.Bytes()) {
		return pqcPublicAttrs(key, kt, pub) // pqc_keys.go
	}
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
