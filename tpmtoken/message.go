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
// (CCM, built from two TPM modes) is message_encrypt.go.

const (
	OpMessageSign   OpKind = 8
	OpMessageVerify OpKind = 9
)

func init() {
	defineKind(OpMessageSign, "message-sign", ck.CKF_MESSAGE_SIGN)
	defineKind(OpMessageVerify, "message-verify", ck.CKF_MESSAGE_VERIFY)
}

// messageOp is a message-based signing or verification context, and the
// message being fed in parts, if any. It is lasting: no call but
// C_Message*Final ends it; the single/multi-part form belongs to each
// message (cur), not to the context.
type messageOp struct {
	opState
	key    *Object
	sig    *mech.Signature
	pub    any
	verify bool
	cur    *mech.Input // the message begun with *MessageBegin
}

func (op *messageOp) outLen(Part, int) (int, bool, error) { return op.sig.Len(), true, nil }

func (op *messageOp) run(c *opCall) ([]byte, error) {
	begun := c.part == Update || c.part == Final
	if (op.cur != nil) != begun {
		if begun {
			return nil, ck.Errorf(ck.CKR_OPERATION_NOT_INITIALIZED, "no message begun")
		}
		return nil, ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a message is being fed in parts")
	}
	var in *mech.Input
	switch c.part {
	case begin, Single:
		if !isEmptyParam(c.param) {
			return nil, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
		}
		if c.part == begin {
			if !op.sig.MultiPart() {
				return nil, ck.Errorf(ck.CKR_FUNCTION_NOT_SUPPORTED, "mechanism 0x%x is single-part only", op.sig.Type)
			}
			op.cur = op.sig.NewInput()
			return nil, nil
		}
		in = op.sig.NewInput()
		if err := in.Write(c.in); err != nil {
			return nil, err
		}
	case Update, Final:
		if err := op.cur.Write(c.in); err != nil {
			op.cur = nil
			return nil, err
		}
		if c.part == Update {
			return nil, nil
		}
		in, op.cur = op.cur, nil
	}
	if op.verify {
		return nil, checkVerify(c, &verifyOp{sig: op.sig, in: in, pub: op.pub, mac: op.key}, c.sig)
	}
	return runSign(c, &signOp{key: op.key, sig: op.sig, in: in})
}

// MessageSignInit / MessageVerifyInit start a context with key.
func (l *Library) MessageSignInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpMessageSign, func(s *Session) (operation, error) {
		// The single-message checks: key type, usage, parameters, login.
		g, err := newSignOp(s, m, key, false)
		if err != nil {
			return nil, err
		}
		return &messageOp{opState: opState{lasting: true}, key: g.key, sig: g.sig}, nil
	})
}

func (l *Library) MessageVerifyInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpMessageVerify, func(s *Session) (operation, error) {
		v, err := newVerifyOp(s, m, key, OpVerify, nil)
		if err != nil {
			return nil, err
		}
		return &messageOp{opState: opState{lasting: true}, key: v.mac, sig: v.sig, pub: v.pub, verify: true}, nil
	})
}

func messageKind(verify bool) OpKind {
	if verify {
		return OpMessageVerify
	}
	return OpMessageSign
}

// SignMessage signs one message.
func (l *Library) SignMessage(h uint64, param mech.Param, data []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpMessageSign, part: Single, fn: "C_SignMessage", param: param, in: data}, &dst)
}

// MessageBegin starts a message in parts (signing or verifying).
func (l *Library) MessageBegin(h uint64, verify bool, param mech.Param) error {
	_, err := l.drive(h, opCall{kind: messageKind(verify), part: begin, fn: "C_SignMessageBegin", param: param}, nil)
	return err
}

// SignMessageNext feeds a part; with last, it signs the message.
func (l *Library) SignMessageNext(h uint64, param mech.Param, part []byte, last bool, dst Dest) ([]byte, error) {
	if !last {
		_, err := l.drive(h, opCall{kind: OpMessageSign, part: Update, fn: "C_SignMessageNext", param: param, in: part}, nil)
		return nil, err
	}
	return l.drive(h, opCall{kind: OpMessageSign, part: Final, fn: "C_SignMessageNext", param: param, in: part}, &dst)
}

// VerifyMessage checks sig over one message.
func (l *Library) VerifyMessage(h uint64, param mech.Param, data, sig []byte) error {
	_, err := l.drive(h, opCall{kind: OpMessageVerify, part: Single, fn: "C_VerifyMessage", param: param, in: data, sig: sig}, nil)
	return err
}

// VerifyMessageNext feeds a part; with sig (the last part), it checks it.
func (l *Library) VerifyMessageNext(h uint64, param mech.Param, part, sig []byte, last bool) error {
	p := Update
	if last {
		p = Final
	}
	_, err := l.drive(h, opCall{kind: OpMessageVerify, part: p, fn: "C_VerifyMessageNext", param: param, in: part, sig: sig}, nil)
	return err
}

// MessageFinal ends a message-based context.
func (l *Library) MessageFinal(h uint64, verify bool) error {
	return l.endLasting(h, messageKind(verify))
}

// endLasting ends session h's message-based context of kind.
func (l *Library) endLasting(h uint64, kind OpKind) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.ops[kind]
	if o == nil {
		return ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	if o.state().busy {
		return ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a concurrent call is running the operation")
	}
	s.endLocked(kind)
	return nil
}
