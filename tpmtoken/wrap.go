package tpmtoken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Key wrapping. C_UnwrapKey is how keys arrive from a KMS or an HSM
// backup: the wrapped key is opened with a key in the TPM (an AES key with
// RFC 3394/5649 key wrap, each block done by the TPM; or an RSA private key
// with PKCS#1 v1.5 or OAEP, raw RSA in the TPM) and goes straight into the
// TPM (a secret key, or a PKCS#8 private key through TPM2_Import): its
// value is never written anywhere in clear and is wiped from memory.
//
// C_WrapKey exports only keys made CKA_EXTRACTABLE whose value the token
// holds: readable secret keys (CKA_SENSITIVE false), which live as session
// objects. Keys generated in or imported into the TPM are fixedTPM objects:
// nothing can take them out, so they are CKR_KEY_UNEXTRACTABLE (or, if
// made extractable but sensitive, CKR_KEY_NOT_WRAPPABLE).

// UnwrapKey is C_UnwrapKey.
func (l *Library) UnwrapKey(h uint64, m Mechanism, unwrapper uint64, wrapped []byte, tmpl []Attr) (uint64, error) {
	s, uk, t, class, err := l.unwrapTarget(h, unwrapper, tmpl)
	if err != nil {
		return 0, err
	}
	plain, err := l.unwrapValue(s, m, uk, wrapped)
	if err != nil {
		return 0, err
	}
	defer clear(plain)
	return l.unwrapped(s, t, class, plain)
}

// unwrapTarget resolves an unwrap's session, unwrapping key and template.
func (l *Library) unwrapTarget(h, unwrapper uint64, tmpl []Attr) (*Session, *Object, Template, ck.ObjectClass, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	uk, err := s.tok.object(unwrapper)
	if err != nil {
		return nil, nil, nil, 0, ck.E(ck.CKR_UNWRAPPING_KEY_HANDLE_INVALID)
	}
	if tmpl, err = withKeyTemplate(uk, ck.CKA_UNWRAP_TEMPLATE, tmpl); err != nil {
		return nil, nil, nil, 0, err
	}
	t, class, err := classTemplate(tmpl)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	return s, uk, t, class, nil
}

// unwrapped makes the object of class an unwrap's value plain becomes
// (the caller wipes plain).
func (l *Library) unwrapped(s *Session, t Template, class ck.ObjectClass, plain []byte) (uint64, error) {
	switch class {
	case ck.CKO_SECRET_KEY:
		if n, ok, _ := t.ULong(ck.CKA_VALUE_LEN); ok {
			if int(n) > len(plain) {
				return 0, ck.E(ck.CKR_TEMPLATE_INCONSISTENT)
			}
			plain = plain[:n] // a mechanism that pads (RSA X.509) is trimmed by the template
			delete(t, ck.CKA_VALUE_LEN)
		}
		t[ck.CKA_VALUE] = plain
		return l.importSecretKey(s, t, opUnwrap)
	case ck.CKO_PRIVATE_KEY:
		if err := pkcs8Template(t, plain); err != nil {
			return 0, err
		}
		defer clearKeyMaterial(t)
		return l.importPrivateKey(s, t, opUnwrap)
	}
	return 0, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "cannot unwrap objects of class 0x%x", class)
}

