package tpmtoken

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// ML-DSA and ML-KEM keys (PKCS#11 3.2 ml_dsa.md, ml-kem.md), made in a
// TPM of the v1.85 specification (docs/pqc.md) under the token's storage
// key like every key. CKA_PARAMETER_SET names the parameter set (given on
// the public template at generation); CKA_VALUE of the public key is its
// FIPS encoding; CKA_PUBLIC_KEY_INFO its SubjectPublicKeyInfo with the
// NIST OID. Offered only where the TPM reports the parameter set.

// Schemas (schema_key.go's rows, the PQC attributes added).
func init() { declared(pqcSchemas) }

// pqcSchemas registers the schemas of this file (see declared).
func pqcSchemas() {
	mldsa, mlkem := uint64(ck.CKK_ML_DSA), uint64(ck.CKK_ML_KEM)
	pqcPublicRows := []attrDef{
		{typ: ck.CKA_PARAMETER_SET, kind: kindULong, given: opCreate | opGenerate, input: opGenerate, required: opCreate | opGenerate},
		{typ: ck.CKA_VALUE, kind: kindBytes, given: opCreate, required: opCreate},
	}
	pqcPrivateRows := []attrDef{
		// Set by the token from the public template.
		{typ: ck.CKA_PARAMETER_SET, kind: kindULong},
		// The private key and its seed: in the TPM, never here.
		{typ: ck.CKA_VALUE, kind: kindBytes, hidden: true},
		{typ: ck.CKA_SEED, kind: kindBytes, hidden: true},
	}
	none := map[ck.AttributeType]bool{ck.CKA_ENCRYPT: false, ck.CKA_DECRYPT: false, ck.CKA_SIGN: false, ck.CKA_VERIFY: false,
		ck.CKA_WRAP: false, ck.CKA_UNWRAP: false, ck.CKA_DERIVE: false, ck.CKA_SIGN_RECOVER: false, ck.CKA_VERIFY_RECOVER: false}
	register(
		declare(ck.CKO_PUBLIC_KEY, mldsa, storageRows, keyRows, publicRows, pqcPublicRows,
			usageRows([]ck.AttributeType{ck.CKA_VERIFY}, merge(none, map[ck.AttributeType]bool{ck.CKA_VERIFY: true}))),
		declare(ck.CKO_PRIVATE_KEY, mldsa, storageRows, keyRows, privateRows, pqcPrivateRows,
			usageRows([]ck.AttributeType{ck.CKA_SIGN}, merge(none, map[ck.AttributeType]bool{ck.CKA_SIGN: true}))),
		declare(ck.CKO_PUBLIC_KEY, mlkem, storageRows, keyRows, publicRows, pqcPublicRows,
			[]attrDef{{typ: ck.CKA_ENCAPSULATE, kind: kindBool, given: opMake, def: vTrue, change: toFalse}},
			usageRows(nil, none)),
		declare(ck.CKO_PRIVATE_KEY, mlkem, storageRows, keyRows, privateRows, pqcPrivateRows,
			[]attrDef{{typ: ck.CKA_DECAPSULATE, kind: kindBool, given: opMake, def: vTrue, change: toFalse}},
			usageRows(nil, none)),
	)
	kems[ck.CKM_ML_KEM] = mlkemKEM
}

// pqcKeyGen reports whether m makes an ML-DSA or ML-KEM key pair.
func pqcKeyGen(m ck.MechType) bool {
	return m == ck.CKM_ML_DSA_KEY_PAIR_GEN || m == ck.CKM_ML_KEM_KEY_PAIR_GEN
}

