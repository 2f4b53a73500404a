package tpmtoken

import (
	"bytes"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Secret keys (AES, generic secret for HMAC) live in the TPM like private
// keys, and their value is never known outside it unless it is readable:
// not sensitive and extractable (a derived key an application wants to
// read). A readable session key keeps its value in memory as CKA_VALUE too;
// such a value is never written to the store, so no token key is readable.

func readable(a Attrs) bool { return !a.Bool(ck.CKA_SENSITIVE) && a.Bool(ck.CKA_EXTRACTABLE) }

// secretAttrs builds a secret key's attributes from a caller template by
// its schema (schema_key.go) for operation o.
func secretAttrs(tok *Token, tmpl Template, kt ck.KeyType, o op) (Attrs, error) {
	sc, err := schemaFor(ck.CKO_SECRET_KEY, uint64(kt))
	if err != nil {
		return nil, err
	}
	return sc.build(o, tmpl, tok.keyDefaults())
}

// secretSpec checks a secret key's type and length and gives its TPM template.
func (l *Library) secretSpec(kt ck.KeyType, n int) (tpm2.TPMTPublic, error) {
	switch kt {
	case ck.CKK_AES:
		if !slices.Contains(l.caps().AESBits, n*8) {
			return tpm2.TPMTPublic{}, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "this TPM has no %d-byte AES", n)
		}
		return tpm.AESKeyTemplate(n * 8), nil
	case ck.CKK_GENERIC_SECRET:
		if n < 1 || n > mech.MaxSecretBytes {
			return tpm2.TPMTPublic{}, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "a TPM keyed hash holds 1 to %d bytes", mech.MaxSecretBytes)
		}
		return tpm.HMACKeyTemplate(), nil
	}
	return tpm2.TPMTPublic{}, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "secret key type 0x%x", kt)
}

// addSecret makes a secret-key object as one TPM job (which may pend on an
// async session, as fn): the TPM generates the value when neither value
// nor makeValue gives one (and the key is not readable); makeValue, if
// set, computes the value in the job (TPM random bytes, an ECDH result).
//
// The value belongs to the job from here on: addSecret takes its own copy,
// because the caller wipes its buffer when it returns (an unwrapped
// plaintext), which may be before a pending job has run. The job wipes its
// copy once the TPM has it, unless the key is readable: then that copy,
// and no buffer anyone else holds, is the object's CKA_VALUE.
func (l *Library) addSecret(s *Session, fn string, flag ck.Flags, a Attrs, kt ck.KeyType, n int, value []byte, makeValue func(e *tpm.Engine) ([]byte, error)) (uint64, error) {
	j, err := l.newSecretJob(s, a, kt, n, value, makeValue)
	if err != nil {
		return 0, err
	}
	return l.startSecret(s, fn, flag, a, n, j)
}

// newSecretJob checks a secret key's attributes and makes its job (see addSecret).
func (l *Library) newSecretJob(s *Session, a Attrs, kt ck.KeyType, n int, value []byte, makeValue func(e *tpm.Engine) ([]byte, error)) (*secretJob, error) {
	template, err := l.secretSpec(kt, n)
	if err != nil {
		return nil, err
	}
	if readable(a) && a.Bool(ck.CKA_TOKEN) {
		return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "a token key's value is never stored outside the TPM: it cannot be both extractable and not sensitive")
	}
	if err := s.mayMake(a); err != nil {
		return nil, err
	}
	storage, err := s.tok.parentFor(a.Bool(ck.CKA_PRIVATE))
	if err != nil {
		return nil, err
	}
	j := &secretJob{storage: storage, template: template, kt: kt, value: bytes.Clone(value), makeValue: makeValue, keep: readable(a)}
	if value == nil && makeValue == nil {
		j.tpmMade(n)
	}
	return j, nil
}

// startSecret runs secret-key job j as fn and makes the object of what it made.
func (l *Library) startSecret(s *Session, fn string, flag ck.Flags, a Attrs, n int, j *secretJob) (uint64, error) {
	job := j.run
	finish := func(m madeSecret, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		h, err := s.addSecretObject(a, n, m)
		return Result{Objects: []uint64{h}}, err
	}
	res, err := start(l, s, fn, flag, job, finish, nil, Dest{})
	if err != nil {
		return 0, err
	}
	return res.Objects[0], nil
}

// secretJob is the TPM job that makes a secret key: it owns value (see
// addSecret) or computes it with makeValue, or lets the TPM make it.
type secretJob struct {
	storage   *tpm.Loadable
	template  tpm2.TPMTPublic
	kt        ck.KeyType
	value     []byte
	makeValue func(e *tpm.Engine) ([]byte, error)
	keep      bool // the key is readable: its value is kept as CKA_VALUE
	// kept: TPM2_Create goes over the session the Engine keeps (one
	// command): for a value makeValue had the TPM make a moment before.
	kept bool
}

type madeSecret struct {
	key   *tpm.Loadable
	value []byte
}

