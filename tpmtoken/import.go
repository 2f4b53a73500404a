package tpmtoken

import (
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// keyMaterial are the private-key attributes an import consumes: they go
// into the TPM and are never kept as attributes.
var keyMaterial = []ck.AttributeType{ck.CKA_MODULUS, ck.CKA_PUBLIC_EXPONENT, ck.CKA_PRIVATE_EXPONENT,
	ck.CKA_PRIME_1, ck.CKA_PRIME_2, ck.CKA_EXPONENT_1, ck.CKA_EXPONENT_2, ck.CKA_COEFFICIENT, ck.CKA_VALUE}

// importPrivateKey is C_CreateObject for an RSA or EC private key: the key
// is wrapped under the token's storage key by TPM2_Import and from then on
// is a TPM key like a generated one, except that the attributes say where
// it came from (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE false).
func (l *Library) importPrivateKey(s *Session, t Template, fn string) (uint64, error) {
	kt, ok, err := typedULong[ck.KeyType](t, ck.CKA_KEY_TYPE)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	}
	material := Template{}
	rest := Template{}
	for typ, v := range t {
		if slices.Contains(keyMaterial, typ) {
			material[typ] = v
		} else {
			rest[typ] = v
		}
	}
	var public tpm2.TPMTPublic
	var sensitive tpm2.TPMTSensitive
	switch kt {
	case ck.CKK_RSA:
		public, sensitive, err = rsaImport(material, l.caps())
	case ck.CKK_EC:
		public, sensitive, err = ecImport(rest[ck.CKA_EC_PARAMS], material[ck.CKA_VALUE], l.caps())
	default:
		return 0, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "cannot import private keys of type 0x%x", kt)
	}
	if err != nil {
		return 0, err
	}
	_, allowed := keyAllowed(kt)
	priv, err := keyTemplate(rest, ck.CKO_PRIVATE_KEY, kt, s.tok.keyDefaults(privDefaults), allowed)
	if err != nil {
		return 0, err
	}
	if kt == ck.CKK_EC {
		for _, a := range ecNever {
			priv.SetBool(a, false)
		}
	}
	if priv.Bool(ck.CKA_TOKEN) && !s.rw() {
		return 0, ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	storage, err := s.tok.parentFor(priv.Bool(ck.CKA_PRIVATE))
	if err != nil {
		return 0, err
	}
	sensitive.SeedValue = tpm2.TPM2BDigest{Buffer: randBytes(32)}
	job := func(e *tpm.Engine) (tpm2.TPM2BPrivate, error) { return e.Import(storage, public, sensitive) }
	finish := func(v tpm2.TPM2BPrivate, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		key := &tpm.Loadable{Parent: storage, Public: tpm2.New2B(public), Private: v}
		spki, err := publicAttrs(key, kt, rest[ck.CKA_EC_PARAMS], Attrs{}, priv)
		if err != nil {
			return Result{}, err
		}
		priv[ck.CKA_PUBLIC_KEY_INFO] = spki
		priv.setOrigin(false, 0, false, false)
		o := &Object{UID: newUID(), Attrs: priv, key: key}
		key.ID = "key:" + o.UID
		o.Attrs[ck.CKA_UNIQUE_ID] = []byte(o.UID)
		if !priv.Bool(ck.CKA_TOKEN) {
			o.session = s.Handle
		}
		if err := s.tok.add(o); err != nil {
			return Result{}, err
		}
		return Result{Objects: []uint64{o.Handle}}, nil
	}
	res, err := start(l, s, fn, 0, job, finish, nil, Dest{})
	if err != nil {
		return 0, err
	}
	return res.Objects[0], nil
}

// rsaImport builds the TPM's public and sensitive areas of an RSA key.
func rsaImport(m Template, c caps) (tpm2.TPMTPublic, tpm2.TPMTSensitive, error) {
	k, err := mech.ParseRSAImport(m[ck.CKA_MODULUS], m[ck.CKA_PUBLIC_EXPONENT], m[ck.CKA_PRIVATE_EXPONENT], m[ck.CKA_PRIME_1])
	if err != nil {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, err
	}
	if !slices.Contains(c.RSABits, k.N.BitLen()) {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.Errorf(ck.CKR_KEY_SIZE_RANGE, "this TPM has no %d-bit RSA (it has %v)", k.N.BitLen(), c.RSABits)
	}
	public := tpm.Importable(tpm.RSAKeyTemplate(k.N.BitLen()))
	parms, _ := public.Parameters.RSADetail()
	if k.E != 65537 {
		parms.Exponent = k.E
	}
	public.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, parms)
	public.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()})
	return public, tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgRSA,
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgRSA, &tpm2.TPM2BPrivateKeyRSA{Buffer: k.Prime.Bytes()}),
	}, nil
}

// ecImport builds the TPM's areas of an EC key from its scalar.
func ecImport(params, value []byte, c caps) (tpm2.TPMTPublic, tpm2.TPMTSensitive, error) {
	k, err := mech.ParseECImport(params, value)
	if err != nil {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, err
	}
	if !slices.Contains(c.Curves, k.Curve.TPM) {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.Errorf(ck.CKR_CURVE_NOT_SUPPORTED, "this TPM has no curve %s", k.Curve.Name)
	}
	public := tpm.Importable(tpm.ECCKeyTemplate(k.Curve.TPM))
	public.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: k.X},
		Y: tpm2.TPM2BECCParameter{Buffer: k.Y},
	})
	return public, tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgECC,
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgECC, &tpm2.TPM2BECCParameter{Buffer: k.D}),
	}, nil
}
