package asyncq

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gate is a fake resource whose jobs block until released, so tests control
// exactly when the worker is busy.
type gate struct {
	mu    sync.Mutex
	order []string
}

func (g *gate) record(s string) {
	g.mu.Lock()
	g.order = append(g.order, s)
	g.mu.Unlock()
}

func blocker(g *gate, name string, release <-chan struct{}) Job[*gate, string] {
	return func(r *gate) (string, error) {
		<-release
		r.record(name)
		return name, nil
	}
}

func TestRoundRobinBetweenOwners(t *testing.T) {
	g := &gate{}
	q := New(g)
	defer q.Close(time.Second)
	hold := make(chan struct{})
	first := Submit(q, 0, blocker(g, "hold", hold), nil)
	var ts []Typed[any]
	// Owner 1 floods the queue before owner 2 submits one job.
	for i := 0; i < 5; i++ {
		ts = append(ts, Submit(q, 1, func(r *gate) (any, error) { r.record("busy"); return nil, nil }, nil))
	}
	ts = append(ts, Submit(q, 2, func(r *gate) (any, error) { r.record("other"); return nil, nil }, nil))
	close(hold)
	<-first.Done()
	for _, tk := range ts {
		<-tk.Done()
	}
	require.Equal(t, []string{"hold", "busy", "other", "busy", "busy", "busy", "busy"}, g.order)
}

func TestCancelQueuedNeverRuns(t *testing.T) {
	g := &gate{}
	q := New(g)
	defer q.Close(time.Second)
	hold := make(chan struct{})
	running := Submit(q, 0, blocker(g, "running", hold), nil)
	queued := Submit(q, 1, blocker(g, "queued", nil), nil)
	require.True(t, queued.Cancel())
	require.True(t, queued.Poll())
	_, err := queued.Result()
	require.ErrorIs(t, err, ErrCancelled)
	close(hold)
	<-running.Done()
	Do(q, 2, func(*gate) (any, error) { return nil, nil })
	require.Equal(t, []string{"running"}, g.order)
}

func TestCancelRunningDiscardsResult(t *testing.T) {
	g := &gate{}
	q := New(g)
	defer q.Close(time.Second)
	hold := make(chan struct{})
	discarded := make(chan any, 1)
	tk := Submit(q, 0, func(r *gate) (any, error) { <-hold; return "made", nil },
		func(r *gate, v any) { discarded <- v })
	waitRunning(t, tk.Ticket)
	require.False(t, tk.Wait(10*time.Millisecond))
	require.True(t, tk.Cancel())
	close(hold)
	<-tk.Done()
	_, err := tk.Result()
	require.ErrorIs(t, err, ErrCancelled)
	require.Equal(t, "made", <-discarded)
}

func TestDetachJoin(t *testing.T) {
	q := New(&gate{})
	defer q.Close(time.Second)
	hold := make(chan struct{})
	tk := Submit(q, 0, blocker(&gate{}, "x", hold), nil)
	id := q.Detach(tk.Ticket)
	require.NotZero(t, id)
	require.Equal(t, id, q.Detach(tk.Ticket), "detaching twice keeps the ID")
	close(hold)
	got, ok := q.Join(id)
	require.True(t, ok)
	<-got.Done()
	v, err := Typed[string]{got}.Result()
	require.NoError(t, err)
	require.Equal(t, "x", v)
	_, ok = q.Join(id)
	require.False(t, ok, "an ID joins once")
}