// unwrapValue opens wrapped with key uk in the TPM.
func (l *Library) unwrapValue(s *Session, m Mechanism, uk *Object, wrapped []byte) ([]byte, error) {
	if err := unwrapperUsable(s, m, uk); err != nil {
		return nil, err
	}
	key := uk.key
	switch {
	case mech.IsKeyWrap(m.Type):
		if uk.keyType() != ck.CKK_AES || key == nil {
			return nil, ck.E(ck.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)
		}
		if !isEmptyParam(m.Param) {
			return nil, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
		}
		v, err := do(l, s.Handle, func(e *tpm.Engine) ([]byte, error) {
			return mech.KeyUnwrap(m.Type, tpmBlock(e, key), wrapped)
		})
		return v, keyAuthError(err)
	case m.Type == ck.CKM_RSA_PKCS || m.Type == ck.CKM_RSA_PKCS_OAEP:
		if uk.keyType() != ck.CKK_RSA || uk.class() != ck.CKO_PRIVATE_KEY || key == nil {
			return nil, ck.E(ck.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)
		}
		c, err := mech.NewRSACipher(m)
		if err != nil {
			return nil, err
		}
		pk, err := uk.publicKey()
		if err != nil {
			return nil, err
		}
		pub := pk.(*rsa.PublicKey)
		if err := mech.CheckCiphertext(pub, wrapped); err != nil {
			return nil, ck.Wrap(ck.CKR_WRAPPED_KEY_LEN_RANGE, err)
		}
		em, err := do(l, s.Handle, func(e *tpm.Engine) ([]byte, error) { return e.RSADecryptSecret(key, wrapped) })
		if err != nil {
			return nil, keyAuthError(err)
		}
		block := mech.LeftPad(em, pub.Size()) // a copy when em is short
		v, err := c.Unpad(block)
		v = bytes.Clone(v) // v may be a part of em or block, wiped now
		clear(em)
		clear(block)
		if err != nil {
			return nil, ck.Wrap(ck.CKR_WRAPPED_KEY_INVALID, err)
		}
		return v, nil
	}
	return nil, ck.E(ck.CKR_MECHANISM_INVALID)
}