// pqcKeyPairSpec is keyPairSpec for the PQC mechanisms: the key type, the
// parameter set (CKA_PARAMETER_SET of the public template, which the TPM
// must report) and the TPM's template.
func (l *Library) pqcKeyPairSpec(m ck.MechType, pt, vt Template) (ck.KeyType, ck.ULong, *tpm.PQCPublic, error) {
	ps, ok, err := pt.ULong(ck.CKA_PARAMETER_SET)
	if err != nil {
		return 0, 0, nil, err
	}
	if !ok {
		return 0, 0, nil, ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "CKA_PARAMETER_SET is required")
	}
	c := l.caps()
	kind := map[ck.MechType]mech.KeyKind{ck.CKM_ML_DSA_KEY_PAIR_GEN: mech.KindMLDSA, ck.CKM_ML_KEM_KEY_PAIR_GEN: mech.KindMLKEM}[m]
	if _, hi := c.pqcSizes(kind); hi == 0 {
		return 0, 0, nil, ck.Errorf(ck.CKR_MECHANISM_INVALID, "the TPM has no post-quantum keys of this kind (TPM 2.0 v1.85)")
	}
	if m == ck.CKM_ML_DSA_KEY_PAIR_GEN {
		set, err := mech.MLDSASetOf(ps)
		if err != nil {
			return 0, 0, nil, err
		}
		tps := tpm.MLDSAParams(set.Param)
		pre, err := hashMLDSAChoice(vt)
		if err != nil {
			return 0, 0, nil, err
		}
		if pre != nil {
			if !c.PQC.HasHashMLDSA(tps, pre.TPM) {
				return 0, 0, nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "the TPM has no HashML-DSA keys of %s with %v", set.Name, pre.Hash)
			}
			return ck.CKK_ML_DSA, ps, tpm.HashMLDSAKeyTemplate(tps, pre.TPM), nil
		}
		if !c.PQC.HasMLDSA(tps) {
			return 0, 0, nil, ck.Errorf(ck.CKR_PARAMETER_SET_NOT_SUPPORTED, "the TPM has no ML-DSA parameter set %d", ps)
		}
		return ck.CKK_ML_DSA, ps, tpm.MLDSAKeyTemplate(tps), nil
	}
	set, err := mech.MLKEMSetOf(ps)
	if err != nil || !c.PQC.HasMLKEM(tpm.MLKEMParams(set.Param)) {
		return 0, 0, nil, ck.Errorf(ck.CKR_PARAMETER_SET_NOT_SUPPORTED, "the TPM has no ML-KEM parameter set %d", ps)
	}
	return ck.CKK_ML_KEM, ps, tpm.MLKEMKeyTemplate(tpm.MLKEMParams(set.Param)), nil
}

// generatePQCKeyPair is C_GenerateKeyPair for ML-DSA and ML-KEM: as for
// RSA and EC keys (GenerateKeyPair), made by TPM2_Create with the PQC
// template. A PCR policy is not offered for them (yet): refused.
func (l *Library) generatePQCKeyPair(h uint64, s *Session, m Mechanism, pt, vt Template) (uint64, uint64, error) {
	kt, ps, template, err := l.pqcKeyPairSpec(m.Type, pt, vt)
	if err != nil {
		return 0, 0, err
	}
	if _, ok := vt[CKA_TPM11_PCR_POLICY]; ok {
		return 0, 0, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "no PCR policy on ML-DSA or ML-KEM keys")
	}
	pub, priv, err := keyPairAttrs(opGenerate, kt, pt, vt, buildOpts{}, s.tok.keyDefaults())
	if err != nil {
		return 0, 0, err
	}
	pub.SetULong(ck.CKA_PARAMETER_SET, ps)
	priv.SetULong(ck.CKA_PARAMETER_SET, ps)
	if err := s.mayMake(pub, priv); err != nil {
		return 0, 0, err
	}
	storage, err := s.tok.parentFor(priv.Bool(ck.CKA_PRIVATE))
	storage, err = portableParent(vt, priv, storage, err) // keyfile.go
	if err != nil {
		return 0, 0, err
	}
	var persist *persistSpec[*tpm.Loadable]
	if pub.Bool(ck.CKA_TOKEN) && priv.Bool(ck.CKA_TOKEN) {
		persist = &persistSpec[*tpm.Loadable]{save: func(v *tpm.Loadable, err error) (asyncRecord, error) {
			if err != nil {
				return asyncRecord{}, err
			}
			pubH, privH, err := s.tok.addKeyPair(v, kt, nil, pub, priv, keyOrigin{local: true, mech: m.Type, alwaysSensitive: true, neverExtractable: true}, 0)
			if err != nil {
				return asyncRecord{}, err
			}
			return asyncRecord{UIDs: s.tok.uids(pubH, privH)}, nil
		}}
	}
	res, err := start(l, s, "C_GenerateKeyPair", ck.CKF_GENERATE_KEY_PAIR, func(e *tpm.Engine) (*tpm.Loadable, error) {
		p, k, err := e.CreatePQC(storage, template, nil)
		if err != nil {
			return nil, err
		}
		return &tpm.Loadable{Parent: storage, Public: p, Private: k}, nil
	}, func(v *tpm.Loadable, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		pubH, privH, err := s.tok.addKeyPair(v, kt, nil, pub, priv, keyOrigin{local: true, mech: m.Type, alwaysSensitive: true, neverExtractable: true}, h)
		return Result{Objects: []uint64{pubH, privH}}, err
	}, persist, Dest{})
	if err != nil {
		return 0, 0, err
	}
	return res.Objects[0], res.Objects[1], nil
}

