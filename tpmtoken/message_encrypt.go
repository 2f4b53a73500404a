package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Message-based encryption and decryption (PKCS#11 3.0) with CKM_AES_CCM:
// a context made by C_MessageEncryptInit encrypts any number of messages,
// each with its own CK_CCM_MESSAGE_PARAMS (nonce, generated or given; MAC
// returned in the parameter) and AAD, until C_MessageEncryptFinal. Each
// message is one CCM in the TPM (ccm.go), in one call (C_EncryptMessage)
// or in parts (C_EncryptMessageBegin with the AAD, C_EncryptMessageNext;
// CCM's length is in the parameter, so the parts are gathered and the
// last one returns all the output, as a decryption must). A call runs to
// its end even on an async session: its nonce and MAC are written into
// the caller's parameter structure, which a pending result could not
// reach.

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
	cur     *mech.CCM // the message begun in parts
}

// outLen: the ciphertext is as long as the plaintext (the MAC goes into
// the parameter), and so the other way.
// outLen: the ciphertext is as long as the plaintext (the MAC goes into
// the parameter), and so the other way; a message in parts returns
// nothing until its last part, which returns all of it.
func (op *messageCipherOp) outLen(p Part, n int) (int, bool, error) {
	switch {
	case op.cur == nil:
		return n, true, nil
	case p == Update:
		return 0, true, nil
	}
	return op.cur.DataLen(), true, nil
}

func (op *messageCipherOp) run(c *opCall) ([]byte, error) {
	begun := c.part == Update || c.part == Final
	if (op.cur != nil) != begun {
		if begun {
			return nil, ck.Errorf(ck.CKR_OPERATION_NOT_INITIALIZED, "no message begun")
		}
		return nil, ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a message is being fed in parts")
	}
	p, ok := c.param.(*mech.CCMMessageParams)
	if !ok {
		if begun {
			op.cur = nil
		}
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_AES_CCM messages take CK_CCM_MESSAGE_PARAMS")
	}
	if err := c.s.tok.usable(op.key); err != nil {
		return nil, err
	}
	if err := op.authorized(); err != nil {
		return nil, err
	}
	var m *mech.CCM
	var in []byte
	switch c.part {
	case begin, Single:
		nonce := p.Nonce
		if !op.decrypt {
			var err error
			if nonce, err = op.nonces.Next(p); err != nil {
				return nil, err
			}
		}
		var err error
		if m, err = mech.NewCCMMessage(p, nonce, c.sig, op.decrypt); err != nil {
			return nil, err
		}
		p.Nonce = nonce
		if c.part == begin {
			op.cur = m
			return nil, nil
		}
		if in, err = op.withMAC(p, c.in); err != nil {
			return nil, err
		}
	case Update:
		if err := op.cur.Update(c.in); err != nil {
			op.cur = nil
			return nil, err
		}
		return []byte{}, nil
	case Final:
		m, op.cur = op.cur, nil
		last, err := op.withMAC(p, c.in)
		if err != nil {
			return nil, err
		}
		if err := m.Update(last); err != nil {
			return nil, err
		}
		if in, err = m.Final(); err != nil {
			return nil, err
		}
	}
	if _, err := m.OneShotLen(len(in)); err != nil {
		return nil, err
	}
	c.dst.Wait = true
	out, err := ccmRun(c, &cipherOp{key: op.key, decrypt: op.decrypt}, m, in)
	if op.decrypt && ck.ToRV(err) == ck.CKR_ENCRYPTED_DATA_INVALID {
		// The message functions have the AEAD's own code for a tag that
		// fails (C_Decrypt's list lacks it).
		return nil, ck.Wrap(ck.CKR_AEAD_DECRYPT_FAILED, err)
	}
	if err != nil || op.decrypt {
		return out, err
	}
	ct, tag := m.Tag(out)
	p.MAC = tag
	return ct, nil
}

// withMAC is a decryption's input: the ciphertext, then the MAC the
// parameter carries (CCM checks them as one).
func (op *messageCipherOp) withMAC(p *mech.CCMMessageParams, in []byte) ([]byte, error) {
	if !op.decrypt {
		return in, nil
	}
	if len(p.MAC) != int(p.MACLen) {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "pMAC of %d bytes, ulMACLen %d", len(p.MAC), p.MACLen)
	}
	return append(append(make([]byte, 0, len(in)+len(p.MAC)), in...), p.MAC...), nil
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

// CipherMessageBegin starts a message in parts with its AAD; an
// encryption sets p.Nonce to the nonce it will use.
func (l *Library) CipherMessageBegin(h uint64, decrypt bool, p *mech.CCMMessageParams, aad []byte) error {
	_, err := l.drive(h, opCall{kind: messageCipherKind(decrypt), part: begin, fn: "C_EncryptMessageBegin", param: p, sig: aad}, nil)
	return err
}

// CipherMessageNext feeds a part; the last returns the whole output (an
// encryption sets p.MAC; a decryption checks it).
func (l *Library) CipherMessageNext(h uint64, decrypt bool, p *mech.CCMMessageParams, in []byte, last bool, dst Dest) ([]byte, error) {
	part, fn := Update, "C_EncryptMessageNext"
	if last {
		part = Final
	}
	if decrypt {
		fn = "C_DecryptMessageNext"
	}
	return l.drive(h, opCall{kind: messageCipherKind(decrypt), part: part, fn: fn, param: p, in: in}, &dst)
}

// MessageCipherFinal ends a message-based encryption or decryption context.
func (l *Library) MessageCipherFinal(h uint64, decrypt bool) error {
	return l.endLasting(h, messageCipherKind(decrypt))
}