func TestCloseDropsQueuedButRunsDetached(t *testing.T) {
	g := &gate{}
	q := New(g)
	hold := make(chan struct{})
	running := Submit(q, 0, blocker(g, "running", hold), nil)
	waitRunning(t, running.Ticket)
	dropped := Submit(q, 1, blocker(g, "dropped", nil), nil)
	detached := Submit(q, 2, func(r *gate) (any, error) { r.record("detached"); return nil, nil }, nil)
	q.Detach(detached.Ticket)
	closed := make(chan bool, 1)
	go func() { closed <- q.Close(hangBound) }()
	// The running job ends only once Close has dropped what it drops.
	waitFor(t, "Close to start", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.closed })
	close(hold)
	require.True(t, <-closed)
	<-running.Done()
	<-dropped.Done()
	_, err := dropped.Result()
	require.ErrorIs(t, err, ErrCancelled)
	require.Equal(t, []string{"running", "detached"}, g.order)
	_, err = Submit(q, 0, blocker(g, "late", nil), nil).Result()
	require.True(t, errors.Is(err, ErrClosed))
}

func TestPanickingJobDoesNotKillWorker(t *testing.T) {
	q := New(&gate{})
	defer q.Close(time.Second)
	_, err := Do(q, 0, func(*gate) (any, error) { panic("boom") })
	require.Error(t, err)
	v, err := Do(q, 0, func(*gate) (any, error) { return 1, nil })
	require.NoError(t, err)
	require.Equal(t, 1, v)
}

func TestManyGoroutines(t *testing.T) {
	n := 0
	q := New(&n)
	defer q.Close(time.Second)
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(owner uint64) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				_, _ = Do(q, owner, func(p *int) (any, error) { *p++; return nil, nil })
			}
		}(uint64(g))
	}
	wg.Wait()
	v, _ := Do(q, 0, func(p *int) (any, error) { return *p, nil })
	require.Equal(t, 32*200, v)
}

// hangBound bounds every wait for an event: long enough for any load, so
// it only catches a hang.
const hangBound = 60 * time.Second

// waitFor polls cond until it holds; failing after hangBound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, hangBound, 100*time.Microsecond, "waiting for %s", what)
}

func waitRunning(t testing.TB, tk *Ticket) {
	waitFor(t, "the job to run", func() bool {
		tk.mu.Lock()
		defer tk.mu.Unlock()
		return tk.state == running
	})
}

// waitQueued waits until owner has a job queued (not yet running).
func waitQueued[R any](t testing.TB, q *Queue[R], owner uint64) {
	waitFor(t, "the job to be queued", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.drainLocked()
		return len(q.queues[owner]) > 0
	})
}

// The idle function runs once the queue has been empty for the idle time,
// and once only: never twice without a job in between.
func TestIdleOnceAfterWork(t *testing.T) {
	q := New(0)
	var mu sync.Mutex
	var events []string
	record := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
	idles := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range events {
			if e == "idle" {
				n++
			}
		}
		return n
	}
	q.OnIdle(5*time.Millisecond, func(int) { record("idle") })
	for round := 1; round <= 3; round++ {
		_, err := Do(q, 1, func(int) (any, error) { record("job"); return nil, nil })
		require.NoError(t, err)
		waitFor(t, "the idle call", func() bool { return idles() == round })
		// Spurious wake-ups of the worker (a late timer) find nothing to do.
		q.wake.notify()
		q.wake.notify()
	}
	require.True(t, q.Close(hangBound)) // the worker has stopped: no call can follow
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"job", "idle", "job", "idle", "job", "idle"}, events)
}

// A synchronous caller whose queued job is dropped (the queue closes while
// the worker is busy) wakes with an error instead of sleeping forever.
func TestDoWakesWhenItsJobIsDropped(t *testing.T) {
	g := &gate{}
	q := New(g)
	release := make(chan struct{})
	busy := Submit(q, 1, blocker(g, "busy", release), nil)
	done := make(chan error, 1)
	go func() {
		_, err := Do(q, 2, func(*gate) (any, error) { return nil, nil })
		done <- err
	}()
	waitQueued(t, q, 2) // the Do is queued behind the busy job
	closed := make(chan bool, 1)
	go func() { closed <- q.Close(hangBound) }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrCancelled)
	case <-time.After(hangBound):
		t.Fatal("Do still asleep after its job was dropped")
	}
	close(release)
	require.True(t, <-closed)
	require.True(t, busy.Wait(time.Second))
}
