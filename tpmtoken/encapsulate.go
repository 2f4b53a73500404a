package tpmtoken

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Key encapsulation (PKCS#11 3.2 §5.18). C_EncapsulateKey is a public-key
// operation, in software: a fresh secret from crypto/rand, its ciphertext
// under the public key, and the secret becomes a new key object with the
// template's attributes (into the TPM when sensitive) through the object
// creation C_UnwrapKey uses. C_DecapsulateKey is the private key in the
// TPM: TPM2_RSA_Decrypt (raw, the padding removed here) or TPM2_ECDH_ZGen,
// the result going straight into a new key object.
//
// Each is one call: no operation spans calls, so nothing enters the
// session's operation table. The ciphertext's length is a property of the
// key, checked against the caller's capacity before anything is made.
// Neither is among the functions that may pend (C_AsyncComplete has no
// ciphertext to hand back): on an async session they run to the end (see
// syncView); C_DecapsulateKey with ECDH is C_DeriveKey and pends as it.
//
// The mechanisms are the table kems: another KEM (ML-KEM) is one entry.
// The key's usage attribute is CKA_ENCAPSULATE / CKA_DECAPSULATE, which
// every key made now has (schema_key.go: by default the equivalent
// function's usage, as the spec makes decapsulation "exactly" C_UnwrapKey
// for RSA and C_DeriveKey for ECDH); a key stored before it existed is
// judged by those: CKA_ENCRYPT or CKA_WRAP / CKA_UNWRAP for RSA,
// CKA_DERIVE for EC.

// kem is one key-encapsulation mechanism.
type kem struct {
	keyType ck.KeyType
	// use is the usage attributes that allow encapsulation (public key)
	// and decapsulation (private key) where CKA_ENCAPSULATE/DECAPSULATE
	// is absent.
	encapUse, decapUse []ck.AttributeType
	// ctLen is the ciphertext's length for public key pub.
	ctLen func(pub any) int
	// defaultLen is the secret's length for a generic secret key whose
	// template has no CKA_VALUE_LEN.
	defaultLen func(pub any) int
	// encapsulate makes an n-byte secret and its ciphertext under pub.
	encapsulate func(m Mechanism, pub any, n int) (secret, ct []byte, err error)
	// decapsulate makes the key of template tmpl from ct with private key o.
	decapsulate func(l *Library, s *Session, m Mechanism, o *Object, ct []byte, tmpl []Attr) (uint64, error)
}

var rsaKEM = kem{
	keyType:     ck.CKK_RSA,
	encapUse:    rsaEncapUse,
	decapUse:    rsaDecapUse,
	ctLen:       func(pub any) int { return pub.(*rsa.PublicKey).Size() },
	defaultLen:  func(any) int { return 32 },
	encapsulate: rsaEncapsulate,
	decapsulate: rsaDecapsulate,
}

var ecdhKEM = kem{
	keyType:     ck.CKK_EC,
	encapUse:    ecKEMUse,
	decapUse:    ecKEMUse,
	ctLen:       func(pub any) int { return len(pub.(*ecdh.PublicKey).Bytes()) },
	defaultLen:  func(pub any) int { return (len(pub.(*ecdh.PublicKey).Bytes()) - 1) / 2 },
	encapsulate: ecdhEncapsulate,
	decapsulate: ecdhDecapsulate,
}

var kems = map[ck.MechType]kem{
	ck.CKM_RSA_PKCS:              rsaKEM,
	ck.CKM_RSA_PKCS_OAEP:         rsaKEM,
	ck.CKM_RSA_X_509:             rsaKEM,
	ck.CKM_ECDH1_DERIVE:          ecdhKEM,
	ck.CKM_ECDH1_COFACTOR_DERIVE: ecdhKEM,
}

// plainECDH is m as CKM_ECDH1_DERIVE: cofactor ECDH multiplies by the
// curve's cofactor, which is 1 on every curve the token has (NIST P-224 to
// P-521), so the two are one computation.
func plainECDH(m Mechanism) Mechanism {
	m.Type = ck.CKM_ECDH1_DERIVE
	return m
}

// kemAllows says whether key o may be used for usage (CKA_ENCAPSULATE or
// CKA_DECAPSULATE), or, where o has no such attribute, for one of equiv.
func kemAllows(o *Object, usage ck.AttributeType, equiv []ck.AttributeType) bool {
	if _, ok := o.Attrs[usage]; ok {
		return o.Attrs.Bool(usage)
	}
	for _, a := range equiv {
		if o.Attrs.Bool(a) {
			return true
		}
	}
	return false
}

// encapsulation checks mechanism m and public key obj of session h.
func (l *Library) encapsulation(h uint64, m Mechanism, obj uint64) (*Session, *Object, kem, any, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, nil, kem{}, nil, err
	}
	k, ok := kems[m.Type]
	if !ok {
		return nil, nil, kem{}, nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	o, err := s.tok.object(obj)
	if err != nil {
		return nil, nil, kem{}, nil, ck.E(ck.CKR_KEY_HANDLE_INVALID)
	}
	if o.class() != ck.CKO_PUBLIC_KEY || o.keyType() != k.keyType {
		return nil, nil, kem{}, nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if !o.allows(m.Type) {
		return nil, nil, kem{}, nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if !kemAllows(o, ck.CKA_ENCAPSULATE, k.encapUse) {
		return nil, nil, kem{}, nil, ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	pub, err := o.publicKey()
	if err != nil {
		return nil, nil, kem{}, nil, err
	}
	if k.keyType == ck.CKK_EC {
		if pub, err = ecdhPublic(pub); err != nil {
			return nil, nil, kem{}, nil, err
		}
	}
	return s, o, k, pub, nil
}

// EncapsulateKeyLen is the ciphertext length of C_EncapsulateKey with m
// and public key obj (a length query: nothing is made).
func (l *Library) EncapsulateKeyLen(h uint64, m Mechanism, obj uint64) (int, error) {
	_, _, k, pub, err := l.encapsulation(h, m, obj)
	if err != nil {
		return 0, err
	}
	return k.ctLen(pub), nil
}

// EncapsulateKey is C_EncapsulateKey: the ciphertext (at most dst.Cap
// bytes, else CKR_BUFFER_TOO_SMALL and nothing made) and the new key.
func (l *Library) EncapsulateKey(h uint64, m Mechanism, obj uint64, tmpl []Attr, dst Dest) ([]byte, uint64, error) {
	s, o, k, pub, err := l.encapsulation(h, m, obj)
	if err != nil {
		return nil, 0, err
	}
	if n := k.ctLen(pub); dst.Cap < n {
		return nil, 0, ck.TooSmall(n)
	}
	t, n, err := kemTemplate(tmpl, func() int { return k.defaultLen(pub) })
	if err != nil {
		return nil, 0, err
	}
	ss := syncView(s)
	a, kt, err := importedSecretAttrs(ss, t, opUnwrap)
	if err != nil {
		return nil, 0, err
	}
	// The new key as it will be, matched against the public key's
	// CKA_ENCAPSULATE_TEMPLATE before anything is made.
	a.SetULong(ck.CKA_VALUE_LEN, uint64(n))
	if ok, err := matchesKeyTemplate(o, ck.CKA_ENCAPSULATE_TEMPLATE, a); err != nil {
		return nil, 0, err
	} else if !ok {
		return nil, 0, ck.Errorf(ck.CKR_KEY_HANDLE_INVALID, "the new key does not match the public key's CKA_ENCAPSULATE_TEMPLATE")
	}
	delete(a, ck.CKA_VALUE_LEN)
	secret, ct, err := k.encapsulate(m, pub, n)
	if err != nil {
		return nil, 0, err
	}
	defer clear(secret)
	key, err := l.addSecret(ss, opUnwrap.fn(), 0, a, kt, n, secret, nil)
	if err != nil {
		return nil, 0, err
	}
	return ct, key, nil
}

// DecapsulateKey is C_DecapsulateKey: the key of template tmpl from ct
// with private key obj.
func (l *Library) DecapsulateKey(h uint64, m Mechanism, obj uint64, tmpl []Attr, ct []byte) (uint64, error) {
	s, err := l.session(h)
	if err != nil {
		return 0, err
	}
	k, ok := kems[m.Type]
	if !ok {
		return 0, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	o, err := s.tok.object(obj)
	if err != nil {
		return 0, ck.E(ck.CKR_KEY_HANDLE_INVALID)
	}
	if o.class() != ck.CKO_PRIVATE_KEY || o.keyType() != k.keyType || o.key == nil {
		return 0, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if !o.allows(m.Type) {
		return 0, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if !kemAllows(o, ck.CKA_DECAPSULATE, k.decapUse) {
		return 0, ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	if tmpl, err = withKeyTemplate(o, ck.CKA_DECAPSULATE_TEMPLATE, tmpl); err != nil {
		return 0, err
	}
	return k.decapsulate(l, s, m, o, ct, tmpl)
}

// kemTemplate checks the new key's template (a secret key) and gives its
// length: CKA_VALUE_LEN, or def() for a generic secret without one. The
// length is taken out: the value will say it.
func kemTemplate(tmpl []Attr, def func() int) (Template, int, error) {
	t, class, err := classTemplate(tmpl)
	if err != nil {
		return nil, 0, err
	}
	if class != ck.CKO_SECRET_KEY {
		return nil, 0, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "an encapsulated key is a secret key")
	}
	kt, ok, err := typedULong[ck.KeyType](t, ck.CKA_KEY_TYPE)
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "CKA_KEY_TYPE is required")
	}
	n, hasLen, err := t.ULong(ck.CKA_VALUE_LEN)
	switch {
	case err != nil:
		return nil, 0, err
	case !hasLen && kt == ck.CKK_GENERIC_SECRET:
		n = uint64(def())
	case !hasLen:
		return nil, 0, ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "CKA_VALUE_LEN is required")
	case n == 0 || n > mech.MaxSecretBytes:
		return nil, 0, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN %d", n)
	}
	delete(t, ck.CKA_VALUE_LEN)
	return t, int(n), nil
}

// rsaEncapsulate encrypts a fresh n-byte secret with the mechanism's
// padding (raw for CKM_RSA_X_509: the secret as the low bytes of the block).
func rsaEncapsulate(m Mechanism, pub any, n int) ([]byte, []byte, error) {
	c, err := mech.NewRSACipher(m)
	if err != nil {
		return nil, nil, err
	}
	secret := make([]byte, n)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, ck.Wrap(ck.CKR_FUNCTION_FAILED, err)
	}
	ct, err := c.Encrypt(pub.(*rsa.PublicKey), secret)
	if err != nil {
		clear(secret)
		return nil, nil, ck.Wrap(ck.CKR_TEMPLATE_INCONSISTENT, err) // too long for the key
	}
	return secret, ct, nil
}

// rsaDecapsulate is raw RSA in the TPM, the padding removed here, and the
// value into the new key as C_UnwrapKey's goes: one TPM job, TPM2_RSA_Decrypt
// then TPM2_Create over the salted session the Engine keeps (2 TPM
// commands; the value lives in this process only between the two, and
// crosses the bus encrypted both ways).
func rsaDecapsulate(l *Library, s *Session, m Mechanism, o *Object, ct []byte, tmpl []Attr) (uint64, error) {
	c, err := mech.NewRSACipher(m)
	if err != nil {
		return 0, err
	}
	pk, err := o.publicKey()
	if err != nil {
		return 0, err
	}
	pub := pk.(*rsa.PublicKey)
	t, n, err := kemTemplate(tmpl, func() int { return 32 })
	if err != nil {
		return 0, err
	}
	if err := mech.CheckCiphertext(pub, ct); err != nil {
		return 0, err
	}
	if err := s.tok.usable(o); err != nil {
		return 0, err
	}
	ss := syncView(s) // C_DecapsulateKey never pends
	a, kt, err := importedSecretAttrs(ss, t, opUnwrap)
	if err != nil {
		return 0, err
	}
	key := o.key
	value := func(e *tpm.Engine) ([]byte, error) {
		em, err := e.RSADecryptSecret(key, ct)
		if err != nil {
			return nil, err
		}
		block := mech.LeftPad(em, pub.Size())
		defer clear(block)
		defer clear(em)
		v, err := c.Unpad(block) // v may be a part of block: copied below
		switch {
		case err != nil:
			return nil, ck.Wrap(ck.CKR_ENCRYPTED_DATA_INVALID, err)
		case m.Type == ck.CKM_RSA_X_509 && n <= len(v):
			v = v[len(v)-n:] // the secret is the block's low bytes
		case len(v) != n:
			return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "the secret is %d bytes, CKA_VALUE_LEN %d", len(v), n)
		}
		return bytes.Clone(v), nil
	}
	j, err := l.newSecretJob(ss, a, kt, n, nil, value)
	if err != nil {
		return 0, err
	}
	j.kept = true
	h, err := l.startSecret(ss, "C_DecapsulateKey", 0, a, n, j)
	return h, keyAuthError(err)
}

// syncView is session s as a synchronous one, for the object creation of
// a call that must not pend: the same handle, token and rights, its own
// (unused) operation state.
func syncView(s *Session) *Session {
	return &Session{Handle: s.Handle, slot: s.slot, tok: s.tok, flags: s.flags &^ ck.CKF_ASYNC_SESSION}
}

// ecdhPublic is an EC public key as crypto/ecdh has it.
func ecdhPublic(pub any) (*ecdh.PublicKey, error) {
	type ecdhKey interface {
		ECDH() (*ecdh.PublicKey, error)
	}
	k, ok := pub.(ecdhKey)
	if !ok {
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	e, err := k.ECDH()
	if err != nil {
		return nil, ck.Wrap(ck.CKR_CURVE_NOT_SUPPORTED, err)
	}
	return e, nil
}

// kemECDH1 checks CK_ECDH1_DERIVE_PARAMS for encapsulation: no public
// data (the ciphertext is the ephemeral public key); peer stands in for it.
func kemECDH1(m Mechanism, cv *mech.Curve, peer []byte) (*mech.ECDH1, error) {
	p, ok := m.Param.(mech.ECDH1Params)
	if !ok {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_ECDH1_DERIVE needs CK_ECDH1_DERIVE_PARAMS")
	}
	if len(p.PublicData) != 0 {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "pPublicData must be NULL for encapsulation")
	}
	p.PublicData = peer
	m.Param = p
	return mech.NewECDH1(plainECDH(m), cv)
}

// ecdhEncapsulate makes an ephemeral key pair on the token key's curve:
// its public point is the ciphertext, the KDF of its shared secret with
// the token's key the new key.
func ecdhEncapsulate(m Mechanism, pub any, n int) ([]byte, []byte, error) {
	tp := pub.(*ecdh.PublicKey)
	cv := curveOfECDH(tp.Curve())
	if cv == nil {
		return nil, nil, ck.E(ck.CKR_CURVE_NOT_SUPPORTED)
	}
	dh, err := kemECDH1(m, cv, tp.Bytes())
	if err != nil {
		return nil, nil, err
	}
	if n > dh.MaxLen() {
		return nil, nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN %d", n)
	}
	eph, err := tp.Curve().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, ck.Wrap(ck.CKR_FUNCTION_FAILED, err)
	}
	z, err := eph.ECDH(tp)
	if err != nil {
		return nil, nil, ck.Wrap(ck.CKR_FUNCTION_FAILED, err)
	}
	defer clear(z)
	return dh.Derive(z, n), eph.PublicKey().Bytes(), nil
}

// curveOfECDH is the token's curve of a crypto/ecdh curve.
func curveOfECDH(c ecdh.Curve) *mech.Curve {
	for _, cv := range mech.Curves {
		if cv.ECDH != nil && cv.ECDH == c {
			return cv
		}
	}
	return nil
}

// ecdhDecapsulate is C_DeriveKey with the ciphertext as the other party's
// public value (TPM2_ECDH_ZGen with the token's key, then the KDF); the
// key's usage is CKA_DECAPSULATE, checked by DecapsulateKey.
func ecdhDecapsulate(l *Library, s *Session, m Mechanism, o *Object, ct []byte, tmpl []Attr) (uint64, error) {
	p, ok := m.Param.(mech.ECDH1Params)
	if !ok {
		return 0, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_ECDH1_DERIVE needs CK_ECDH1_DERIVE_PARAMS")
	}
	if len(p.PublicData) != 0 {
		return 0, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "pPublicData must be NULL for decapsulation")
	}
	p.PublicData = ct
	m.Param = p
	return l.ecdhDerive(s, m, o, tmpl)
}
