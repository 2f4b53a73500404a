package tpmtoken

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tpm11/tpm11/asyncq"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// What the library knows of its TPM without asking it.
//
// Slot and token queries (C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo)
// never wait on the TPM: they answer from what the last TPM job saw — the
// TPM's identity (manufacturer, firmware), its dictionary-attack state,
// and whether it answered at all. C_Initialize asks the TPM once (bounded
// by the command deadline: the SRK, see start; the identity a process
// kept for this TPM answers until it is read again); a PIN check that
// fails reads the lockout state in the same job; anything missing or older
// than StaleAfter is asked again in the background, without waiting.
//
// A TPM that cannot be read (it does not answer, answers garbage, or
// nothing listens) is shown as such, never as an uninitialized token that
// would invite C_InitToken: the empty slot has no token, its description
// says why, and token calls that need the TPM fail with CKR_DEVICE_ERROR.
// The TPM is tried again by the next call that needs it, so a TPM that
// restarts, or comes up after the host, is picked up by itself.
type health struct {
	mu sync.Mutex // a leaf (docs/design.md "Locks"): nothing is taken under it
	// down is why the TPM could not be reached by the last job that tried
	// (nil: it answered); downAt is when.
	down   error
	downAt time.Time
	probed bool // a job has run: down is known

	info     tpm.Info
	haveInfo bool
	srkName  string // hex; empty until the SRK was made
	da       tpm.DAState
	daAt     time.Time // zero: never read

	refreshing bool
	tried      time.Time     // when the last background refresh started
	refreshed  chan struct{} // closed when the last one ended
}

// DAWait is how long the first token query of a process waits for the
// lockout state, which C_Initialize does not read (see start), when the
// TPM answered: once, and never on a TPM known to be down.
var DAWait = 100 * time.Millisecond

// StaleAfter is how old the cached TPM state may grow before a slot or
// token query asks for it again (in the background).
var StaleAfter = 2 * time.Second

// errTPMFailedMeanwhile is the error of a job that was waiting while the
// TPM failed another: it fails at once rather than wait on a dead TPM too.
type errTPMFailedMeanwhile struct{ cause error }

func (e errTPMFailedMeanwhile) Error() string {
	return fmt.Sprintf("the TPM failed while this call waited for it: %v", e.cause)
}
func (e errTPMFailedMeanwhile) Unwrap() error { return e.cause }

// failedSince is the failure that happened after t, if any.
func (h *health) failedSince(t time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down != nil && h.downAt.After(t) {
		return errTPMFailedMeanwhile{h.down}
	}
	return nil
}

// note records what a job's error says about the TPM: a transport failure
// means it is down, anything else (a response code included) that it
// answered.
func (h *health) note(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.probed = true
	if tpm.IsTransport(err) {
		h.down, h.downAt = err, time.Now()
		return
	}
	h.down = nil
}

// state is whether the TPM answered the last job that tried it, and if not why.
func (h *health) state() (probed bool, down error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.probed, h.down
}

func (h *health) setInfo(i tpm.Info) {
	h.mu.Lock()
	h.info, h.haveInfo = i, true
	h.mu.Unlock()
}

func (h *health) setDA(st tpm.DAState) {
	h.mu.Lock()
	h.da, h.daAt = st, time.Now()
	h.mu.Unlock()
}

// guard wraps every TPM job of the library:
//
//   - a job that waited while the TPM failed another fails at once, so no
//     caller waits longer behind a stuck command than that command's
//     deadline;
//   - a job that found the TPM restarted or the connection to it gone
//     (tpm.IsStale) runs once more, on a new connection with everything
//     loaded afresh: the first call after the TPM is back succeeds;
//   - what the job saw of the TPM is recorded (health), and a PIN the TPM
//     refused is followed, in the same job, by a read of its lockout state,
//     so token flags are current the moment the failed login returns.
func guard[T any](l *Library, job func(e *tpm.Engine) (T, error)) func(e *tpm.Engine) (T, error) {
	submitted := time.Now()
	return func(e *tpm.Engine) (T, error) { return guarded(l, submitted, e, job) }
}

// guarded runs job, submitted at that time, under guard's rules: for a
// job whose record is made once and reused (callOp), so no closure is made
// on the submitter's path.
func guarded[T any](l *Library, submitted time.Time, e *tpm.Engine, job func(e *tpm.Engine) (T, error)) (T, error) {
	if err := l.health.failedSince(submitted); err != nil {
		var zero T
		return zero, err
	}
	e.Begin()
	v, err := job(e)
	if tpm.IsStale(err) {
		l.log.Info("TPM connection lost or TPM restarted: running the job again", "err", err)
		e.Begin()
		v, err = job(e)
	}
	l.health.note(err)
	if err != nil && !tpm.IsTransport(err) {
		switch ck.ToRV(tpmError(err)) {
		case ck.CKR_PIN_INCORRECT, ck.CKR_PIN_LOCKED:
			if st, derr := e.DAState(); derr == nil {
				l.health.setDA(st)
			}
		}
	}
	if tpm.IsTransport(err) {
		l.log.Error("TPM not reachable", "tpm", l.cfg.TPM, "err", err)
	}
	return v, err
}