// pqcPublicAttrs is publicAttrs for an ML-DSA or ML-KEM key: CKA_VALUE of
// the public half, the SubjectPublicKeyInfo of both.
func pqcPublicAttrs(key *tpm.Loadable, kt ck.KeyType, pub Attrs) ([]byte, error) {
	p, err := tpm.PublicOf(key.Public)
	if err != nil {
		return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
	}
	ps := ck.ULong(p.ParameterSet)
	var spki []byte
	switch {
	case kt == ck.CKK_ML_DSA && (p.Type == tpm.AlgMLDSA || p.Type == tpm.AlgHashMLDSA):
		set, err := mech.MLDSASetOf(ps)
		if err != nil {
			return nil, err
		}
		if err := set.CheckPublic(p.Unique); err != nil {
			return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
		}
		spki, err = mech.PQCSubjectPublicKeyInfo(set.OID, p.Unique)
		if err != nil {
			return nil, ck.Wrap(ck.CKR_GENERAL_ERROR, err)
		}
	case kt == ck.CKK_ML_KEM && p.Type == tpm.AlgMLKEM:
		set, err := mech.MLKEMSetOf(ps)
		if err != nil {
			return nil, err
		}
		if err := set.CheckPublic(p.Unique); err != nil {
			return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
		}
		spki, err = mech.PQCSubjectPublicKeyInfo(set.OID, p.Unique)
		if err != nil {
			return nil, ck.Wrap(ck.CKR_GENERAL_ERROR, err)
		}
	default:
		return nil, ck.Errorf(ck.CKR_DEVICE_ERROR, "the TPM made a key of type %#x", uint16(p.Type))
	}
	pub[ck.CKA_VALUE] = slices.Clone(p.Unique)
	return spki, nil
}

// pqcSizes is caps.sizes for the PQC key kinds: the public key sizes (in
// bytes, as CK_MECHANISM_INFO has them) of the parameter sets the TPM has.
func (c caps) pqcSizes(kind mech.KeyKind) (uint64, uint64) {
	var n []int
	switch kind {
	case mech.KindMLDSA:
		for _, s := range mech.MLDSASets {
			if c.PQC.HasMLDSA(tpm.MLDSAParams(s.Param)) {
				n = append(n, s.PubLen)
			}
		}
	case mech.KindMLKEM:
		for _, s := range mech.MLKEMSets {
			if c.PQC.HasMLKEM(tpm.MLKEMParams(s.Param)) {
				n = append(n, s.PubLen)
			}
		}
	default:
		pre, ok := mech.HashMLDSAKinds[kind]
		if !ok {
			break
		}
		for _, s := range mech.MLDSASets {
			for _, h := range []*mech.Hash{mech.HashOf(ck.CKM_SHA256), mech.HashOf(ck.CKM_SHA384)} {
				if (pre == nil || pre == h) && c.PQC.HasHashMLDSA(tpm.MLDSAParams(s.Param), h.TPM) {
					n = append(n, s.PubLen)
				}
			}
		}
	}
	if len(n) == 0 {
		return 0, 0
	}
	return uint64(slices.Min(n)), uint64(slices.Max(n))
}

// mlkemKEM is CKM_ML_KEM (ml-kem.md): encapsulation to the public key in
// software, decapsulation in the TPM; the secret is always 32 bytes.
var mlkemKEM = kem{
	keyType: ck.CKK_ML_KEM,
	ctLen: func(pub any) int {
		if p, ok := pub.(*mech.PQCPublic); ok {
			if s := mech.MLKEMSets[p.ParamSet]; s != nil {
				return s.CtLen
			}
		}
		return 0
	},
	defaultLen:  func(any) int { return mech.MLKEMSharedSecretLen },
	encapsulate: mlkemEncapsulate,
	decapsulate: mlkemDecapsulate,
}

