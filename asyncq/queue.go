// Package asyncq runs jobs one at a time on a resource (for tpm11, the
// TPM). Callers submit jobs and get a Ticket that can be waited on,
// polled, cancelled, detached to an ID and joined again; a worker
// goroutine runs them. Only the runner of the job touches the resource, so
// callers never hold a lock while it works. A synchronous caller (Do) that
// finds the resource idle and nothing queued runs its job itself, on its
// own thread: a hand-off to the worker and back costs two thread wake-ups
// per job, as much as a tenth of a TPM signature. Stop closes a queue whose
// resource may never answer: it gives up the running job through an abort
// function its owner supplies (for the TPM: shut the connection down)
// instead of waiting for it. Submitting takes no lock: a job goes onto a
// lock-free inbox the worker empties, and a Record, reused by its owner
// for one job after another, is submitted without allocating (a caller
// returning CKR_PENDING must not wait for the worker nor make garbage:
// issue 25). The queue knows nothing of PKCS#11.
package asyncq

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	_ "unsafe" // go:linkname
)

// ErrCancelled is a cancelled job's error.
var ErrCancelled = errors.New("asyncq: job cancelled")

// ErrClosed is returned for jobs submitted to, or dropped by, a closed queue.
var ErrClosed = errors.New("asyncq: queue closed")

// Job is work run with the resource, by the worker goroutine or by a
// synchronous caller (Do) that found it idle; it gives a T.
type Job[R, T any] func(r R) (T, error)

// Queue runs jobs one at a time, round-robin between owners so one busy owner
// cannot starve the others.
type Queue[R any] struct {
	res  R
	wake *signal
	done chan struct{}

	idleAfter time.Duration
	onIdle    func(R)
	yieldWhen func() bool

	// mu is taken before a Ticket's mu and is a leaf for everything
	// outside the package: never held while a job, onIdle or the yield
	// policy runs (docs/design.md "Locks").
	// inbox holds the jobs submitted and not yet sorted into queues: a
	// lock-free stack (newest first) that submitters push onto with a
	// CAS, so a submitter never waits for mu, which the worker takes
	// between jobs; whoever holds mu empties it whole (drainLocked).
	// queued counts the jobs in inbox and queues; shut is closed for
	// submitters, who read it without mu.
	inbox  atomic.Pointer[Ticket]
	queued atomic.Int64
	shut   atomic.Bool

	mu       sync.Mutex
	queues   map[uint64][]*Ticket
	ring     []uint64 // owners with queued jobs, in service order
	detached map[uint64]*Ticket
	closed   bool

	// The runner's state. running says the resource is taken: by the
	// worker, or by a caller running its own job (Do). busy: a job ran
	// since the last onIdle; lastRun: when the last job ended (mono).
	// idleTimer wakes the worker once the resource has had no job for
	// idleAfter: a job's end pushes it back when it would fire more than
	// half of idleAfter early (fireAt: when it is set to fire), so the worker sleeps
	// without a timeout of its own and is not woken while jobs keep coming
	// (a worker woken now and then to look at the clock kept the Go
	// runtime's sysmon thread polling every 20 µs: a third of the module's
	// CPU per signature), and a stream of jobs resets the timer once per
	// idleAfter/2, not once per job (~1.5 µs each).
	running   bool
	busy      bool
	lastRun   int64
	fireAt    int64
	idleTimer *time.Timer
}

// epoch is what mono counts from: one reading of the monotonic clock
// (time.Now reads the wall clock too, ~0.1–0.2 µs more each time on a VM).
var epoch = time.Now()

// mono is the monotonic time in nanoseconds since epoch.
func mono() int64 { return int64(time.Since(epoch)) }

type state int

const (
	queued state = iota
	running
	finished
)

// Ticket is one submitted job.
type Ticket struct {
	owner   uint64
	run     func() (any, error)
	discard func(any)
	next    *Ticket // the next older job in the inbox

	// held: the queue still refers to the ticket (in the inbox, queued
	// or running); a Record is submitted again only once it is clear.
	// detached: Detach gave it an ID, so it is never reused.
	held, detached atomic.Bool

	// word is 1 once the job has finished (Poll reads it without a lock);
	// word and sleeper are block's futex.
	word, sleeper uint32

	mu        sync.Mutex // after Queue.mu; a leaf
	state     state
	cancelled bool
	val       any
	err       error
	id        uint64
	done      chan struct{} // made by the first Done, closed at the end
}

