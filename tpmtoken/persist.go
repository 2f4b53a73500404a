package tpmtoken

import (
	"errors"
	"os"
	"time"

	"github.com/tpm11/tpm11/asyncq"
	"github.com/tpm11/tpm11/ck"
)

// ResultTTL is how long a detached operation's result waits for C_AsyncJoin.
const ResultTTL = time.Hour

// persistSpec makes an operation saveable.
type persistSpec[T any] struct {
	// bound is the output size known at submission; C_AsyncJoin's buffer
	// must be at least this large.
	bound int
	// save commits the finished job's effects without a session (token
	// objects) and returns what the record keeps.
	save func(v T, err error) (asyncRecord, error)
}

// asyncRecord is a detached operation's result as kept in the store.
type asyncRecord struct {
	Fn      string    `json:"fn"`
	RV      uint64    `json:"rv"`
	Data    []byte    `json:"data,omitempty"`
	UIDs    []string  `json:"uids,omitempty"`
	Bound   int       `json:"bound"`
	Expires time.Time `json:"expires"`
}

// detachedOp is a detached operation still known to this process.
type detachedOp struct {
	fn    string
	bound int
	t     *asyncq.Ticket
	done  chan struct{} // closed once the record is in the store
}

// detach hands the job to a goroutine that outlives the session: when the
// job ends, its result is committed and recorded under the job's ID.
func detach[T any](l *Library, tok *Token, fn string, t asyncq.Typed[T], spec *persistSpec[T]) (uint64, error) {
	id := l.q.Detach(t.Ticket)
	op := &detachedOp{fn: fn, bound: spec.bound, t: t.Ticket, done: make(chan struct{})}
	l.mu.Lock()
	l.detached[id] = op
	l.mu.Unlock()
	serial := tok.record().Serial
	l.wg.Add(1)
	l.detachedRunning.Add(1)
	go func() {
		defer l.wg.Done()
		defer l.detachedRunning.Add(-1)
		defer close(op.done)
		<-t.Done()
		v, err := t.Result()
		rec, err := spec.save(v, tpmError(err))
		rec.Fn, rec.RV, rec.Bound, rec.Expires = fn, uint64(ck.ToRV(err)), spec.bound, time.Now().Add(ResultTTL)
		if perr := l.store.PutResult(serial, id, rec); perr != nil {
			l.log.Error("cannot keep detached result", "id", id, "err", perr)
		}
	}()
	return id, nil
}

// AsyncJoin attaches the detached operation id (from this process or
// another one, before or after it finished) to session h; C_AsyncComplete
// then collects it. dst is the caller's new output buffer.
func (l *Library) AsyncJoin(h uint64, fn string, id uint64, dst Dest) error {
	if !asyncFunctions[fn] {
		return ck.Errorf(ck.CKR_ARGUMENTS_BAD, "%q cannot be asynchronous", fn)
	}
	s, err := l.session(h)
	if err != nil {
		return err
	}
	// IDs are bound to the token and its user: only a logged-in user joins.
	if !s.tok.userLoggedIn() {
		return ck.E(ck.CKR_SAVED_STATE_INVALID)
	}
	serial := s.tok.record().Serial
	l.mu.RLock()
	op := l.detached[id]
	l.mu.RUnlock()
	var rec asyncRecord
	switch err := l.store.Result(serial, id, &rec); {
	case err == nil:
		if rec.Fn != fn || time.Now().After(rec.Expires) {
			if time.Now().After(rec.Expires) {
				_ = l.store.DeleteResult(serial, id)
			}
			return ck.E(ck.CKR_SAVED_STATE_INVALID)
		}
	case errors.Is(err, os.ErrNotExist) && op != nil && op.fn == fn:
		rec.Bound = op.bound
	default:
		return ck.E(ck.CKR_SAVED_STATE_INVALID)
	}
	if dst.Cap < rec.Bound {
		return ck.TooSmall(rec.Bound)
	}
	done := func() bool {
		if op == nil {
			return true
		}
		select {
		case <-op.done:
			return true
		default:
			return false
		}
	}
	p := &pending{
		fn: fn, flag: ^ck.Flags(0), output: true, poll: done, out: dst.Ref, outCap: dst.Cap,
		cancel: func() {
			if op != nil {
				op.t.Cancel()
			}
		},
		result: func() (Result, error) { return l.joinResult(s.tok, id) },
	}
	s.mu.Lock()
	s.pending = p
	s.mu.Unlock()
	return nil
}

// joinResult reads and consumes a detached operation's record.
func (l *Library) joinResult(tok *Token, id uint64) (Result, error) {
	serial := tok.record().Serial
	var rec asyncRecord
	if err := l.store.Result(serial, id, &rec); err != nil {
		return Result{}, ck.Wrap(ck.CKR_SAVED_STATE_INVALID, err)
	}
	_ = l.store.DeleteResult(serial, id)
	l.mu.Lock()
	delete(l.detached, id)
	l.mu.Unlock()
	if ck.RV(rec.RV) != ck.CKR_OK {
		return Result{}, ck.E(ck.RV(rec.RV))
	}
	res := Result{Data: rec.Data}
	tok.mu.Lock()
	defer tok.mu.Unlock()
	if err := tok.refresh(); err != nil {
		return Result{}, err
	}
	for _, uid := range rec.UIDs {
		h, ok := tok.byUID[uid]
		if !ok {
			return Result{}, ck.Errorf(ck.CKR_SAVED_STATE_INVALID, "object %s is gone", uid)
		}
		res.Objects = append(res.Objects, h)
	}
	return res, nil
}