// probe reads the TPM's identity and lockout state on the worker (one
// TPM2_GetCapability), and keeps the identity for the next process.
func (l *Library) probe(e *tpm.Engine) (struct{}, error) {
	info, st, err := e.State()
	if err != nil {
		return struct{}{}, err
	}
	l.health.setInfo(info)
	l.health.setDA(st)
	l.health.mu.Lock()
	name := l.health.srkName
	l.health.mu.Unlock()
	if name != "" {
		l.store.PutTPMInfo(name, store.TPMInfo(info))
	}
	return struct{}{}, nil
}

// start is C_Initialize's one TPM job: it makes the storage root key
// (SRK) ready, which says whether the TPM answers and which TPM it is
// (its name), and which the first login and the check of the tokens'
// TPM need next anyway. The TPM's identity (manufacturer, firmware) is the
// one a process kept for this TPM (by its SRK's name); it is read (with
// the lockout state) only when none was, or in the background on the
// first slot or token query (refreshSoon: the lockout state is unknown
// until then, and a refused PIN reads it in its own job).
func (l *Library) start(e *tpm.Engine) (struct{}, error) {
	h, err := e.Handle(l.srk)
	if err != nil {
		return struct{}{}, err
	}
	name := hex.EncodeToString(h.Name.Buffer)
	l.health.mu.Lock()
	l.health.srkName = name
	l.health.mu.Unlock()
	if info, ok := l.store.TPMInfo(name); ok {
		l.health.setInfo(tpm.Info(info))
		return struct{}{}, nil
	}
	return l.probe(e)
}

// refreshSoon asks the TPM for its state in the background when what is
// cached is missing or older than StaleAfter, at most once per StaleAfter
// (so a TPM that is down is tried again that often: the empty slot shows
// its token again once it answers); it never waits.
func (l *Library) refreshSoon() {
	if l.q == nil {
		return
	}
	h := &l.health
	h.mu.Lock()
	fresh := h.haveInfo && !h.daAt.IsZero() && time.Since(h.daAt) < StaleAfter
	if fresh || h.refreshing || time.Since(h.tried) < StaleAfter {
		h.mu.Unlock()
		return
	}
	h.refreshing, h.tried = true, time.Now()
	done := make(chan struct{})
	h.refreshed = done
	h.mu.Unlock()
	t := asyncq.Submit(l.q, 0, guard(l, l.probe), nil)
	go func() {
		<-t.Done()
		h.mu.Lock()
		h.refreshing = false
		h.mu.Unlock()
		close(done)
	}()
}

// daState is the lockout state last read, if any. Never read yet (a new
// process), it is asked for and, if the TPM answers, waited for at most
// DAWait.
func (l *Library) daState() (tpm.DAState, bool) {
	l.refreshSoon()
	h := &l.health
	h.mu.Lock()
	st, known, done := h.da, !h.daAt.IsZero(), h.refreshed
	up := h.probed && h.down == nil
	h.mu.Unlock()
	if known || !up || done == nil {
		return st, known
	}
	select {
	case <-done:
	case <-time.After(DAWait):
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.da, !h.daAt.IsZero()
}

// tpmDown is why the TPM cannot be used now, or nil: no TPM was opened,
// or the last job that tried could not reach it.
func (l *Library) tpmDown() error {
	if l.dev == nil {
		return l.devErr
	}
	_, down := l.health.state()
	if down != nil {
		l.refreshSoon() // is it back?
	}
	return down
}

// present is nil when slot s holds a token: an initialized token always
// (its record is on disk; what needs the TPM fails while the TPM is down);
// the empty slot only while the TPM answers — an uninitialized token shown
// over a TPM that cannot be read would invite C_InitToken.
func (l *Library) present(s *Slot) error {
	if l.dev == nil {
		return ck.Wrap(ck.CKR_TOKEN_NOT_PRESENT, l.devErr)
	}
	if s.tok != nil {
		return nil
	}
	if down := l.tpmDown(); down != nil {
		return ck.Wrap(ck.CKR_TOKEN_NOT_PRESENT, down)
	}
	return nil
}

// shortCause is err's message cut to fit a slot description.
func shortCause(err error) string {
	var te *tpm.TransportError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, tpm.ErrNoTPM):
		return "none found; set TPM11_TPM"
	case tpm.IsTimeout(err):
		return "not answering"
	case errors.As(err, &te) && te.Op == "connect":
		return "unreachable"
	case errors.As(err, &te) && te.Op == "response":
		return "answers garbage"
	case tpm.IsTransport(err):
		return "connection lost"
	}
	return "unusable"
}