// New starts a queue, and its worker, for res; only the runner of a job
// (the worker, or a caller in Do) touches res.
func New[R any](res R) *Queue[R] {
	q := &Queue[R]{
		res:      res,
		wake:     newSignal(),
		done:     make(chan struct{}),
		queues:   map[uint64][]*Ticket{},
		detached: map[uint64]*Ticket{},
	}
	go q.work()
	return q
}

// OnIdle makes the worker call f with the resource once the queue has been
// empty for d (e.g. to let go of a TPM other processes wait for). Call it
// before submitting work.
func (q *Queue[R]) OnIdle(d time.Duration, f func(R)) {
	q.mu.Lock()
	q.idleAfter, q.onIdle = d, f
	if q.idleTimer == nil {
		q.idleTimer = time.AfterFunc(time.Hour, q.wake.notify)
		q.idleTimer.Stop()
	}
	q.mu.Unlock()
}

// Typed is the ticket of a job that gives a T: its result needs no type
// assertion by the caller.
type Typed[T any] struct{ *Ticket }

// Result is the job's value and error; valid once Done is closed. A
// cancelled or dropped job gives T's zero value and its error.
func (t Typed[T]) Result() (T, error) {
	v, err := t.result()
	tv, _ := v.(T) // only this ticket's Job put a value there: a T, or nothing
	return tv, err
}

// Submit queues job for owner. discard, if not nil, runs on the worker with
// the job's value when a job that was cancelled while running finishes, so it
// can undo the job's transient effects.
func Submit[R, T any](q *Queue[R], owner uint64, job Job[R, T], discard func(R, T)) Typed[T] {
	t := &Ticket{owner: owner, run: func() (any, error) { return job(q.res) }}
	if discard != nil {
		t.discard = func(v any) {
			if tv, ok := v.(T); ok {
				discard(q.res, tv)
			}
		}
	}
	q.submit(t)
	return Typed[T]{t}
}

// Record is a job its owner submits again and again, one run at a time,
// without allocating: the ticket and the function that runs the job are
// made once, in NewRecord. The job reads what to do from its owner's
// memory, written before each Submit.
type Record[R, T any] struct {
	t   Ticket
	q   *Queue[R]
	job Job[R, T]
}

// NewRecord makes a record of job for owner; discard is as for Submit.
func NewRecord[R, T any](q *Queue[R], owner uint64, job Job[R, T], discard func(R, T)) *Record[R, T] {
	r := &Record[R, T]{q: q, job: job}
	r.t.owner, r.t.state, r.t.word = owner, finished, 1
	r.t.run = r.runJob
	if discard != nil {
		r.t.discard = func(v any) {
			if tv, ok := v.(T); ok {
				discard(q.res, tv)
			}
		}
	}
	return r
}

func (r *Record[R, T]) runJob() (any, error) { return r.job(r.q.res) }

// Free reports whether the record may be submitted: its last run has
// finished and the queue is done with it, and it was never detached (a
// detached ticket is its ID's for good).
func (r *Record[R, T]) Free() bool { return !r.t.held.Load() && !r.t.detached.Load() }

// Submit queues the record's job again, and ok, if it is Free; otherwise
// it does nothing (the owner makes a new record).
func (r *Record[R, T]) Submit() (t Typed[T], ok bool) {
	if !r.Free() {
		return Typed[T]{}, false
	}
	tk := &r.t
	tk.mu.Lock()
	tk.state, tk.cancelled, tk.val, tk.err, tk.done = queued, false, nil, nil, nil
	tk.mu.Unlock()
	atomic.StoreUint32(&tk.sleeper, 0)
	atomic.StoreUint32(&tk.word, 0)
	r.q.submit(tk)
	return Typed[T]{tk}, true
}

// Do runs job and waits for it: the synchronous path. With the resource
// idle and nothing queued, the job runs here, on the caller's thread;
// otherwise it is queued behind the others, in turn, for the worker.
func Do[R, T any](q *Queue[R], owner uint64, job Job[R, T]) (T, error) {
	if q.take() {
		// Released whatever happens: a panic in the yield policy must not
		// leave the resource taken by nobody (every later job would wait).
		defer q.release(true, false)
		start := reschedule()
		q.prepare()
		v, err := safeCall(job, q.res)
		lastJob.Store(mono() - start)
		return v, err
	}
	t := Submit(q, owner, job, nil)
	t.block()
	return t.Result()
}

// lastResched is, for each P (the Go runtime's processors, by id), when
// a job run by its caller last passed through the Go scheduler on it
// (mono); lastJob is how long the last such job took.
var lastResched [maxProcs]atomic.Int64
var lastJob atomic.Int64

