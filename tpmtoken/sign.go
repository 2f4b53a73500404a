package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Signing (C_Sign*) and signing with recovery (C_SignRecover*): the
// private or HMAC key in the TPM.

const (
	OpSign        OpKind = 1
	OpSignRecover OpKind = 5
)

func init() {
	defineKind(OpSign, "sign", ck.CKF_SIGN)
	defineKind(OpSignRecover, "sign-recover", ck.CKF_SIGN_RECOVER)
}

// signOp is an initialized C_Sign* operation.
type signOp struct {
	opState
	key     *Object
	sig     *mech.Signature
	in      *mech.Input
	recover bool // C_SignRecover: raw RSA over the PKCS#1 type 1 block
}

func (op *signOp) outLen(p Part, _ int) (int, bool, error) {
	if p == Update {
		return 0, true, nil
	}
	return op.sig.Len(), true, nil
}

func (op *signOp) run(c *opCall) ([]byte, error) {
	switch {
	case c.part == Update:
		return nil, feed(op.sig, op.in, c.in)
	case op.recover:
		return op.signRecover(c)
	case c.part == Single:
		if err := op.in.Write(c.in); err != nil {
			return nil, err
		}
	}
	return runSign(c, op)
}

// checkKeyMech checks that key o may be used with mechanism m for usage.
func checkKeyMech(m Mechanism, o *Object, usage ck.AttributeType) error {
	if !o.allows(m.Type) {
		return ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if !o.Attrs.Bool(usage) {
		return ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	return nil
}

// SignInit starts a signature with key.
func (l *Library) SignInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpSign, func(s *Session) (operation, error) { return newSignOp(s, m, key, false) })
}

// SignRecoverInit starts C_SignRecover with key.
func (l *Library) SignRecoverInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpSignRecover, func(s *Session) (operation, error) { return newSignOp(s, m, key, true) })
}

// newSignOp checks key and m for signing (with recovery) and makes the operation.
func newSignOp(s *Session, m Mechanism, key uint64, recover bool) (*signOp, error) {
	o, err := initKey(s, key)
	if err != nil {
		return nil, err
	}
	if (o.class() != ck.CKO_PRIVATE_KEY && o.class() != ck.CKO_SECRET_KEY) || o.key == nil {
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if err := s.tok.usable(o); err != nil {
		return nil, err
	}
	sig, err := mech.NewSignature(m, mechKey(o))
	if err != nil {
		return nil, err
	}
	usage := ck.CKA_SIGN
	if recover {
		if !sig.Recoverable() {
			return nil, ck.E(ck.CKR_MECHANISM_INVALID)
		}
		usage = ck.CKA_SIGN_RECOVER
	}
	if err := checkKeyMech(m, o, usage); err != nil {
		return nil, err
	}
	op := &signOp{key: o, sig: sig, in: sig.NewInput(), recover: recover}
	op.needAuth = o.Attrs.Bool(ck.CKA_ALWAYS_AUTHENTICATE)
	return op, nil
}

// Sign signs data in one part.
func (l *Library) Sign(h uint64, data []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpSign, part: Single, fn: "C_Sign", in: data}, &dst)
}

// SignUpdate feeds data to a multi-part signature.
func (l *Library) SignUpdate(h uint64, data []byte) error {
	_, err := l.drive(h, opCall{kind: OpSign, part: Update, fn: "C_SignUpdate", in: data}, nil)
	return err
}

// SignFinal finishes a multi-part signature.
func (l *Library) SignFinal(h uint64, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpSign, part: Final, fn: "C_SignFinal"}, &dst)
}

// SignRecover signs data so that it can be recovered from the signature.
func (l *Library) SignRecover(h uint64, data []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpSignRecover, part: Single, fn: "C_SignRecover", in: data}, &dst)
}

// feed is an update of a signature or verification.
func feed(sig *mech.Signature, in *mech.Input, data []byte) error {
	if !sig.MultiPart() {
		return ck.Errorf(ck.CKR_FUNCTION_NOT_SUPPORTED, "mechanism 0x%x is single-part only", sig.Type)
	}
	return in.Write(data)
}

// runSign signs what op was fed (C_Sign, C_SignFinal, C_SignMessage*); on
// an async session it may pend (its state then lives in the pending job).
func runSign(c *opCall, op *signOp) ([]byte, error) {
	l, s := c.l, c.s
	if err := s.tok.usable(op.key); err != nil {
		return nil, err
	}
	if err := op.authorized(); err != nil {
		return nil, err
	}
	call, err := op.sig.Plan(op.in.Value())
	if err != nil {
		return nil, err
	}
	// A signature is not secret: a detached sign may keep it in the store
	// (async.go's startCall: saveable, with its length bound).
	res, err := startCall(l, s, c.fn, ck.CKF_SIGN, op.key.key, call, op.sig.Len(), c.dst)
	return res.Data, l.explainPolicy(op.key, err)
}

// signRecover is raw RSA in the TPM over the PKCS#1 type 1 block.
func (op *signOp) signRecover(c *opCall) ([]byte, error) {
	if err := c.s.tok.usable(op.key); err != nil {
		return nil, err
	}
	if err := op.authorized(); err != nil {
		return nil, err
	}
	call, err := op.sig.RecoverPlan(c.in)
	if err != nil {
		return nil, err
	}
	res, err := start(c.l, c.s, c.fn, ck.CKF_SIGN_RECOVER, callJob(op.key.key, call), dataResult, nil, c.dst)
	return res.Data, err
}

// saveData is what a detached signature keeps: its bytes.
func saveData(v []byte, err error) (asyncRecord, error) { return asyncRecord{Data: v}, err }
