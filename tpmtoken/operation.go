package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Mechanism is a CK_MECHANISM with its parameter decoded (see mech).
type Mechanism = mech.Mechanism

// OpKind names the operations a session can have active, one of each.
type OpKind int

const (
	OpDigest OpKind = iota
	OpSign
	OpVerify
	OpEncrypt
	OpDecrypt
	OpSignRecover
	OpVerifyRecover
	OpVerifySignature
	OpMessageSign
	OpMessageVerify
)

// Part is which call of an operation is made: the single-part call
// (C_Sign), an update (C_SignUpdate) or the final part (C_SignFinal).
type Part int

const (
	Single Part = iota
	Update
	Final
)

// Dest is the caller's output buffer as the C layer sees it: its size,
// and Ref, the C layer's opaque record of where it is, handed back in
// Result.Out when a pending operation completes. It is registered with the
// pending operation before the job can finish.
type Dest struct {
	Cap int
	Ref any
	// Wait makes the call finish before returning even on an async
	// session (a dual-function update needs its first half's output).
	Wait bool
}

// opState is what every operation keeps beside its mechanism's state: the
// form the caller chose, and a result computed but not yet delivered
// because it did not fit the caller's buffer.
type opState struct {
	multi   bool // an update was made: the single-part call is refused
	single  bool // the single-part call was begun: updates and final are refused
	stash   []byte
	stashed bool
	// needAuth: the key is CKA_ALWAYS_AUTHENTICATE; authed once the
	// context-specific login was made for this operation.
	needAuth, authed bool
}

// errOtherForm refuses a call in the form the operation is not in.
var errOtherForm = ck.Errorf(ck.CKR_OPERATION_ACTIVE, "the operation is in its other form (single-part vs. multi-part)")

// enter checks that part may be called now: once an update has been made
// the single-part call cannot finish the operation (refused, and the
// operation stays as it was, so the caller can still finish it in parts);
// once the single-part call was begun (a length query), an update or final
// part is refused too, and that ends the operation: pkcs11-tool calls
// C_SignFinal after C_Sign's CKR_BUFFER_TOO_SMALL and then starts anew with
// C_SignInit, which a still-active operation would refuse.
func (st *opState) enter(p Part) (end bool, err error) {
	switch {
	case p == Single && st.multi:
		return false, errOtherForm
	case p != Single && st.single:
		return true, errOtherForm
	case p == Single:
		st.single = true
	case p == Update:
		st.multi = true
	}
	return false, nil
}

// operation is one active operation of a session.
type operation interface {
	state() *opState
	// outLen is the output length of part over inLen more bytes; exact
	// false means an upper bound (the result may be shorter).
	outLen(p Part, inLen int) (n int, exact bool, err error)
}

func (st *opState) state() *opState { return st }

// op returns session s's active operation of kind, nil if none. Call with s.mu held.
func (s *Session) op(kind OpKind) operation {
	var o operation
	switch kind {
	case OpDigest:
		if s.digest != nil {
			o = s.digest
		}
	case OpSign:
		if s.sign != nil {
			o = s.sign
		}
	case OpVerify:
		if s.verify != nil {
			o = s.verify
		}
	case OpEncrypt:
		if s.encrypt != nil {
			o = s.encrypt
		}
	case OpDecrypt:
		if s.decrypt != nil {
			o = s.decrypt
		}
	case OpSignRecover:
		if s.signRecover != nil {
			o = s.signRecover
		}
	case OpVerifyRecover:
		if s.verifyRecover != nil {
			o = s.verifyRecover
		}
	case OpVerifySignature:
		if s.verifySig != nil {
			o = s.verifySig
		}
	case OpMessageSign:
		if s.msgSign != nil {
			o = s.msgSign
		}
	case OpMessageVerify:
		if s.msgVerify != nil {
			o = s.msgVerify
		}
	}
	return o
}

// end ends session s's operation of kind.
func (s *Session) end(kind OpKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(kind)
}

