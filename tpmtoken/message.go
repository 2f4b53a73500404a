package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Message-based signing and verification (PKCS#11 3.0): a context made
// by C_MessageSignInit signs any number of messages, each in one call
// (C_SignMessage) or in parts (C_SignMessageBegin, C_SignMessageNext),
// until C_MessageSignFinal. Every signature mechanism of the token works
// this way; none takes a per-message parameter. Message-based encryption
// needs an AEAD, which no TPM 2.0 offers (TPM2_EncryptDecrypt has no GCM
// or CCM): those functions stay CKR_FUNCTION_NOT_SUPPORTED.

// messageOp is a message-based signing or verification context, and the
// message being fed in parts, if any.
type messageOp struct {
	key    *Object
	sig    *mech.Signature
	pub    any
	verify bool
	cur    *mech.Input // the message begun with *MessageBegin
}

// state is a fresh one each time: the single/multi-part form belongs to
// each message, not to the context (Begin/Next are checked here instead).
func (op *messageOp) state() *opState { return &opState{} }

func (op *messageOp) outLen(Part, int) (int, bool, error) { return op.sig.Len(), true, nil }

func messageKind(verify bool) OpKind {
	if verify {
		return OpMessageVerify
	}
	return OpMessageSign
}

// MessageSignInit / MessageVerifyInit start a context with key.
func (l *Library) MessageSignInit(h uint64, m Mechanism, key uint64) error {
	return l.messageInit(h, m, key, false)
}

func (l *Library) MessageVerifyInit(h uint64, m Mechanism, key uint64) error {
	return l.messageInit(h, m, key, true)
}

func (l *Library) messageInit(h uint64, m Mechanism, key uint64, verify bool) error {
	kind := messageKind(verify)
	// Reuse the single-message checks: key type, usage, parameters, login.
	var err error
	if verify {
		err = l.verifyInit(h, m, key, OpVerify, nil)
	} else {
		err = l.signInit(h, m, key, OpSign)
	}
	if err != nil {
		return err
	}
	s, _ := l.session(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	op := &messageOp{verify: verify}
	if verify {
		v := s.verify
		s.verify = nil
		op.key, op.sig, op.pub = v.mac, v.sig, v.pub
	} else {
		g := s.sign
		s.sign = nil
		op.key, op.sig = g.key, g.sig
	}
	if s.op(kind) != nil {
		return ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	if verify {
		s.msgVerify = op
	} else {
		s.msgSign = op
	}
	return nil
}

// message returns session h's context of kind; begun says whether a
// message in parts must (true) or must not (false) be under way.
func (l *Library) message(h uint64, verify bool, begun bool) (*Session, *messageOp, error) {
	s, op, err := activeOp[*messageOp](l, h, messageKind(verify), Single)
	if err != nil {
		return nil, nil, err
	}
	if (op.cur != nil) != begun {
		if begun {
			return nil, nil, ck.Errorf(ck.CKR_OPERATION_NOT_INITIALIZED, "no message begun")
		}
		return nil, nil, ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a message is being fed in parts")
	}
	return s, op, nil
}

func noMessageParam(p mech.Param) error {
	if !isEmptyParam(p) {
		return ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	return nil
}

// SignMessage signs one message.
func (l *Library) SignMessage(h uint64, param mech.Param, data []byte, dst Dest) ([]byte, error) {
	s, op, err := l.message(h, false, false)
	if err != nil {
		return nil, err
	}
	if err := noMessageParam(param); err != nil {
		return nil, err
	}
	in := op.sig.NewInput()
	if err := in.Write(data); err != nil {
		return nil, err
	}
	return l.runSign(s, &signOp{key: op.key, sig: op.sig, in: in}, "C_SignMessage", dst)
}

// MessageBegin starts a message in parts (signing or verifying).
func (l *Library) MessageBegin(h uint64, verify bool, param mech.Param) error {
	_, op, err := l.message(h, verify, false)
	if err != nil {
		return err
	}
	if err := noMessageParam(param); err != nil {
		return err
	}
	if !op.sig.MultiPart() {
		return ck.Errorf(ck.CKR_FUNCTION_NOT_SUPPORTED, "mechanism 0x%x is single-part only", op.sig.Type)
	}
	op.cur = op.sig.NewInput()
	return nil
}

// SignMessageNext feeds a part; with last, it signs the message.
func (l *Library) SignMessageNext(h uint64, param mech.Param, part []byte, last bool, dst Dest) ([]byte, error) {
	s, op, err := l.message(h, false, true)
	if err != nil {
		return nil, err
	}
	if err := op.cur.Write(part); err != nil {
		op.cur = nil
		return nil, err
	}
	if !last {
		return nil, nil
	}
	in := op.cur
	op.cur = nil
	return l.runSign(s, &signOp{key: op.key, sig: op.sig, in: in}, "C_SignMessageNext", dst)
}

// VerifyMessage checks sig over one message.
func (l *Library) VerifyMessage(h uint64, param mech.Param, data, sig []byte) error {
	s, op, err := l.message(h, true, false)
	if err != nil {
		return err
	}
	if err := noMessageParam(param); err != nil {
		return err
	}
	in := op.sig.NewInput()
	if err := in.Write(data); err != nil {
		return err
	}
	return l.checkVerify(s, &verifyOp{sig: op.sig, in: in, pub: op.pub, mac: op.key}, sig)
}

// VerifyMessageNext feeds a part; with sig (the last part), it checks it.
func (l *Library) VerifyMessageNext(h uint64, param mech.Param, part, sig []byte, last bool) error {
	s, op, err := l.message(h, true, true)
	if err != nil {
		return err
	}
	if err := op.cur.Write(part); err != nil {
		op.cur = nil
		return err
	}
	if !last {
		return nil
	}
	in := op.cur
	op.cur = nil
	return l.checkVerify(s, &verifyOp{sig: op.sig, in: in, pub: op.pub, mac: op.key}, sig)
}

// MessageFinal ends a message-based context.
func (l *Library) MessageFinal(h uint64, verify bool) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kind := messageKind(verify)
	if s.op(kind) == nil {
		return ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	s.endLocked(kind)
	return nil
}
