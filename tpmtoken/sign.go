package tpmtoken

import (
	"crypto/subtle"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// signOp is an initialized C_Sign* operation.
type signOp struct {
	opState
	key *Object
	sig *mech.Signature
	in  *mech.Input
}

func (op *signOp) outLen(p Part, _ int) (int, bool, error) {
	if p == Update {
		return 0, true, nil
	}
	return op.sig.Len(), true, nil
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

// keyOpInit returns session h and key for an *Init whose operation of
// kind is not already active.
func (l *Library) keyOpInit(h uint64, key uint64, kind OpKind) (*Session, *Object, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	active := s.op(kind) != nil
	s.mu.Unlock()
	if active {
		return nil, nil, ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	o, err := s.tok.object(key)
	if err != nil {
		return nil, nil, ck.E(ck.CKR_KEY_HANDLE_INVALID)
	}
	return s, o, nil
}

// SignInit starts a signature with key.
func (l *Library) SignInit(h uint64, m Mechanism, key uint64) error {
	return l.signInit(h, m, key, OpSign)
}

// signInit is C_SignInit (kind OpSign) and C_SignRecoverInit.
func (l *Library) signInit(h uint64, m Mechanism, key uint64, kind OpKind) error {
	s, o, err := l.keyOpInit(h, key, kind)
	if err != nil {
		return err
	}
	if (o.class() != ck.CKO_PRIVATE_KEY && o.class() != ck.CKO_SECRET_KEY) || o.key == nil {
		return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if err := s.tok.usable(o); err != nil {
		return err
	}
	sig, err := mech.NewSignature(m, mechKey(o))
	if err != nil {
		return err
	}
	usage := ck.CKA_SIGN
	if kind == OpSignRecover {
		if !sig.Recoverable() {
			return ck.E(ck.CKR_MECHANISM_INVALID)
		}
		usage = ck.CKA_SIGN_RECOVER
	}
	if err := checkKeyMech(m, o, usage); err != nil {
		return err
	}
	op := &signOp{key: o, sig: sig, in: sig.NewInput()}
	op.needAuth = o.Attrs.Bool(ck.CKA_ALWAYS_AUTHENTICATE)
	s.mu.Lock()
	if kind == OpSignRecover {
		s.signRecover = op
	} else {
		s.sign = op
	}
	s.mu.Unlock()
	return nil
}

// Sign signs data in one part.
func (l *Library) Sign(h uint64, data []byte, dst Dest) ([]byte, error) {
	s, op, err := activeOp[*signOp](l, h, OpSign, Single)
	if err != nil {
		return nil, err
	}
	if err := op.in.Write(data); err != nil {
		return nil, s.settle(OpSign, err)
	}
	return l.finishSign(s, op, "C_Sign", dst)
}

// SignUpdate feeds data to a multi-part signature.
func (l *Library) SignUpdate(h uint64, data []byte) error {
	s, op, err := activeOp[*signOp](l, h, OpSign, Update)
	if err != nil {
		return err
	}
	return s.settle(OpSign, feed(op.sig, op.in, data))
}

// feed is an update of a signature or verification.
func feed(sig *mech.Signature, in *mech.Input, data []byte) error {
	if !sig.MultiPart() {
		return ck.Errorf(ck.CKR_FUNCTION_NOT_SUPPORTED, "mechanism 0x%x is single-part only", sig.Type)
	}
	return in.Write(data)
}

// SignFinal finishes a multi-part signature.
func (l *Library) SignFinal(h uint64, dst Dest) ([]byte, error) {
	s, op, err := activeOp[*signOp](l, h, OpSign, Final)
	if err != nil {
		return nil, err
	}
	return l.finishSign(s, op, "C_SignFinal", dst)
}

// finishSign runs the signature; on an async session it may pend (the
// operation is then consumed: its state lives in the pending job).
func (l *Library) finishSign(s *Session, op *signOp, fn string, dst Dest) ([]byte, error) {
	defer s.end(OpSign)
	return l.runSign(s, op, fn, dst)
}

// runSign signs what op was fed (C_Sign, C_SignFinal, C_SignMessage*).
func (l *Library) runSign(s *Session, op *signOp, fn string, dst Dest) ([]byte, error) {
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
	n := op.sig.Len()
	// A signature is not secret: a detached sign may keep it in the store.
	res, err := start(l, s, fn, ck.CKF_SIGN, callJob(op.key.key, call), dataResult, &persistSpec[[]byte]{
		bound: n,
		save: func(v []byte, err error) (asyncRecord, error) {
			return asyncRecord{Data: v}, err
		},
	}, dst)
	return res.Data, l.explainPolicy(op.key, err)
}

// verifyOp is an initialized C_Verify*: in software with the public key,
// or an HMAC computed in the TPM and compared.
type verifyOp struct {
	opState
	sig   *mech.Signature
	in    *mech.Input
	pub   any             // the public key of a signature
	mac   *Object         // the secret key of an HMAC
	given []byte          // the signature of C_VerifySignature*, given at init
	pss   *mech.PSSParams // the mechanism's parameter, for C_GetOperationState
}

// outLen is C_VerifyRecover's: at most the modulus size.
func (op *verifyOp) outLen(Part, int) (int, bool, error) { return op.sig.Len(), false, nil }

// VerifyInit starts verification with a public (or private) key object.
func (l *Library) VerifyInit(h uint64, m Mechanism, key uint64) error {
	return l.verifyInit(h, m, key, OpVerify, nil)
}

// verifyInit is C_VerifyInit, C_VerifyRecoverInit and (with the
// signature) C_VerifySignatureInit.
func (l *Library) verifyInit(h uint64, m Mechanism, key uint64, kind OpKind, signature []byte) error {
	s, o, err := l.keyOpInit(h, key, kind)
	if err != nil {
		return err
	}
	usage := ck.CKA_VERIFY
	if kind == OpVerifyRecover {
		usage = ck.CKA_VERIFY_RECOVER
	}
	switch o.class() {
	case ck.CKO_PRIVATE_KEY:
		usage = ck.CKA_SIGN
	case ck.CKO_PUBLIC_KEY, ck.CKO_SECRET_KEY:
	default:
		return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	sig, err := mech.NewSignature(m, mechKey(o))
	if err != nil {
		return err
	}
	if err := checkKeyMech(m, o, usage); err != nil {
		return err
	}
	if kind == OpVerifyRecover && !sig.Recoverable() {
		return ck.E(ck.CKR_MECHANISM_INVALID)
	}
	op := &verifyOp{sig: sig, in: sig.NewInput(), given: signature}
	if p, ok := m.Param.(mech.PSSParams); ok {
		op.pss = &p
	}
	if sig.IsMAC() {
		if o.key == nil {
			return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
		}
		op.mac = o
	} else if op.pub, err = o.publicKey(); err != nil {
		return err
	}
	s.mu.Lock()
	switch kind {
	case OpVerifyRecover:
		s.verifyRecover = op
	case OpVerifySignature:
		s.verifySig = op
	default:
		s.verify = op
	}
	s.mu.Unlock()
	return nil
}

// Verify checks sig over data in one part.
func (l *Library) Verify(h uint64, data, sig []byte) error {
	s, op, err := activeOp[*verifyOp](l, h, OpVerify, Single)
	if err != nil {
		return err
	}
	if err := op.in.Write(data); err != nil {
		return s.settle(OpVerify, err)
	}
	return l.finishVerify(s, op, sig)
}

// VerifyUpdate feeds data to a multi-part verification.
func (l *Library) VerifyUpdate(h uint64, data []byte) error {
	s, op, err := activeOp[*verifyOp](l, h, OpVerify, Update)
	if err != nil {
		return err
	}
	return s.settle(OpVerify, feed(op.sig, op.in, data))
}

// VerifyFinal checks sig over everything fed.
func (l *Library) VerifyFinal(h uint64, sig []byte) error {
	s, op, err := activeOp[*verifyOp](l, h, OpVerify, Final)
	if err != nil {
		return err
	}
	return l.finishVerify(s, op, sig)
}

func (l *Library) finishVerify(s *Session, op *verifyOp, sig []byte) error {
	if op.given != nil {
		s.end(OpVerifySignature)
	} else {
		s.end(OpVerify)
	}
	return l.checkVerify(s, op, sig)
}

// checkVerify checks sig over what op was fed.
func (l *Library) checkVerify(s *Session, op *verifyOp, sig []byte) error {
	input := op.in.Value()
	if op.mac == nil {
		return op.sig.Verify(op.pub, input, sig)
	}
	if len(sig) != op.sig.Len() {
		return ck.E(ck.CKR_SIGNATURE_LEN_RANGE)
	}
	if err := s.tok.usable(op.mac); err != nil {
		return err
	}
	call, err := op.sig.Plan(input)
	if err != nil {
		return err
	}
	v, err := do(l, s.Handle, callJob(op.mac.key, call))
	if err != nil {
		return keyAuthError(err)
	}
	if subtle.ConstantTimeCompare(v, sig) != 1 {
		return ck.E(ck.CKR_SIGNATURE_INVALID)
	}
	return nil
}