func mlkemSet(pub any) (*mech.MLKEMSet, []byte, error) {
	p, ok := pub.(*mech.PQCPublic)
	if !ok || p.KeyType != ck.CKK_ML_KEM {
		return nil, nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	s, err := mech.MLKEMSetOf(p.ParamSet)
	return s, p.Value, err
}

func mlkemParams(m Mechanism, n int) error {
	if b, ok := m.Param.(mech.Bytes); m.Param != nil && !(ok && len(b) == 0) {
		return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_ML_KEM takes no parameter")
	}
	if n != mech.MLKEMSharedSecretLen {
		return ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "an ML-KEM secret is %d bytes, CKA_VALUE_LEN %d", mech.MLKEMSharedSecretLen, n)
	}
	return nil
}

func mlkemEncapsulate(m Mechanism, pub any, n int) ([]byte, []byte, error) {
	if err := mlkemParams(m, n); err != nil {
		return nil, nil, err
	}
	s, ek, err := mlkemSet(pub)
	if err != nil {
		return nil, nil, err
	}
	return s.Encapsulate(ek)
}

// mlkemDecapsulate is TPM2_Decapsulate with the key in the TPM; the
// secret goes straight into the new key (into the TPM when sensitive).
func mlkemDecapsulate(l *Library, s *Session, m Mechanism, o *Object, ct []byte, tmpl []Attr) (uint64, error) {
	// The parameter set from the key's attribute (set by the token when
	// the TPM made the key): parsing the public key checks it by an
	// encapsulation, which cost a third of the call.
	ps, _ := o.Attrs.ULong(ck.CKA_PARAMETER_SET)
	set, err := mech.MLKEMSetOf(ps)
	if err != nil {
		return 0, ck.Wrap(ck.CKR_KEY_TYPE_INCONSISTENT, err)
	}
	t, n, err := kemTemplate(tmpl, func() int { return mech.MLKEMSharedSecretLen })
	if err != nil {
		return 0, err
	}
	if err := mlkemParams(m, n); err != nil {
		return 0, err
	}
	if len(ct) != set.CtLen {
		return 0, ck.Errorf(ck.CKR_WRAPPED_KEY_LEN_RANGE, "an %s ciphertext is %d bytes, not %d", set.Name, set.CtLen, len(ct))
	}
	if err := s.tok.usable(o); err != nil {
		return 0, err
	}
	// One TPM job: TPM2_Decapsulate and TPM2_Create of the new key, both
	// over the session the Engine keeps (2 TPM commands). The secret
	// crosses the bus encrypted both ways and lives in this process only
	// between the two commands (secretJob wipes it once the TPM has it;
	// a readable key keeps it as CKA_VALUE, as it must). docs/pqc.md says
	// why not later, on first use.
	ss := syncView(s) // C_DecapsulateKey never pends
	a, kt, err := importedSecretAttrs(ss, t, opUnwrap)
	if err != nil {
		return 0, err
	}
	j, err := l.newSecretJob(ss, a, kt, n, nil, pqcCallJob(o.key, mech.MLKEMDecapCall{Ciphertext: ct}))
	if err != nil {
		return 0, err
	}
	j.kept = true
	h, err := l.startSecret(ss, "C_DecapsulateKey", 0, a, n, j)
	return h, keyAuthError(err)
}

// PQCKeyTypes are the ML-DSA and ML-KEM parameter sets this TPM makes, as
// the tpm11 command names them ("ml-dsa-65", "ml-kem-768"), with their
// CKA_PARAMETER_SET values.
func (d Diagnostics) PQCKeyTypes() map[string]ck.ULong {
	out := map[string]ck.ULong{}
	for p, s := range mech.MLDSASets {
		if d.Caps.PQC.HasMLDSA(tpm.MLDSAParams(p)) {
			out[strings.ToLower(s.Name)] = p
		}
	}
	for p, s := range mech.MLKEMSets {
		if d.Caps.PQC.HasMLKEM(tpm.MLKEMParams(p)) {
			out[strings.ToLower(s.Name)] = p
		}
	}
	return out
}

