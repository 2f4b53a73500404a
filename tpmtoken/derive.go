package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// DeriveKey is CKM_ECDH1_DERIVE or CKM_ECDH1_COFACTOR_DERIVE: the TPM
// multiplies the other party's point by the private key (TPM2_ECDH_ZGen),
// the module applies the KDF, and the result becomes a secret key in the
// TPM, per the template. Cofactor ECDH multiplies by the curve's cofactor
// as well, which is 1 on every curve a TPM has (NIST P-224 to P-521): the
// two are one computation (plainECDH).
func (l *Library) DeriveKey(h uint64, m Mechanism, base uint64, tmpl []Attr) (uint64, error) {
	if m.Type != ck.CKM_ECDH1_DERIVE && m.Type != ck.CKM_ECDH1_COFACTOR_DERIVE {
		return 0, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	s, o, err := l.keyOpInit(h, base, -1)
	if err != nil {
		return 0, err
	}
	if o.class() != ck.CKO_PRIVATE_KEY || o.keyType() != ck.CKK_EC || o.key == nil {
		return 0, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if !o.Attrs.Bool(ck.CKA_DERIVE) {
		return 0, ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	if !o.allows(m.Type) {
		return 0, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	tmpl, err = withKeyTemplate(o, ck.CKA_DERIVE_TEMPLATE, tmpl)
	if err != nil {
		return 0, err
	}
	return l.ecdhDerive(s, m, o, tmpl)
}

// ecdhDerive is ECDH with private key o, whose class, usage and allowed
// mechanisms the caller checked (C_DeriveKey, C_DecapsulateKey).
func (l *Library) ecdhDerive(s *Session, m Mechanism, o *Object, tmpl []Attr) (uint64, error) {
	m = plainECDH(m)
	cv := mech.CurveOf(o.Attrs[ck.CKA_EC_PARAMS])
	if cv == nil {
		return 0, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	dh, err := mech.NewECDH1(m, cv)
	if err != nil {
		return 0, err
	}

	a, kt, n, err := derivedAttrs(s.tok, tmpl, cv.Bytes, dh.MaxLen())
	if err != nil {
		return 0, err
	}
	if err := s.tok.usable(o); err != nil {
		return 0, err
	}
	key := o.key
	x, y := dh.PeerXY()
	value := func(e *tpm.Engine) ([]byte, error) {
		z, err := e.ECDH(key, x, y)
		if err != nil {
			return nil, err
		}
		v := dh.Derive(z, int(n)) // a copy (X963KDF never returns a part of z)
		clear(z)                  // the shared secret: only the derived key outlives the job
		return v, nil
	}
	a.setOrigin(false, 0, o.Attrs.Bool(ck.CKA_ALWAYS_SENSITIVE), o.Attrs.Bool(ck.CKA_NEVER_EXTRACTABLE))
	j, err := l.newSecretJob(s, a, kt, int(n), nil, value)
	if err != nil {
		return 0, err
	}
	// TPM2_ECDH_ZGen and TPM2_Create of the new key in one job, both over
	// the salted session the Engine keeps: 2 TPM commands.
	j.kept = true
	return l.startSecret(s, "C_DeriveKey", ck.CKF_DERIVE, a, int(n), j)
}

// derivedAttrs builds a derived key's attributes from tmpl by the secret
// key schema: the class, if given, is CKO_SECRET_KEY; the key type is
// generic by default, when CKA_VALUE_LEN may be left out (the curve's
// size, curveBytes); the length is at most what the KDF makes (maxLen).
func derivedAttrs(tok *Token, tmpl []Attr, curveBytes, maxLen int) (Attrs, ck.KeyType, uint64, error) {
	t, err := NewTemplate(tmpl)
	if err != nil {
		return nil, 0, 0, err
	}
	if class, ok, err := typedULong[ck.ObjectClass](t, ck.CKA_CLASS); err != nil || (ok && class != ck.CKO_SECRET_KEY) {
		return nil, 0, 0, ck.E(ck.CKR_TEMPLATE_INCONSISTENT)
	}
	kt, ok, err := typedULong[ck.KeyType](t, ck.CKA_KEY_TYPE)
	if err != nil {
		return nil, 0, 0, err
	}
	if !ok {
		kt = ck.CKK_GENERIC_SECRET
	}
	n, hasLen, err := t.ULong(ck.CKA_VALUE_LEN)
	if err != nil {
		return nil, 0, 0, err
	}
	switch {
	case !hasLen && kt == ck.CKK_GENERIC_SECRET:
		n = uint64(curveBytes)
	case !hasLen:
		return nil, 0, 0, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	case n == 0 || n > uint64(maxLen):
		return nil, 0, 0, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN %d", n)
	}
	a, err := secretAttrs(tok, t, kt, opDerive)
	return a, kt, n, err
}
