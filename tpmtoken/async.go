package tpmtoken

import (
	"github.com/tpm11/tpm11/asyncq"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// Result is what a finished operation hands back to the caller: bytes,
// new object handles, and Out, the caller's record of where its output
// buffer is (kept opaque here: this package never touches C memory).
type Result struct {
	Data    []byte
	Objects []uint64
	Out     any
}

// pending is the one operation an async session may have in flight.
type pending struct {
	fn     string
	flag   uint64 // CKF_* of C_SessionCancel that matches it
	t      *asyncq.Ticket
	output bool // has outputs: C_AsyncComplete needs a CK_ASYNC_DATA
	finish func(v any, err error) (Result, error)
	out    any
}

// Functions that may pend; any other name given to C_AsyncComplete is bad.
var asyncFunctions = map[string]bool{
	"C_Sign": true, "C_SignFinal": true, "C_GenerateKeyPair": true, "C_GenerateRandom": true,
}

var errPending = ck.E(ck.CKR_PENDING)

// start runs job for session s. A synchronous session waits for it. An
// async session waits at most the grace period, then records the job as
// pending and returns CKR_PENDING: only hardware latency makes it pend.
// finish turns the job's value into the result; it runs on the caller's
// thread (here, or in C_AsyncComplete).
func (l *Library) start(s *Session, fn string, flag uint64, job func(e *tpm.Engine) (any, error), finish func(v any, err error) (Result, error)) (Result, error) {
	if s.flags&ck.CKF_ASYNC_SESSION == 0 || l.q == nil {
		v, err := l.run(s.Handle, job)
		return finish(v, err)
	}
	t := l.q.Submit(s.Handle, job, nil)
	if t.Wait(l.cfg.AsyncGrace) {
		v, err := t.Result()
		return finish(v, tpmError(err))
	}
	s.mu.Lock()
	s.pending = &pending{fn: fn, flag: flag, t: t, output: true, finish: finish}
	s.mu.Unlock()
	return Result{}, errPending
}

// SetPendingOutput records, for the pending operation of session h, the
// caller's output buffer; C_AsyncComplete hands it back in Result.Out.
func (l *Library) SetPendingOutput(h uint64, out any) {
	if s, err := l.anySession(h); err == nil {
		s.mu.Lock()
		if s.pending != nil {
			s.pending.out = out
		}
		s.mu.Unlock()
	}
}

// AsyncComplete collects the result of session h's pending fn. consumed
// says whether the operation ended (its result, error included, was
// delivered); otherwise err is why not (CKR_PENDING while it runs).
func (l *Library) AsyncComplete(h uint64, fn string, haveResult bool) (res Result, consumed bool, err error) {
	if !asyncFunctions[fn] {
		return Result{}, false, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "%q cannot be asynchronous", fn)
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
	case !p.t.Poll():
		s.mu.Unlock()
		return Result{}, false, errPending
	}
	s.pending = nil
	s.mu.Unlock()
	v, jobErr := p.t.Result()
	res, err = p.finish(v, tpmError(jobErr))
	res.Out = p.out
	return res, true, err
}

// SessionCancel cancels session h's operations matching flags (CKF_SIGN,
// CKF_VERIFY, CKF_GENERATE_KEY_PAIR, ...), pending ones included. Nothing
// we run commits a side effect before completion, so it always succeeds.
func (l *Library) SessionCancel(h uint64, flags uint64) error {
	s, err := l.anySession(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pending; p != nil && flags&p.flag != 0 {
		p.t.Cancel()
		s.pending = nil
	}
	if flags&ck.CKF_SIGN != 0 {
		s.sign = nil
	}
	if flags&ck.CKF_VERIFY != 0 {
		s.verify = nil
	}
	return nil
}
