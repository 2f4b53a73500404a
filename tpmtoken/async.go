package tpmtoken

import (
	"sync/atomic"
	"time"

	"github.com/tpm11/tpm11/asyncq"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Result is what a finished operation hands back to the caller: bytes,
// new object handles, and Out, the caller's record of where its output
// buffer is (kept opaque here: this package never touches C memory).
type Result struct {
	Data    []byte
	Objects []uint64
	Out     any
	OutCap  int // the capacity of the buffer Out names (Dest.Cap)
}

// pending is the one operation an async session may have in flight: a
// job of this session, or a detached one joined by ID.
type pending struct {
	fn     string
	flag   ck.Flags // CKF_* of C_SessionCancel that matches it
	output bool     // has outputs: C_AsyncComplete needs a CK_ASYNC_DATA
	poll   func() bool
	cancel func()
	result func() (Result, error)
	out    any
	outCap int
	// detach, if not nil, persists the operation past its session and
	// returns its ID; nil means CKR_STATE_UNSAVEABLE.
	detach func() (uint64, error)
}

func jobPending[T any](fn string, flag ck.Flags, t asyncq.Typed[T], finish func(v T, err error) (Result, error)) *pending {
	return &pending{
		fn: fn, flag: flag, output: true, poll: t.Poll, cancel: func() { t.Cancel() },
		result: func() (Result, error) {
			v, err := t.Result()
			return finish(v, tpmError(err))
		},
	}
}

// Functions that may pend; any other name given to C_AsyncComplete is bad.
var asyncFunctions = map[string]bool{
	"C_Sign": true, "C_SignFinal": true, "C_GenerateKeyPair": true, "C_GenerateRandom": true,
	"C_Decrypt": true, "C_DecryptUpdate": true, "C_DecryptFinal": true,
	"C_Encrypt": true, "C_EncryptUpdate": true, "C_EncryptFinal": true,
	"C_GenerateKey": true, "C_DeriveKey": true, "C_CreateObject": true, "C_UnwrapKey": true, "C_SignRecover": true,
	"C_SignMessage": true, "C_SignMessageNext": true,
}

// AsyncGetID detaches session h's pending fn and returns its ID. The
// operation then runs to completion without the session, even past
// C_Finalize, and its result is kept in the token store for C_AsyncJoin.
func (l *Library) AsyncGetID(h uint64, fn string) (uint64, error) {
	if !asyncFunctions[fn] {
		return 0, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "%q cannot be asynchronous", fn)
	}
	s, err := l.anySession(h)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	if p == nil || p.fn != fn {
		return 0, ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	if p.detach == nil {
		return 0, ck.E(ck.CKR_STATE_UNSAVEABLE)
	}
	id, err := p.detach()
	if err != nil {
		return 0, err
	}
	s.pending = nil
	return id, nil
}

var errPending = ck.E(ck.CKR_PENDING)

// dataResult is the finish of a job whose value is its output bytes.
func dataResult(v []byte, err error) (Result, error) {
	if err != nil {
		return Result{}, err
	}
	return Result{Data: v}, nil
}

// start runs job for session s. A synchronous session waits for it. An
// async session waits at most the grace period, then records the job as
// pending and returns CKR_PENDING: only hardware latency makes it pend.
// finish turns the job's value into the result; it runs on the caller's
// thread (here, or in C_AsyncComplete).
// persist, if not nil, makes the operation saveable (C_AsyncGetID): it
// finishes the job without a session and returns the record to keep.
// dst is the caller's output buffer; its Ref is kept with the pending
// operation from the moment it exists, for C_AsyncComplete to hand back.
func start[T any](l *Library, s *Session, fn string, flag ck.Flags, job func(e *tpm.Engine) (T, error), finishOf func(v T, err error) (Result, error), persist *persistSpec[T], dst Dest) (Result, error) {
	if s.flags&ck.CKF_ASYNC_SESSION == 0 || l.q == nil || dst.Wait {
		v, err := do(l, s.Handle, job)
		return finishOf(v, keyAuthError(err))
	}
	finish := func(v T, err error) (Result, error) { return finishOf(v, keyAuthError(err)) }
	t := asyncq.Submit(l.q, s.Handle, guard(l, job), nil)
	if t.Wait(l.cfg.AsyncGrace) {
		v, err := t.Result()
		return finish(v, tpmError(err))
	}
	p := jobPending(fn, flag, t, finish)
	p.out, p.outCap = dst.Ref, dst.Cap
	if persist != nil {
		p.detach = func() (uint64, error) { return detach(l, s.tok, fn, t, persist) }
	}
	s.mu.Lock()
	s.pending = p
	s.mu.Unlock()
	return Result{}, errPending
}

// AsyncComplete collects the result of session h's pending fn. consumed
// says whether the operation ended (its result, error included, was
// delivered); otherwise err is why not (CKR_PENDING while it runs).
func (l *Library) AsyncComplete(h uint64, fn string, haveResult bool) (res Result, consumed bool, err error) {
	if !asyncFunctions[fn] {
		return Result{}, false, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "%q cannot be asynchronous", fn)
	}
	if !haveResult {
		// Every function that may pend has outputs (none of our *Init
		// pends), so a NULL CK_ASYNC_DATA is always bad arguments,
		// whether or not anything is pending.
		return Result{}, false, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "%s has outputs: pResult is required", fn)
	}
	s, err := l.anySession(h)
	if err != nil {
		return Result{}, false, err
	}
	s.mu.Lock()
	p := s.pending
	switch {
	case p == nil || p.fn != fn:
		s.mu.Unlock()
		return Result{}, false, ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	case p.output && !haveResult:
		s.mu.Unlock()
		return Result{}, false, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "%s has outputs: pResult is required", fn)
	case !p.poll():
		s.mu.Unlock()
		yieldCPU()
		return Result{}, false, errPending
	}
	s.pending = nil
	out, outCap := p.out, p.outCap // read first: a session's callOp is free again once result returns
	s.mu.Unlock()
	res, err = p.result()
	res.Out, res.OutCap = out, outCap
	return res, true, err
}

