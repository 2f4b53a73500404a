package tpmtoken

import (
	"crypto/ecdh"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// keyMaterial are the private-key attributes an import consumes: they go
// into the TPM and are never kept as attributes.
var keyMaterial = []ck.AttributeType{ck.CKA_MODULUS, ck.CKA_PUBLIC_EXPONENT, ck.CKA_PRIVATE_EXPONENT,
	ck.CKA_PRIME_1, ck.CKA_PRIME_2, ck.CKA_EXPONENT_1, ck.CKA_EXPONENT_2, ck.CKA_COEFFICIENT, ck.CKA_VALUE}

// importPrivateKey is C_CreateObject for an RSA or EC private key: the key
// is wrapped under the token's storage key by TPM2_Import and from then on
// is a TPM key like a generated one, except that the attributes say where
// it came from (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE false).
func (l *Library) importPrivateKey(s *Session, t Template) (uint64, error) {
	kt, ok, err := t.ULong(ck.CKA_KEY_TYPE)
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
	priv, err := keyTemplate(rest, ck.CKO_PRIVATE_KEY, kt, privDefaults, allowed)
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
	if !s.tok.userLoggedIn() {
		return 0, ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	storage := s.tok.storage
	sensitive.SeedValue = tpm2.TPM2BDigest{Buffer: randBytes(32)}
	job := func(e *tpm.Engine) (any, error) { return e.Import(storage, public, sensitive) }
	finish := func(v any, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		key := &tpm.Object{Parent: storage, Public: tpm2.New2B(public), Private: v.(tpm2.TPM2BPrivate)}
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
	res, err := l.start(s, "C_CreateObject", 0, job, finish, nil)
	if err != nil {
		return 0, err
	}
	return res.Objects[0], nil
}

// rsaImport builds the TPM's public and sensitive areas of an RSA key: the
// TPM keeps one prime. Without the primes (the spec's minimal set is the
// modulus and private exponent) the modulus is factored from d and e.
func rsaImport(m Template, c caps) (tpm2.TPMTPublic, tpm2.TPMTSensitive, error) {
	num := func(t ck.AttributeType) *big.Int { return new(big.Int).SetBytes(m[t]) }
	n, e := num(ck.CKA_MODULUS), num(ck.CKA_PUBLIC_EXPONENT)
	if n.Sign() == 0 || e.Sign() == 0 {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	}
	if !slices.Contains(c.RSABits, n.BitLen()) {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "this TPM has no %d-bit RSA", n.BitLen())
	}
	if !e.IsUint64() || e.Uint64() > 1<<32-1 || e.Bit(0) == 0 {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "public exponent")
	}
	p := num(ck.CKA_PRIME_1)
	if p.Sign() == 0 {
		d := num(ck.CKA_PRIVATE_EXPONENT)
		if d.Sign() == 0 {
			return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
		}
		p = factorModulus(n, e, d)
	}
	if p == nil || p.Cmp(big.NewInt(1)) <= 0 || new(big.Int).Mod(n, p).Sign() != 0 || p.Cmp(n) == 0 {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "the private key does not match its modulus")
	}
	public := tpm.Importable(tpm.RSAKeyTemplate(n.BitLen()))
	parms, _ := public.Parameters.RSADetail()
	if e.Uint64() != 65537 {
		parms.Exponent = uint32(e.Uint64())
	}
	public.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, parms)
	public.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: n.Bytes()})
	return public, tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgRSA,
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgRSA, &tpm2.TPM2BPrivateKeyRSA{Buffer: p.Bytes()}),
	}, nil
}

// factorModulus recovers a prime factor of n from e and d (the method of
// RFC 8017's note on CRT recovery: d·e−1 = 2^t·r; a random g^r's square-root
// chain meets a non-trivial root of 1 with probability ≥ 1/2 per g).
func factorModulus(n, e, d *big.Int) *big.Int {
	one := big.NewInt(1)
	nMinus1 := new(big.Int).Sub(n, one)
	k := new(big.Int).Sub(new(big.Int).Mul(d, e), one)
	if k.Sign() <= 0 {
		return nil
	}
	t := 0
	r := new(big.Int).Set(k)
	for r.Bit(0) == 0 {
		r.Rsh(r, 1)
		t++
	}
	for g := int64(2); g < 200; g++ {
		x := new(big.Int).Exp(big.NewInt(g), r, n)
		for i := 0; i < t; i++ {
			y := new(big.Int).Exp(x, big.NewInt(2), n)
			if y.Cmp(one) == 0 && x.Cmp(one) != 0 && x.Cmp(nMinus1) != 0 {
				return new(big.Int).GCD(nil, nil, new(big.Int).Sub(x, one), n)
			}
			x = y
		}
	}
	return nil
}

// ecImport builds the TPM's areas of an EC key from its scalar; the public
// point is computed, so a template needs only CKA_EC_PARAMS and CKA_VALUE.
func ecImport(params, value []byte, c caps) (tpm2.TPMTPublic, tpm2.TPMTSensitive, error) {
	cv := curveOf(params)
	if cv == nil || !slices.Contains(c.Curves, cv.tpm) {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.E(ck.CKR_CURVE_NOT_SUPPORTED)
	}
	if len(value) == 0 {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	}
	size := tpm.CurveBytes(cv.tpm)
	d := new(big.Int).SetBytes(value)
	if (d.BitLen()+7)/8 > size {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.E(ck.CKR_ATTRIBUTE_VALUE_INVALID)
	}
	ecdhCurve := map[tpm2.TPMECCCurve]ecdh.Curve{tpm2.TPMECCNistP256: ecdh.P256(), tpm2.TPMECCNistP384: ecdh.P384(), tpm2.TPMECCNistP521: ecdh.P521()}[cv.tpm]
	k, err := ecdhCurve.NewPrivateKey(d.FillBytes(make([]byte, size)))
	if err != nil {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
	}
	pt := k.PublicKey().Bytes() // 04 || X || Y
	public := tpm.Importable(tpm.ECCKeyTemplate(cv.tpm))
	public.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: pt[1 : 1+size]},
		Y: tpm2.TPM2BECCParameter{Buffer: pt[1+size:]},
	})
	return public, tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgECC,
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgECC, &tpm2.TPM2BECCParameter{Buffer: d.FillBytes(make([]byte, size))}),
	}, nil
}
