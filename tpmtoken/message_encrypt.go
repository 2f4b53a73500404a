package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Message-based encryption and decryption (PKCS#11 3.0) with CKM_AES_CCM:
// a context made by C_MessageEncryptInit encrypts any number of messages,
// each with its own CK_CCM_MESSAGE_PARAMS (nonce, generated or given; MAC
// returned in the parameter) and AAD, until C_MessageEncryptFinal. Each
// message is one CCM in the TPM (ccm.go). Only the single-call form
// (C_EncryptMessage, C_DecryptMessage) is offered; C_*MessageBegin and
// C_*MessageNext remain CKR_FUNCTION_NOT_SUPPORTED. A call runs to its end
// even on an async session: its nonce and MAC are written into the
// caller's parameter structure, which a pending result could not reach.

const (
	OpMessageEncrypt OpKind = 10
	OpMessageDecrypt OpKind = 11
)

func init() {
	defineKind(OpMessageEncrypt, "message-encrypt", ck.CKF_MESSAGE_ENCRYPT)
	defineKind(OpMessageDecrypt, "message-decrypt", ck.CKF_MESSAGE_DECRYPT)
}

// messageCipherOp is a message-based CCM context: the key, and the nonce
// counter of CKG_GENERATE_COUNTER. It is lasting (only the final call
// ends it).
type messageCipherOp struct {
	opState
	key     *Object
	decrypt bool
	nonces  mech.NonceGen
}

// outLen: the ciphertext is as long as the plaintext (the MAC goes into
// the parameter), and so the other way.
func (op *messageCipherOp) outLen(_ Part, n int) (int, bool, error) { return n, true, nil }

func (op *messageCipherOp) run(c *opCall) ([]byte, error) {
	if c.part != Single {
		return nil, ck.Errorf(ck.CKR_FUNCTION_NOT_SUPPORTED, "CCM messages are one call each")
	}
	p, ok := c.param.(*mech.CCMMessageParams)
	if !ok {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_AES_CCM messages take CK_CCM_MESSAGE_PARAMS")
	}
	if err := c.s.tok.usable(op.key); err != nil {
		return nil, err
	}
	if err := op.authorized(); err != nil {
		return nil, err
	}
	nonce := p.Nonce
	if !op.decrypt {
		var err error
		if nonce, err = op.nonces.Next(p); err != nil {
			return nil, err
		}
	}
	m, err := mech.NewCCMMessage(p, nonce, c.sig, op.decrypt)
	if err != nil {
		return nil, err
	}
	in := c.in
	if op.decrypt {
		if len(p.MAC) != int(p.MACLen) {
			return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "pMAC of %d bytes, ulMACLen %d", len(p.MAC), p.MACLen)
		}
		in = append(append(make([]byte, 0, len(in)+len(p.MAC)), in...), p.MAC...)
	}
	if _, err := m.OneShotLen(len(in)); err != nil {
		return nil, err
	}
	c.dst.Wait = true
	out, err := ccmRun(c, &cipherOp{key: op.key, decrypt: op.decrypt}, m, in)
	if err != nil || op.decrypt {
		return out, err
	}
	ct, tag := m.Tag(out)
	p.Nonce, p.MAC = nonce, tag
	return ct, nil
}

// MessageEncryptInit / MessageDecryptInit start a CCM context with key.
func (l *Library) MessageEncryptInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpMessageEncrypt, func(s *Session) (operation, error) { return newMessageCipherOp(s, m, key, false) })
}

func (l *Library) MessageDecryptInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpMessageDecrypt, func(s *Session) (operation, error) { return newMessageCipherOp(s, m, key, true) })
}

// newMessageCipherOp checks key for CCM as C_EncryptInit would with
// CKM_AES_ECB (the spec's rule for CCM's key); the mechanism's own
// parameter, if any, is not used (each message brings its own).
func newMessageCipherOp(s *Session, m Mechanism, key uint64, decrypt bool) (*messageCipherOp, error) {
	if m.Type != ck.CKM_AES_CCM {
		return nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	o, err := initKey(s, key)
	if err != nil {
		return nil, err
	}
	if o.class() != ck.CKO_SECRET_KEY || o.keyType() != ck.CKK_AES || o.key == nil {
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	usage := ck.CKA_ENCRYPT
	if decrypt {
		usage = ck.CKA_DECRYPT
	}
	if err := checkKeyMech(m, o, usage); err != nil {
		return nil, err
	}
	if err := s.tok.usable(o); err != nil {
		return nil, err
	}
	op := &messageCipherOp{opState: opState{lasting: true}, key: o, decrypt: decrypt}
	op.needAuth = decrypt && o.Attrs.Bool(ck.CKA_ALWAYS_AUTHENTICATE)
	return op, nil
}

func messageCipherKind(decrypt bool) OpKind {
	if decrypt {
		return OpMessageDecrypt
	}
	return OpMessageEncrypt
}

// EncryptMessage encrypts one message with AAD aad; p receives the nonce
// used and the MAC.
func (l *Library) EncryptMessage(h uint64, p *mech.CCMMessageParams, aad, in []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpMessageEncrypt, part: Single, fn: "C_EncryptMessage", param: p, sig: aad, in: in}, &dst)
}

// DecryptMessage decrypts one message, checking p's MAC over it and aad.
func (l *Library) DecryptMessage(h uint64, p *mech.CCMMessageParams, aad, in []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpMessageDecrypt, part: Single, fn: "C_DecryptMessage", param: p, sig: aad, in: in}, &dst)
}

// MessageCipherFinal ends a message-based encryption or decryption context.
func (l *Library) MessageCipherFinal(h uint64, decrypt bool) error {
	return l.endLasting(h, messageCipherKind(decrypt))
}