// maxProcs bounds the P ids tracked apart; beyond it they share slots
// (ids are below GOMAXPROCS, which is the machine's CPU count by default).
const maxProcs = 256

// reschedMargin: the scheduler's tick must move more often than every
// 10 ms (the runtime's forcePreemptNS); a pass is made before a job that
// would otherwise end more than this after the last one.
const reschedMargin = 8 * time.Millisecond

// reschedule passes the caller through the Go scheduler before it runs its
// job (and waits on the resource) when that job, taking as long as the
// last one did, would end more than reschedMargin after the last pass on
// the P it runs on (every ~8 ms for a stream of signatures; it was every
// 5 ms, which with 2.5 ms RSA signatures came to one pass per two). It
// returns the time now (mono). A thread of a C program calling into Go
// runs one goroutine the scheduler never reschedules, so its P's
// scheduling tick never moves, and after 10 ms the runtime's monitor
// (sysmon) takes it for a goroutine that has run too long: each time it
// then waits in a system call, sysmon takes its P, the thread must take
// one back and wake sysmon when the call returns, and sysmon polls every
// 20 µs again (perf with uprobes: ~1 preemptone and handoffp per TPM
// signature, ~25–35 µs of CPU). A pass through the scheduler moves the
// tick; it costs a few thread wake-ups. The tick is the P's, not the
// thread's: a thread that finds itself on another P than its last pass's
// (sysmon took its P during a wait, and it took the idle one back) is on
// a P whose tick may not have moved for long, which sysmon finds stale at
// its next look; that P is passed on at once (without this, a loaded
// machine saw sysmon polling every 20 µs for whole seconds: 19 of its
// wake-ups per RSA signature).
func reschedule() int64 {
	now := mono()
	id := procID() % maxProcs
	last := &lastResched[id]
	seen := last.Load()
	if now-seen+lastJob.Load() > int64(reschedMargin) && last.CompareAndSwap(seen, now) {
		runtime.Gosched()
		claimed := now
		now = mono()
		if after := procID() % maxProcs; after != id {
			// Back on another P: that one's tick moved, the one
			// left may not have.
			last.CompareAndSwap(claimed, seen)
			last = &lastResched[after]
		}
		last.Store(now)
	}
	return now
}

// procID is the id of the P the caller runs on now (it may run on
// another by the time it is used: a hint, never a lock).
func procID() int {
	id := procPin()
	procUnpin()
	return id
}

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// take takes the resource for a caller's own job, if it is idle and no job
// is queued (queued jobs go first: the round-robin holds).
func (q *Queue[R]) take() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running || q.closed || q.queued.Load() > 0 {
		return false
	}
	q.running = true
	return true
}

// prepare runs before each job with the resource taken: a resource shared
// with other processes is handed over (onIdle) when the yield policy says
// so; the resource is busy from its first job until the next onIdle.
func (q *Queue[R]) prepare() {
	q.mu.Lock()
	busy, onIdle, yieldWhen := q.busy, q.onIdle, q.yieldWhen
	q.mu.Unlock()
	if busy && onIdle != nil && yieldWhen != nil && safeBool(yieldWhen) {
		safeIdle(onIdle, q.res)
		busy = false
	}
	if !busy {
		q.mu.Lock()
		q.busy = true
		q.mu.Unlock()
	}
}

// release gives the resource back after a job (ran) or the idle call. A
// caller that ran its own job wakes the worker if it has work: queued
// jobs, or a close to finish (the worker itself looks again anyway).
func (q *Queue[R]) release(ran, byWorker bool) {
	q.mu.Lock()
	q.running = false
	if ran {
		q.lastRun = mono()
		// Re-arm only when the timer would fire more than half of
		// idleAfter early.
		due := q.lastRun + int64(q.idleAfter)
		if q.idleTimer != nil && due-q.fireAt > int64(q.idleAfter/2) {
			q.idleTimer.Reset(q.idleAfter)
			q.fireAt = due
		}
	}
	wake := !byWorker && (q.queued.Load() > 0 || q.closed)
	q.mu.Unlock()
	if wake {
		q.wake.notify()
	}
}