// completePQCPublicKey is completePublicKey for an ML-DSA or ML-KEM public
// key given to C_CreateObject: CKA_VALUE must be a public key of its
// CKA_PARAMETER_SET (one the token knows, TPM or not: verification and
// encapsulation are in software).
func completePQCPublicKey(a Attrs, kt ck.KeyType) error {
	ps, _ := a.ULong(ck.CKA_PARAMETER_SET)
	v := a[ck.CKA_VALUE]
	var oid []int
	if kt == ck.CKK_ML_DSA {
		set, err := mech.MLDSASetOf(ps)
		if err != nil {
			return err
		}
		if err := set.CheckPublic(v); err != nil {
			return err
		}
		oid = set.OID
	} else {
		set, err := mech.MLKEMSetOf(ps)
		if err != nil {
			return err
		}
		if err := set.CheckPublic(v); err != nil {
			return err
		}
		oid = set.OID
	}
	spki, err := mech.PQCSubjectPublicKeyInfo(oid, v)
	if err != nil {
		return ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
	}
	a[ck.CKA_PUBLIC_KEY_INFO] = spki
	a.SetBool(ck.CKA_LOCAL, false)
	return nil
}

// keptTemplates are the templates of keys made by tpm.CreateKept (the
// secret of C_DecapsulateKey), marshalled once per kind: go-tpm's
// reflection cost more than the rest of the call. A kind is its key
// type, length and name algorithm, which are all secretSpec and
// secretJob vary.
var keptTemplates sync.Map // keptKind -> *tpm2.TPM2BPublic

type keptKind struct {
	kt      ck.KeyType
	n       int
	nameAlg tpm2.TPMAlgID
}

func keptTemplate(kt ck.KeyType, n int, t tpm2.TPMTPublic) *tpm2.TPM2BPublic {
	k := keptKind{kt, n, t.NameAlg}
	if v, ok := keptTemplates.Load(k); ok {
		return v.(*tpm2.TPM2BPublic)
	}
	p := tpm2.New2B(t)
	p.Bytes() // marshalled now, once
	v, _ := keptTemplates.LoadOrStore(k, &p)
	return v.(*tpm2.TPM2BPublic)
}

// hashMLDSAChoice is the pre-hash an ML-DSA key is made for: a TPM's
// HashML-DSA key is bound to one hash and makes no pure ML-DSA signature
// (docs/pqc.md), so the private template's CKA_ALLOWED_MECHANISMS decides.
// Naming CKM_HASH_ML_DSA_<hash> of one hash (CKM_HASH_ML_DSA beside it
// or not) and no CKM_ML_DSA makes a HashML-DSA key; naming none of them
// (or no list) a pure one; anything the one key cannot do all of
// (CKM_ML_DSA with a HashML-DSA mechanism, two hashes, CKM_HASH_ML_DSA
// without its hash) is CKR_TEMPLATE_INCONSISTENT.
func hashMLDSAChoice(vt Template) (*mech.Hash, error) {
	list, ok := vt[ck.CKA_ALLOWED_MECHANISMS]
	if !ok {
		return nil, nil
	}
	if len(list)%8 != 0 {
		return nil, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_ALLOWED_MECHANISMS of %d bytes", len(list))
	}
	var pre *mech.Hash
	pure, bare := false, false
	for i := 0; i < len(list); i += 8 {
		m := ck.MechType(binary.NativeEndian.Uint64(list[i:]))
		switch h := mech.HashMLDSAPreHash(m); {
		case m == ck.CKM_ML_DSA:
			pure = true
		case m == ck.CKM_HASH_ML_DSA:
			bare = true
		case h != nil:
			if pre != nil && pre != h {
				return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "a HashML-DSA key in the TPM is bound to one hash: CKA_ALLOWED_MECHANISMS names two")
			}
			pre = h
		}
	}
	switch {
	case pure && (pre != nil || bare):
		return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "an ML-DSA key in the TPM does either CKM_ML_DSA or HashML-DSA, not both")
	case bare && pre == nil:
		return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_ALLOWED_MECHANISMS names CKM_HASH_ML_DSA without a CKM_HASH_ML_DSA_<hash> to bind the key to")
	}
	return pre, nil
}

// preHashOf is the hash a HashML-DSA key in the TPM is bound to (nil for
// a pure ML-DSA key): the key's public area says it (TPMS_HASH_MLDSA_PARMS).
func preHashOf(key *tpm.Loadable) *mech.Hash {
	b := key.Public.Bytes()
	if len(b) < 2 || tpm2.TPMAlgID(binary.BigEndian.Uint16(b)) != tpm.AlgHashMLDSA {
		return nil
	}
	p, err := tpm.PublicOf(key.Public)
	if err != nil {
		return nil
	}
	for _, h := range mech.Hashes {
		if h.TPM == p.HashAlg {
			return h
		}
	}
	return nil
}