func (s *Session) endLocked(kind OpKind) {
	switch kind {
	case OpDigest:
		s.digest = nil
	case OpSign:
		s.sign = nil
	case OpVerify:
		s.verify = nil
	case OpEncrypt:
		s.encrypt = nil
	case OpDecrypt:
		s.decrypt = nil
	case OpSignRecover:
		s.signRecover = nil
	case OpVerifyRecover:
		s.verifyRecover = nil
	case OpVerifySignature:
		s.verifySig = nil
	case OpMessageSign:
		s.msgSign = nil
	case OpMessageVerify:
		s.msgVerify = nil
	}
}

// settle applies the rule that any result other than success, a buffer
// too small, a pending job or a refused form ends the operation.
func (s *Session) settle(kind OpKind, err error) error {
	switch ck.ToRV(err) {
	case ck.CKR_OK, ck.CKR_BUFFER_TOO_SMALL, ck.CKR_PENDING, ck.CKR_OPERATION_ACTIVE:
	default:
		s.end(kind)
	}
	return err
}

// activeOp returns session h and its operation of kind, entered for part.
func activeOp[T operation](l *Library, h uint64, kind OpKind, p Part) (*Session, T, error) {
	var zero T
	s, err := l.session(h)
	if err != nil {
		return nil, zero, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.op(kind)
	if o == nil {
		return nil, zero, ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	if end, err := o.state().enter(p); err != nil {
		if end {
			s.endLocked(kind)
		}
		return nil, zero, err
	}
	return s, o.(T), nil
}

// OutputLen is the output length of part of session h's operation kind
// over inLen more input, known before any work: the C layer answers
// length queries and CKR_BUFFER_TOO_SMALL with it. exact false means the
// result may be shorter (RSA and CBC_PAD decryption).
func (l *Library) OutputLen(h uint64, kind OpKind, p Part, inLen int) (int, bool, error) {
	s, o, err := activeOp[operation](l, h, kind, p)
	if err != nil {
		return 0, false, err
	}
	st := o.state()
	if st.stashed {
		return len(st.stash), true, nil
	}
	n, exact, err := o.outLen(p, inLen)
	if s.flags&ck.CKF_ASYNC_SESSION != 0 {
		exact = true // a pending result is copied at completion: it must fit then
	}
	return n, exact, s.settle(kind, err)
}

// EndOperation ends session h's operation of kind: the C layer's bad
// arguments end it as any other failure does.
func (l *Library) EndOperation(h uint64, kind OpKind) {
	if s, err := l.session(h); err == nil {
		s.end(kind)
	}
}

// deliver returns out if it fits dst, else keeps it for the next call
// (the operation stays active) and reports the size needed: an operation
// whose length was only bounded is never run twice.
func deliver(st *opState, out []byte, dst Dest) ([]byte, error) {
	if len(out) > dst.Cap {
		st.stash, st.stashed = out, true
		return nil, ck.TooSmall(len(out))
	}
	return out, nil
}

// isEmptyParam says whether a decoded parameter is absent or empty bytes.
func isEmptyParam(p mech.Param) bool {
	b, ok := p.(mech.Bytes)
	return p == nil || (ok && len(b) == 0)
}

// cancelFlags is which C_SessionCancel flag cancels each operation kind.
var cancelFlags = map[OpKind]ck.Flags{
	OpDigest: ck.CKF_DIGEST, OpSign: ck.CKF_SIGN, OpVerify: ck.CKF_VERIFY, OpEncrypt: ck.CKF_ENCRYPT,
	OpDecrypt: ck.CKF_DECRYPT, OpSignRecover: ck.CKF_SIGN_RECOVER, OpVerifyRecover: ck.CKF_VERIFY_RECOVER,
	OpVerifySignature: ck.CKF_VERIFY, OpMessageSign: ck.CKF_MESSAGE_SIGN, OpMessageVerify: ck.CKF_MESSAGE_VERIFY,
}