// unwrapperUsable checks that uk may unwrap with m now.
func unwrapperUsable(s *Session, m Mechanism, uk *Object) error {
	if !uk.allows(m.Type) {
		return ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if !uk.Attrs.Bool(ck.CKA_UNWRAP) {
		return ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	return s.tok.usable(uk)
}

// tpmBlock is AES-ECB of one block with a TPM-resident key.
func tpmBlock(e *tpm.Engine, key *tpm.Loadable) mech.Block {
	return func(in []byte, decrypt bool) ([]byte, error) {
		out, _, err := e.EncryptDecrypt(key, decrypt, tpm2.TPMAlgECB, nil, in)
		return out, err
	}
}

// pkcs8Template adds the key material of a PKCS#8 private key to t.
func pkcs8Template(t Template, der []byte) error {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return ck.Wrap(ck.CKR_WRAPPED_KEY_INVALID, err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		t[ck.CKA_KEY_TYPE] = ulongBytes(uint64(ck.CKK_RSA))
		t[ck.CKA_MODULUS], t[ck.CKA_PUBLIC_EXPONENT] = k.N.Bytes(), big.NewInt(int64(k.E)).Bytes()
		t[ck.CKA_PRIVATE_EXPONENT], t[ck.CKA_PRIME_1], t[ck.CKA_PRIME_2] = k.D.Bytes(), k.Primes[0].Bytes(), k.Primes[1].Bytes()
	case *ecdsa.PrivateKey:
		c := mech.CurveOfGo(k.Curve)
		if c == nil {
			return ck.E(ck.CKR_CURVE_NOT_SUPPORTED)
		}
		t[ck.CKA_KEY_TYPE] = ulongBytes(uint64(ck.CKK_EC))
		t[ck.CKA_EC_PARAMS], t[ck.CKA_VALUE] = c.Params, k.D.FillBytes(make([]byte, c.Bytes))
	default:
		return ck.Errorf(ck.CKR_WRAPPED_KEY_INVALID, "a %T cannot go into a TPM", k)
	}
	return nil
}

// clearKeyMaterial wipes the private key material a template held: the
// attributes its schema hides (schema_key.go). The import has its own
// copies (big integers, the TPM's sensitive area).
func clearKeyMaterial(t Template) {
	kt, _, _ := t.ULong(ck.CKA_KEY_TYPE)
	sc := schemaOf(ck.CKO_PRIVATE_KEY, kt)
	for typ, v := range t {
		if sc != nil && sc.defs[typ] != nil && sc.defs[typ].hidden {
			clear(v)
		}
	}
}

// wrapSource resolves C_WrapKey's keys and the value to wrap.
func (l *Library) wrapSource(h uint64, m Mechanism, wrapper, key uint64) (*Session, *Object, []byte, error) {
	s, wk, value, err := l.wrapKeys(h, m, wrapper, key)
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case mech.IsKeyWrap(m.Type):
		if wk.keyType() != ck.CKK_AES || wk.key == nil {
			return nil, nil, nil, ck.E(ck.CKR_WRAPPING_KEY_TYPE_INCONSISTENT)
		}
		if !isEmptyParam(m.Param) {
			return nil, nil, nil, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
		}
		if mech.WrappedLen(m.Type, len(value)) == 0 {
			return nil, nil, nil, ck.E(ck.CKR_KEY_SIZE_RANGE)
		}
	case m.Type == ck.CKM_RSA_PKCS || m.Type == ck.CKM_RSA_PKCS_OAEP:
		if wk.keyType() != ck.CKK_RSA || wk.class() != ck.CKO_PUBLIC_KEY {
			return nil, nil, nil, ck.E(ck.CKR_WRAPPING_KEY_TYPE_INCONSISTENT)
		}
	default:
		return nil, nil, nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	return s, wk, value, nil
}

// wrapKeys resolves a wrap's keys and the value to wrap: the checks
// every wrapping mechanism shares.
func (l *Library) wrapKeys(h uint64, m Mechanism, wrapper, key uint64) (*Session, *Object, []byte, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, nil, nil, err
	}
	wk, err := s.tok.object(wrapper)
	if err != nil {
		return nil, nil, nil, ck.E(ck.CKR_WRAPPING_KEY_HANDLE_INVALID)
	}
	k, err := s.tok.object(key)
	if err != nil {
		return nil, nil, nil, ck.E(ck.CKR_KEY_HANDLE_INVALID)
	}
	if !wk.allows(m.Type) {
		return nil, nil, nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if !wk.Attrs.Bool(ck.CKA_WRAP) {
		return nil, nil, nil, ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	if !k.Attrs.Bool(ck.CKA_EXTRACTABLE) {
		return nil, nil, nil, ck.E(ck.CKR_KEY_UNEXTRACTABLE)
	}
	if ok, err := matchesKeyTemplate(wk, ck.CKA_WRAP_TEMPLATE, k.Attrs); err != nil {
		return nil, nil, nil, err
	} else if !ok {
		return nil, nil, nil, ck.Errorf(ck.CKR_KEY_HANDLE_INVALID, "the key does not match the wrapping key's CKA_WRAP_TEMPLATE")
	}
	value, held := k.Attrs[ck.CKA_VALUE]
	if k.class() != ck.CKO_SECRET_KEY || !held {
		return nil, nil, nil, ck.Errorf(ck.CKR_KEY_NOT_WRAPPABLE, "the key's value is only in the TPM")
	}
	return s, wk, value, nil
}

// WrapKeyLen is the length C_WrapKey's output will have.
func (l *Library) WrapKeyLen(h uint64, m Mechanism, wrapper, key uint64) (int, error) {
	_, wk, value, err := l.wrapSource(h, m, wrapper, key)
	if err != nil {
		return 0, err
	}
	if mech.IsKeyWrap(m.Type) {
		return mech.WrappedLen(m.Type, len(value)), nil
	}
	pk, err := wk.publicKey()
	if err != nil {
		return 0, err
	}
	return pk.(*rsa.PublicKey).Size(), nil
}

// WrapKey is C_WrapKey.
func (l *Library) WrapKey(h uint64, m Mechanism, wrapper, key uint64) ([]byte, error) {
	s, wk, value, err := l.wrapSource(h, m, wrapper, key)
	if err != nil {
		return nil, err
	}
	if mech.IsKeyWrap(m.Type) {
		if err := s.tok.usable(wk); err != nil {
			return nil, err
		}
		k := wk.key
		v, err := do(l, s.Handle, func(e *tpm.Engine) ([]byte, error) { return mech.KeyWrap(m.Type, tpmBlock(e, k), value) })
		return v, keyAuthError(err)
	}
	c, err := mech.NewRSACipher(m)
	if err != nil {
		return nil, err
	}
	pk, err := wk.publicKey()
	if err != nil {
		return nil, err
	}
	return c.Encrypt(pk.(*rsa.PublicKey), value)
}