// tpmMade sets the job for a key of n bytes nobody gave a value for. The
// TPM makes a keyed-hash key as long as its name hash: that hash is chosen
// for the lengths it can make; other lengths, and readable keys (whose
// value must be known), are drawn from its RNG.
func (j *secretJob) tpmMade(n int) {
	alg, ok := map[int]tpm2.TPMAlgID{32: tpm2.TPMAlgSHA256, 48: tpm2.TPMAlgSHA384, 64: tpm2.TPMAlgSHA512}[n]
	switch {
	case j.kt == ck.CKK_GENERIC_SECRET && ok && !j.keep:
		j.template.NameAlg = alg
	case j.kt == ck.CKK_GENERIC_SECRET || j.keep:
		j.makeValue = func(e *tpm.Engine) ([]byte, error) { return e.Random(n) }
	}
}

func (j *secretJob) run(e *tpm.Engine) (madeSecret, error) {
	v, t := j.value, j.template
	if j.makeValue != nil {
		var err error
		if v, err = j.makeValue(e); err != nil {
			return madeSecret{}, err
		}
	}
	if !j.keep {
		defer clear(v) // in the TPM now, and nowhere else
	}
	if v != nil {
		t = tpm.Supplied(t)
		// A keyed-hash key may be at most its name hash's block long.
		if j.kt == ck.CKK_GENERIC_SECRET && len(v) > 64 {
			t.NameAlg = tpm2.TPMAlgSHA512
		}
	}
	create := func() (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) { return e.Create(j.storage, t, nil, v) }
	if j.kept {
		create = func() (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) {
			return e.CreateKept(j.storage, keptTemplate(j.kt, len(v), t), v)
		}
	}
	p, k, err := create()
	if err != nil {
		return madeSecret{}, err
	}
	if !j.keep {
		v = nil
	}
	return madeSecret{&tpm.Loadable{Parent: j.storage, Public: p, Private: k}, v}, nil
}

// addSecretObject makes the object of a secret key the TPM made.
func (s *Session) addSecretObject(a Attrs, n int, m madeSecret) (uint64, error) {
	a.SetULong(ck.CKA_VALUE_LEN, uint64(n))
	if m.value != nil {
		a[ck.CKA_VALUE] = m.value // the job's own copy (see addSecret)
	}
	o := &Object{UID: newUID(), Attrs: a, key: m.key}
	o.key.ID = "key:" + o.UID
	a[ck.CKA_UNIQUE_ID] = []byte(o.UID)
	if !a.Bool(ck.CKA_TOKEN) {
		o.session = s.Handle
	}
	if err := s.tok.add(o); err != nil {
		return 0, err
	}
	return o.Handle, nil
}

// GenerateKey makes an AES or generic secret key in the TPM.
func (l *Library) GenerateKey(h uint64, m Mechanism, tmpl []Attr) (uint64, error) {
	s, err := l.session(h)
	if err != nil {
		return 0, err
	}
	var kt ck.KeyType
	switch m.Type {
	case ck.CKM_AES_KEY_GEN:
		kt = ck.CKK_AES
	case ck.CKM_GENERIC_SECRET_KEY_GEN:
		kt = ck.CKK_GENERIC_SECRET
	default:
		return 0, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if m.Param != nil && !isEmptyParam(m.Param) {
		return 0, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	t, err := NewTemplate(tmpl)
	if err != nil {
		return 0, err
	}
	a, err := secretAttrs(s.tok, t, kt, opGenerate)
	if err != nil {
		return 0, err
	}
	n, _, _ := t.ULong(ck.CKA_VALUE_LEN) // required by the schema
	a.setOrigin(true, m.Type, true, true)
	return l.addSecret(s, "C_GenerateKey", ck.CKF_GENERATE, a, kt, int(min(n, 1<<16)), nil, nil)
}

// importSecretKey is C_CreateObject (or C_UnwrapKey) for a secret key:
// its value is put into the TPM (TPM2_Create with caller data) and kept
// outside only as the TPM-wrapped blob.
func (l *Library) importSecretKey(s *Session, t Template, o op) (uint64, error) {
	a, kt, err := importedSecretAttrs(s, t, o)
	if err != nil {
		return 0, err
	}
	return l.addSecret(s, o.fn(), 0, a, kt, len(t[ck.CKA_VALUE]), t[ck.CKA_VALUE], nil)
}

// importedSecretAttrs are the attributes of a secret key whose value comes
// from outside the token (C_CreateObject, C_UnwrapKey, C_DecapsulateKey).
func importedSecretAttrs(s *Session, t Template, o op) (Attrs, ck.KeyType, error) {
	sc, err := templateSchema(ck.CKO_SECRET_KEY, t)
	if err != nil {
		return nil, 0, err
	}
	if _, ok := t[ck.CKA_VALUE_LEN]; ok && o == opCreate {
		return nil, 0, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN comes from CKA_VALUE")
	}
	a, err := sc.build(o, t, s.tok.keyDefaults())
	if err != nil {
		return nil, 0, err
	}
	a.setOrigin(false, 0, false, false)
	return a, ck.KeyType(sc.sub), nil
}
