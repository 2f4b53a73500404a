package tpmtoken

import (
	"fmt"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Operations are data. A session holds its active operations in one table
// keyed by OpKind (Session.ops); each kind is one file (sign.go, verify.go,
// digest.go, cipher.go, message.go) holding its OpKind, its registration
// (defineKind), the type implementing operation and the thin Library
// methods the C layer calls. The rules of PKCS#11 §5.2 that every kind
// shares live here, in initOp and drive, and nowhere else:
//   - one active operation of a kind per session; *Init on an active kind
//     is CKR_OPERATION_ACTIVE;
//   - single-part (C_Sign) vs multi-part (C_SignUpdate/C_SignFinal): the
//     first call fixes the form; a call in the other form is refused with
//     CKR_OPERATION_ACTIVE, and that ends the operation (see enter);
//   - a length query or CKR_BUFFER_TOO_SMALL leaves the operation active;
//     any other result of a finishing call ends it, as does any failure of
//     an update;
//   - a result computed but too large for the caller's buffer (the length
//     was only bounded in advance) is kept and handed to the next call,
//     never computed twice;
//   - output never exceeds the caller's capacity: the length check, the run
//     and the result belong to one call that owns the operation (busy) from
//     check to result, so a concurrent call on the same session gets
//     CKR_OPERATION_ACTIVE and a concurrent *Init cannot replace it.

// Mechanism is a CK_MECHANISM with its parameter decoded (see mech).
type Mechanism = mech.Mechanism

// OpKind names the operations a session can have active, one of each.
// Each kind declares its value in its own file; values are stable (saved
// operation states name them).
type OpKind int

// kindInfo is what the session machinery knows of a kind.
type kindInfo struct {
	name   string
	cancel ck.Flags // the C_SessionCancel flag that cancels it
}

// kinds is every defined kind.
var kinds = map[OpKind]kindInfo{}

// defineKind registers kind (from its file's init).
func defineKind(kind OpKind, name string, cancel ck.Flags) {
	if _, dup := kinds[kind]; dup {
		panic(fmt.Sprintf("operation kind %d defined twice", kind))
	}
	kinds[kind] = kindInfo{name, cancel}
}

// Part is which call of an operation is made: the single-part call
// (C_Sign), an update (C_SignUpdate) or the final part (C_SignFinal).
type Part int

const (
	Single Part = iota
	Update
	Final
	// begin starts a message in parts (C_SignMessageBegin): only
	// message-based contexts have it.
	begin
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
	// busy: a call owns the operation between its length check and its
	// result; another call on it is refused, and it cannot be replaced.
	busy bool
	// lasting: a message-based context. Its calls never end it (only
	// C_Message*Final and cancel do); the form rules are the message's.
	lasting bool
	// needAuth: the key is CKA_ALWAYS_AUTHENTICATE; authed once the
	// context-specific login was made for this operation.
	needAuth, authed bool
	// call is the call that owns the operation (busy), kept here so that
	// handing it to run (through an interface) puts nothing on the heap.
	call opCall
}

// errOtherForm refuses a call in the form the operation is not in.
var errOtherForm = ck.Errorf(ck.CKR_OPERATION_ACTIVE, "the operation is in its other form (single-part vs. multi-part)")

// enter checks that part may be called now. A call in the form the
// operation is not in is refused with CKR_OPERATION_ACTIVE, and §5.2 makes
// that end it (a call to C_Sign that does not return CKR_OK,
// CKR_BUFFER_TOO_SMALL or a length ends the operation): C_Sign after
// C_SignUpdate, and the next C_SignFinal is CKR_OPERATION_NOT_INITIALIZED;
// C_SignFinal after C_Sign's length query or CKR_BUFFER_TOO_SMALL, which
// pkcs11-tool calls before starting anew with C_SignInit (which a
// still-active operation would refuse).
func (st *opState) enter(p Part) (end bool, err error) {
	switch {
	case st.lasting:
	case p == Single && st.multi, p != Single && st.single:
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
	// run makes call c: feeds c.in (Update) or finishes the operation
	// (Single over c.in, Final), returning its output. The driver owns the
	// operation while run runs: run never takes s.mu for it.
	run(c *opCall) ([]byte, error)
}

func (st *opState) state() *opState { return st }

// opCall is one call of an operation, as the driver hands it to run.
type opCall struct {
	l     *Library
	s     *Session
	kind  OpKind
	part  Part
	fn    string // the C function ("C_Sign"): what C_AsyncComplete names
	in    []byte
	sig   []byte     // a verification's signature
	param mech.Param // a message's per-message parameter
	dst   Dest
}

// op returns session s's active operation of kind, nil if none. Call with s.mu held.
func (s *Session) op(kind OpKind) operation { return s.ops[kind] }

// end ends session s's operation of kind.
func (s *Session) end(kind OpKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(kind)
}

func (s *Session) endLocked(kind OpKind) { delete(s.ops, kind) }

// CancelOp is an *Init with a NULL mechanism, which PKCS#11 3.x makes end
// the session's active operation of that kind (C_SignInit, C_DigestInit,
// ...: "to terminate an active ... operation"); none active is CKR_OK too.
// A pending asynchronous call of it is cancelled as C_SessionCancel does;
// a call running it on another thread (which owns it) is
// CKR_OPERATION_ACTIVE, as any other use of it then.
func (l *Library) CancelOp(h uint64, kind OpKind) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pending; p != nil && kinds[kind].cancel&p.flag != 0 {
		p.cancel()
		s.pending = nil
	} else if op := s.ops[kind]; op != nil && op.state().busy {
		return ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a concurrent call is running the operation")
	}
	s.endLocked(kind)
	return nil
}

// initOp is every *Init: session h must have no operation of kind; build
// makes the operation (checking key, mechanism and parameters), and it is
// installed unless another thread's *Init got there first.
func (l *Library) initOp(h uint64, kind OpKind, build func(s *Session) (operation, error)) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	active := s.ops[kind] != nil
	s.mu.Unlock()
	if active {
		return ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	op, err := build(s)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ops[kind] != nil {
		return ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	if s.ops == nil {
		s.ops = map[OpKind]operation{}
	}
	s.ops[kind] = op
	return nil
}

// initKey returns key obj of session s for an *Init.
func initKey(s *Session, obj uint64) (*Object, error) {
	o, err := s.tok.object(obj)
	if err != nil {
		return nil, ck.E(ck.CKR_KEY_HANDLE_INVALID)
	}
	return o, nil
}

// keyMismatch turns a mechanism's refusal into CKR_KEY_TYPE_INCONSISTENT
// when the token does offer the mechanism for this function (flag): then
// it is the key that does not fit, not the mechanism (e.g. CKM_RSA_PKCS
// on an AES key, CKM_AES_ECB on an RSA key).
func keyMismatch(err error, m ck.MechType, flag ck.Flags) error {
	if ck.ToRV(err) != ck.CKR_MECHANISM_INVALID {
		return err
	}
	if info, ierr := mech.InfoOf(m, func(mech.KeyKind) (uint64, uint64) { return 0, 0 }); ierr == nil && info.Flags&flag != 0 {
		return ck.Wrap(ck.CKR_KEY_TYPE_INCONSISTENT, err)
	}
	return err
}

// drive makes one call of session h's operation of kind: the form check,
// the stash, the length check against dst (nil: the call has no output),
// the run, and whether the operation ends. Output never exceeds dst.Cap.
func (l *Library) drive(h uint64, c opCall, dst *Dest) ([]byte, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, err
	}
	c.l, c.s = l, s
	s.mu.Lock()
	o := s.ops[c.kind]
	if o == nil {
		s.mu.Unlock()
		return nil, ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	st := o.state()
	if st.busy {
		s.mu.Unlock() // another call owns it: it stays theirs
		return nil, ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a concurrent call is running the operation")
	}
	if end, err := st.enter(c.part); err != nil {
		if end {
			s.endLocked(c.kind)
		}
		s.mu.Unlock()
		return nil, err
	}
	if dst != nil {
		c.dst = *dst
		if st.stashed {
			defer s.mu.Unlock()
			if len(st.stash) > dst.Cap {
				return nil, ck.TooSmall(len(st.stash))
			}
			s.endLocked(c.kind)
			return st.stash, nil
		}
		n, exact, err := o.outLen(c.part, len(c.in))
		if err != nil {
			if !st.lasting {
				s.endLocked(c.kind)
			}
			s.mu.Unlock()
			return nil, err
		}
		if s.flags&ck.CKF_ASYNC_SESSION != 0 {
			exact = true // a pending result is copied at completion: it must fit then
		}
		if exact && dst.Cap < n {
			s.mu.Unlock()
			return nil, ck.TooSmall(n)
		}
	}
	st.busy = true
	st.call = c
	s.mu.Unlock()

	out, err := o.run(&st.call)

	s.mu.Lock()
	defer s.mu.Unlock()
	st.busy, st.call = false, opCall{}
	if dst != nil && err == nil && len(out) > dst.Cap {
		if c.part == Update || st.lasting {
			// The length was exact and checked: this cannot happen.
			// Never hand back more than the caller has room for.
			err = ck.Errorf(ck.CKR_GENERAL_ERROR, "%s: %d bytes of output for a %d-byte buffer", c.fn, len(out), dst.Cap)
		} else {
			st.stash, st.stashed = out, true
			err = ck.TooSmall(len(out))
		}
		out = nil
	}
	if s.ops[c.kind] == o && !st.lasting && ends(c.part, err) {
		s.endLocked(c.kind)
	}
	return out, err
}

// ends says whether a call of part that returned err ends its operation
// (§5.2): a finishing call ends it unless its buffer was too small; an
// update ends it when it fails. A pending call (async) has moved the
// operation's state into its job; a pending update keeps the operation
// (its next part follows).
func ends(p Part, err error) bool {
	switch ck.ToRV(err) {
	case ck.CKR_BUFFER_TOO_SMALL:
		return false
	case ck.CKR_OK, ck.CKR_PENDING:
		return p == Single || p == Final
	}
	return true
}

// OutputLen is the output length of part of session h's operation kind
// over inLen more input, known before any work: the C layer answers length
// queries with it (a call with a buffer checks its length in drive). exact
// false means the result may be shorter (RSA and CBC_PAD decryption).
func (l *Library) OutputLen(h uint64, kind OpKind, p Part, inLen int) (int, bool, error) {
	s, err := l.session(h)
	if err != nil {
		return 0, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.ops[kind]
	if o == nil {
		return 0, false, ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	st := o.state()
	if st.busy {
		return 0, false, ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a concurrent call is running the operation")
	}
	if end, err := st.enter(p); err != nil {
		if end {
			s.endLocked(kind)
		}
		return 0, false, err
	}
	if st.stashed {
		return len(st.stash), true, nil
	}
	n, exact, err := o.outLen(p, inLen)
	if s.flags&ck.CKF_ASYNC_SESSION != 0 {
		exact = true
	}
	if err != nil && !st.lasting {
		s.endLocked(kind)
	}
	return n, exact, err
}

// EndOperation ends session h's operation of kind: the C layer's bad
// arguments end it as any other failure does.
func (l *Library) EndOperation(h uint64, kind OpKind) {
	if s, err := l.session(h); err == nil {
		s.end(kind)
	}
}

// isEmptyParam says whether a decoded parameter is absent or empty bytes.
func isEmptyParam(p mech.Param) bool {
	b, ok := p.(mech.Bytes)
	return p == nil || (ok && len(b) == 0)
}

// keyOpInit returns session h and key for a call that uses a key in one
// step (C_DeriveKey: kind -1) or starts an operation of kind not active.
func (l *Library) keyOpInit(h uint64, key uint64, kind OpKind) (*Session, *Object, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	active := s.ops[kind] != nil
	s.mu.Unlock()
	if active {
		return nil, nil, ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	o, err := initKey(s, key)
	return s, o, err
}
