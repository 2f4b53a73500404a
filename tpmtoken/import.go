package tpmtoken

import (
	"bytes"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// fn names the PKCS#11 function of an operation (for the async machinery
// and logs).
func (o op) fn() string {
	if o == opUnwrap {
		return "C_UnwrapKey"
	}
	return "C_CreateObject"
}

// importPrivateKey is C_CreateObject (or C_UnwrapKey) for an RSA or EC
// private key: the key is wrapped under the token's storage key by
// TPM2_Import and from then on is a TPM key like a generated one, except
// that the attributes say where it came from (CKA_LOCAL,
// CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE false). The key material is
// the schema's input of the import (schema_key.go): read here, never kept.
func (l *Library) importPrivateKey(s *Session, t Template, o op) (uint64, error) {
	sc, err := templateSchema(ck.CKO_PRIVATE_KEY, t)
	if err != nil {
		return 0, err
	}
	priv, err := sc.build(o, t, s.tok.keyDefaults())
	if err != nil {
		return 0, err
	}
	kt := ck.KeyType(sc.sub)
	var public tpm2.TPMTPublic
	var sensitive tpm2.TPMTSensitive
	if kt == ck.CKK_RSA {
		public, sensitive, err = rsaImport(t, l.caps())
	} else {
		public, sensitive, err = ecImport(t[ck.CKA_EC_PARAMS], t[ck.CKA_VALUE], l.caps())
	}
	if err != nil {
		return 0, err
	}
	if err := s.mayMake(priv); err != nil {
		return 0, err
	}
	storage, err := s.tok.parentFor(priv.Bool(ck.CKA_PRIVATE))
	if err != nil {
		return 0, err
	}
	ecParams := bytes.Clone(t[ck.CKA_EC_PARAMS])
	sensitive.SeedValue = tpm2.TPM2BDigest{Buffer: randBytes(32)}
	job := func(e *tpm.Engine) (tpm2.TPM2BPrivate, error) { return e.Import(storage, public, sensitive) }
	finish := func(v tpm2.TPM2BPrivate, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		key := &tpm.Loadable{Parent: storage, Public: tpm2.New2B(public), Private: v}
		spki, err := publicAttrs(key, kt, ecParams, Attrs{}, priv)
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
	res, err := start(l, s, o.fn(), 0, job, finish, nil, Dest{})
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
