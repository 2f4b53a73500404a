package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// C_WrapKeyAuthenticated and C_UnwrapKeyAuthenticated (3.2) with
// CKM_AES_CCM, the key in the TPM (ccm.go). What may be wrapped and how
// an unwrapped key is made are C_WrapKey's and C_UnwrapKey's (wrap.go).
// The mechanism's parameter is the message parameter, CK_CCM_MESSAGE_PARAMS
// (the spec: "the wrapping mechanism with the message params", as
// CK_GCM_MESSAGE_PARAMS is for AES-GCM): the nonce is the caller's or
// generated (CKG_GENERATE, CKG_GENERATE_RANDOM) and returned in pNonce,
// the MAC returned in pMAC; the wrapped key is the CCM ciphertext of the
// key's value alone, authenticated with pAssociatedData. ulDataLen may be
// 0 (the length is the key's, or the wrapped key's). An unwrap whose tag
// fails is CKR_WRAPPED_KEY_INVALID (C_UnwrapKeyAuthenticated's list has
// no CKR_AEAD_DECRYPT_FAILED) and makes no object.

// ccmWrapParams is m's CK_CCM_MESSAGE_PARAMS for n bytes of key value.
// Counter generators are refused: a wrap has no context to keep a
// counter in, so each call would start at zero and reuse its nonce.
func ccmWrapParams(m Mechanism, n int) (*mech.CCMMessageParams, error) {
	if m.Type != ck.CKM_AES_CCM {
		return nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	p, ok := m.Param.(*mech.CCMMessageParams)
	if !ok {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_AES_CCM wraps with CK_CCM_MESSAGE_PARAMS")
	}
	if p.DataLen != 0 && p.DataLen != ck.ULong(n) {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "ulDataLen %d for %d bytes", p.DataLen, n)
	}
	if p.Generator == ck.CKG_GENERATE_COUNTER || p.Generator == ck.CKG_GENERATE_COUNTER_XOR {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "a nonce counter needs a message context")
	}
	return p, nil
}

// authWrapSource resolves C_WrapKeyAuthenticated's keys and value.
func (l *Library) authWrapSource(h uint64, m Mechanism, wrapper, key uint64) (*Session, *Object, []byte, *mech.CCMMessageParams, error) {
	s, wk, value, err := l.wrapKeys(h, m, wrapper, key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	p, err := ccmWrapParams(m, len(value))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if wk.keyType() != ck.CKK_AES || wk.key == nil {
		return nil, nil, nil, nil, ck.E(ck.CKR_WRAPPING_KEY_TYPE_INCONSISTENT)
	}
	return s, wk, value, p, nil
}

// WrapKeyAuthenticatedLen is the length C_WrapKeyAuthenticated's output
// will have: the key's value's (the MAC goes into the parameter).
func (l *Library) WrapKeyAuthenticatedLen(h uint64, m Mechanism, wrapper, key uint64) (int, error) {
	_, _, value, _, err := l.authWrapSource(h, m, wrapper, key)
	return len(value), err
}

// WrapKeyAuthenticated is C_WrapKeyAuthenticated: the ciphertext; the
// nonce used and the MAC are set in m's parameter.
func (l *Library) WrapKeyAuthenticated(h uint64, m Mechanism, wrapper, key uint64, aad []byte) ([]byte, error) {
	s, wk, value, p, err := l.authWrapSource(h, m, wrapper, key)
	if err != nil {
		return nil, err
	}
	if err := s.tok.usable(wk); err != nil {
		return nil, err
	}
	var gen mech.NonceGen
	nonce, err := gen.Next(p)
	if err != nil {
		return nil, err
	}
	c, err := mech.NewCCMMessage(&mech.CCMMessageParams{DataLen: ck.ULong(len(value)), MACLen: p.MACLen}, nonce, aad, false)
	if err != nil {
		return nil, err
	}
	k := wk.key
	ctr, err := do(l, s.Handle, func(e *tpm.Engine) ([]byte, error) {
		ctr, _, err := ccmPasses(e, k, c, false, value)
		return ctr, err
	})
	if err != nil {
		clear(ctr)
		return nil, keyAuthError(err)
	}
	ct, tag := c.Tag(c.Seal(ctr))
	p.Nonce, p.MAC = nonce, tag
	return ct, nil
}

// UnwrapKeyAuthenticated is C_UnwrapKeyAuthenticated: wrapped is the
// ciphertext, m's parameter carries the nonce and the MAC.
func (l *Library) UnwrapKeyAuthenticated(h uint64, m Mechanism, unwrapper uint64, wrapped []byte, tmpl []Attr, aad []byte) (uint64, error) {
	s, uk, t, class, err := l.unwrapTarget(h, unwrapper, tmpl)
	if err != nil {
		return 0, err
	}
	if err := unwrapperUsable(s, m, uk); err != nil {
		return 0, err
	}
	p, err := ccmWrapParams(m, len(wrapped))
	if err != nil {
		return 0, err
	}
	if uk.keyType() != ck.CKK_AES || uk.key == nil {
		return 0, ck.E(ck.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)
	}
	if len(p.MAC) != int(p.MACLen) {
		return 0, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "pMAC of %d bytes, ulMACLen %d", len(p.MAC), p.MACLen)
	}
	if len(wrapped) == 0 {
		return 0, ck.E(ck.CKR_WRAPPED_KEY_LEN_RANGE)
	}
	c, err := mech.NewCCMMessage(&mech.CCMMessageParams{DataLen: ck.ULong(len(wrapped)), MACLen: p.MACLen}, p.Nonce, aad, true)
	if err != nil {
		return 0, err
	}
	in := append(append(make([]byte, 0, len(wrapped)+len(p.MAC)), wrapped...), p.MAC...)
	k := uk.key
	plain, err := do(l, s.Handle, func(e *tpm.Engine) ([]byte, error) {
		ctr, mac, err := ccmPasses(e, k, c, true, in)
		if err != nil {
			clear(ctr)
			return nil, err
		}
		return c.Open(ctr, mac)
	})
	if ck.ToRV(err) == ck.CKR_ENCRYPTED_DATA_INVALID {
		return 0, ck.Wrap(ck.CKR_WRAPPED_KEY_INVALID, err)
	}
	if err != nil {
		return 0, keyAuthError(err)
	}
	defer clear(plain)
	return l.unwrapped(s, t, class, plain)
}