// submit puts t in the inbox and wakes the worker; it takes no lock, and
// the wake never waits for the worker (see signal). queued is counted
// before shut is read, so the worker, which ends only once closed with
// nothing queued, is still there to sort or drop a job pushed meanwhile.
func (q *Queue[R]) submit(t *Ticket) {
	t.held.Store(true)
	q.queued.Add(1)
	if q.shut.Load() {
		q.queued.Add(-1)
		t.finish(nil, ErrClosed)
		t.held.Store(false)
		q.wake.notify() // the worker may be waiting for this count to end
		return
	}
	for {
		head := q.inbox.Load()
		t.next = head
		if q.inbox.CompareAndSwap(head, t) {
			break
		}
	}
	q.wake.notify()
}

// drainLocked sorts the inbox into the owners' queues, oldest first; on a
// closed queue it drops what came in (but a detached job). q.mu is held.
func (q *Queue[R]) drainLocked() {
	var fifo *Ticket
	for t := q.inbox.Swap(nil); t != nil; {
		older := t.next
		t.next = fifo
		fifo, t = t, older
	}
	for t := fifo; t != nil; {
		after := t.next
		t.next = nil
		if q.closed && t.id == 0 {
			q.queued.Add(-1)
			t.Cancel()
			t.held.Store(false)
		} else {
			if len(q.queues[t.owner]) == 0 {
				q.ring = append(q.ring, t.owner)
			}
			q.queues[t.owner] = append(q.queues[t.owner], t)
		}
		t = after
	}
}

// next takes the next job in turn; q.mu is held.
func (q *Queue[R]) next() *Ticket {
	for len(q.ring) > 0 {
		owner := q.ring[0]
		q.ring = q.ring[1:]
		jobs := q.queues[owner]
		t := jobs[0]
		if len(jobs) > 1 {
			q.queues[owner] = jobs[1:]
			q.ring = append(q.ring, owner)
		} else {
			delete(q.queues, owner)
		}
		q.queued.Add(-1)
		t.mu.Lock()
		if t.cancelled {
			t.mu.Unlock()
			t.held.Store(false)
			continue
		}
		t.state = running
		t.mu.Unlock()
		return t
	}
	return nil
}

// work is the worker: it runs queued jobs while the resource is not taken
// by a caller, and calls onIdle once the resource has had no job for the
// idle time.
func (q *Queue[R]) work() {
	defer close(q.done)
	for {
		q.mu.Lock()
		q.drainLocked()
		var t *Ticket
		if !q.running {
			t = q.next()
		}
		if t == nil && q.closed && !q.running && q.queued.Load() == 0 {
			q.mu.Unlock()
			return
		}
		// Idle when the last job ended idleAfter ago and none runs; a
		// job's end re-arms idleTimer, which wakes the worker then.
		idle := false
		if t == nil && q.onIdle != nil && q.busy && !q.running {
			if left := q.idleAfter - time.Duration(mono()-q.lastRun); left <= 0 {
				idle = true
			} else {
				q.idleTimer.Reset(left)
				q.fireAt = q.lastRun + int64(q.idleAfter)
			}
		}
		if t != nil || idle {
			q.running = true
		}
		onIdle := q.onIdle
		q.mu.Unlock()
		switch {
		case t != nil:
			q.prepare()
			v, err := safeRun(t.run)
			t.mu.Lock()
			cancelled := t.cancelled
			t.mu.Unlock()
			if cancelled && err == nil && t.discard != nil {
				// Still with the resource: discard undoes the job on it.
				_, _ = safeRun(func() (any, error) { t.discard(v); return nil, nil })
			}
			q.release(true, true)
			if cancelled {
				v, err = nil, ErrCancelled
			}
			t.finish(v, err)
			t.held.Store(false)
		case idle:
			safeIdle(onIdle, q.res)
			q.mu.Lock()
			q.busy = false
			q.mu.Unlock()
			q.release(false, true)
		default:
			q.wake.wait()
		}
	}
}

// safeRun keeps a panicking job from killing the worker (and the host).
func safeRun(f func() (any, error)) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError{r}
		}
	}()
	return f()
}

// safeIdle runs the idle function; a panic in it is dropped, as a
// panicking job's is, so the worker and the resource go on.
func safeIdle[R any](f func(R), r R) {
	_, _ = safeRun(func() (any, error) { f(r); return nil, nil })
}

// safeBool asks the yield policy; a panic in it counts as "no".
func safeBool(f func() bool) (yes bool) {
	_, _ = safeRun(func() (any, error) { yes = f(); return nil, nil })
	return yes
}

// safeCall is safeRun for a job run by its caller.
func safeCall[R, T any](job Job[R, T], r R) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			v, err = zero, panicError{p}
		}
	}()
	return job(r)
}

type panicError struct{ v any }

func (p panicError) Error() string { return "asyncq: job panicked" }