// SessionCancel cancels session h's operations matching flags (CKF_SIGN,
// CKF_VERIFY, CKF_GENERATE_KEY_PAIR, ...), pending ones included. Nothing
// we run commits a side effect before completion, so it always succeeds.
func (l *Library) SessionCancel(h uint64, flags ck.Flags) error {
	s, err := l.anySession(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pending; p != nil && flags&p.flag != 0 {
		p.cancel()
		s.pending = nil
	}
	for kind, k := range kinds {
		if flags&k.cancel != 0 {
			s.endLocked(kind)
		}
	}
	return nil
}

// callOp is an async session's record of its TPM call in flight that gives
// bytes (C_Sign, C_SignFinal): made with the session and reused, so that a
// call that pends allocates nothing and takes no lock the worker holds
// (issue 25). Its asyncq.Record and the functions of its pending record
// are made once; each call writes only what to do (key, call) and the
// caller's output reference. inUse: the session's pending record is p
// (set by the caller, cleared when the result is collected or the call
// cancelled); with the Record free again it may be reused. A detached
// call is its ID's for good: the session then makes a new callOp.
type callOp struct {
	l         *Library
	rec       *asyncq.Record[*tpm.Engine, []byte]
	t         asyncq.Typed[[]byte]
	inUse     atomic.Bool
	submitted time.Time
	key       *tpm.Loadable
	call      mech.TPMCall
	// sign and digest are the record's own copy of a planned TPM2_Sign:
	// the Signature's and its input's are reused by the session's next
	// call, which may come while a cancelled job still runs.
	sign     mech.SignCall
	digest   [64]byte
	bound    int
	tok      *Token
	p        pending
	detachFn func() (uint64, error)
}

func newCallOp(l *Library, s *Session) *callOp {
	c := &callOp{l: l, tok: s.tok}
	c.rec = asyncq.NewRecord(l.q, s.Handle, c.run, nil)
	c.p = pending{output: true, poll: c.poll, cancel: c.cancel, result: c.result}
	c.detachFn = c.detach
	return c
}

// free says whether the session may use c for its next call.
func (c *callOp) free() bool { return !c.inUse.Load() && c.rec.Free() }

// run is the job, on the worker: the TPM call, under guard's rules.
func (c *callOp) run(e *tpm.Engine) ([]byte, error) {
	return guarded(c.l, c.submitted, e, callJob(c.key, c.call))
}

func (c *callOp) poll() bool { return c.t.Poll() }

func (c *callOp) cancel() {
	c.t.Cancel()
	c.inUse.Store(false)
}

func (c *callOp) result() (Result, error) {
	v, err := c.t.Result()
	c.key, c.call = nil, nil
	c.inUse.Store(false)
	return dataResult(v, keyAuthError(tpmError(err)))
}

func (c *callOp) detach() (uint64, error) {
	return detach(c.l, c.tok, c.p.fn, c.t, &persistSpec[[]byte]{bound: c.bound, save: saveData})
}

// startCall is start for a TPM call that gives bytes, saveable with bound
// (a signature is not secret: a detached one may be kept in the store). On
// an async session the call is the session's callOp, submitted without a
// lock or an allocation; elsewhere it is start's.
func startCall(l *Library, s *Session, fn string, flag ck.Flags, key *tpm.Loadable, call mech.TPMCall, bound int, dst Dest) (Result, error) {
	if s.flags&ck.CKF_ASYNC_SESSION == 0 || l.q == nil || dst.Wait {
		return start(l, s, fn, flag, callJob(key, call), dataResult, nil, dst)
	}
	s.mu.Lock()
	c := s.call
	if c == nil || !c.free() {
		// The first call, or the last one's record still queued after a
		// cancel, or detached: a new record.
		c = newCallOp(l, s)
		s.call = c
	}
	c.inUse.Store(true)
	s.mu.Unlock()
	c.submitted, c.key, c.call, c.bound = time.Now(), key, call, bound
	if sc, ok := call.(*mech.SignCall); ok && len(sc.Digest) <= len(c.digest) {
		c.sign = *sc
		c.sign.Digest = c.digest[:copy(c.digest[:], sc.Digest)]
		c.call = &c.sign
	}
	c.t, _ = c.rec.Submit() // free, and only this call uses it: it submits
	if c.t.Wait(l.cfg.AsyncGrace) {
		return c.result()
	}
	c.p.fn, c.p.flag, c.p.out, c.p.outCap, c.p.detach = fn, flag, dst.Ref, dst.Cap, c.detachFn
	s.mu.Lock()
	s.pending = &c.p
	s.mu.Unlock()
	return Result{}, errPending
}