func (t *Ticket) finish(v any, err error) {
	t.mu.Lock()
	t.state, t.val, t.err = finished, v, err
	done := t.done
	t.mu.Unlock()
	if done != nil {
		close(done)
	}
	atomic.StoreUint32(&t.word, 1)
	t.wakeSleeper()
}

// Done is closed when the job has finished (or was dropped). The channel
// is made on first use: most tickets are only polled or blocked on.
func (t *Ticket) Done() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done == nil {
		t.done = make(chan struct{})
		if t.state == finished {
			close(t.done)
		}
	}
	return t.done
}

// Wait waits up to d for the job; ok is false if it is still running.
func (t *Ticket) Wait(d time.Duration) (ok bool) {
	if atomic.LoadUint32(&t.word) == 1 {
		return true
	}
	if d <= 0 {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.Done():
		return true
	case <-timer.C:
		return false
	}
}

// Poll reports whether the job has finished.
func (t *Ticket) Poll() bool { return t.Wait(0) }

// result is the job's value and error; valid once Done is closed.
func (t *Ticket) result() (any, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.val, t.err
}

// Cancel drops a queued job (it never runs) or marks a running one so that
// its result is discarded. It reports whether the job had not finished.
func (t *Ticket) Cancel() bool {
	t.mu.Lock()
	if t.state == finished || t.cancelled {
		t.mu.Unlock()
		return false
	}
	t.cancelled = true
	wasQueued := t.state == queued
	t.mu.Unlock()
	if wasQueued {
		// The worker skips it; finish now so waiters wake.
		t.finish(nil, ErrCancelled)
	}
	return true
}

// Detach registers t under a new random, never-reused ID so that it can be
// joined later by ID.
func (q *Queue[R]) Detach(t *Ticket) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.id != 0 {
		return t.id
	}
	t.detached.Store(true)
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := binary.LittleEndian.Uint64(b[:])
		if id != 0 && q.detached[id] == nil {
			t.id = id
			q.detached[id] = t
			return id
		}
	}
}

// Join returns the detached ticket with id and forgets the ID; its
// result is read through the Typed ticket Submit returned.
func (q *Queue[R]) Join(id uint64) (*Ticket, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t, ok := q.detached[id]
	delete(q.detached, id)
	return t, ok
}

// Close stops accepting jobs, drops queued ones, and waits up to d for the
// running one. Detached jobs already queued still run: they were promised to
// outlive their session. It reports whether the worker stopped in time.
func (q *Queue[R]) Close(d time.Duration) bool { return q.Stop(nil, d) }

// Stop is Close for a resource that may never answer: once the queue is
// closed, a job still running (the worker's, or a caller's own in Do) or
// still queued (a detached one) is given up by calling abort, which must
// make it return soon from any goroutine (for the TPM: shut its connection
// down, so a read blocked on a TPM that never answers returns) and fail
// every job after it. The jobs' callers then get the jobs' errors; no
// goroutine stays blocked. Stop waits up to d for the worker to end.
func (q *Queue[R]) Stop(abort func(), d time.Duration) bool {
	q.close()
	if abort != nil {
		q.mu.Lock()
		busy := q.running || q.queued.Load() > 0
		q.mu.Unlock()
		if busy {
			safeIdle(func(struct{}) { abort() }, struct{}{})
		}
	}
	select {
	case <-q.done:
		return true
	case <-time.After(d):
		return false
	}
}

// close stops accepting jobs and drops the queued ones but detached jobs.
func (q *Queue[R]) close() {
	q.mu.Lock()
	q.closed = true
	q.shut.Store(true)
	q.drainLocked()
	keep := map[*Ticket]bool{}
	for _, t := range q.detached {
		keep[t] = true
	}
	var dropped []*Ticket
	for owner, jobs := range q.queues {
		var kept []*Ticket
		for _, t := range jobs {
			if keep[t] {
				kept = append(kept, t)
			} else {
				dropped = append(dropped, t)
			}
		}
		if len(kept) == 0 {
			delete(q.queues, owner)
		} else {
			q.queues[owner] = kept
		}
	}
	var ring []uint64
	for _, o := range q.ring {
		if len(q.queues[o]) > 0 {
			ring = append(ring, o)
		}
	}
	q.ring = ring
	if q.idleTimer != nil {
		q.idleTimer.Stop()
	}
	q.queued.Add(-int64(len(dropped)))
	q.mu.Unlock()
	for _, t := range dropped {
		t.Cancel()
		t.held.Store(false)
	}
	q.wake.notify()
}
