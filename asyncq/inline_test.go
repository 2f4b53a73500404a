package asyncq

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Jobs run by their callers and by the worker never overlap, whatever the
// mix of Do and Submit from many goroutines; none is lost.
func TestInlineAndWorkerNeverOverlap(t *testing.T) {
	q := New(0)
	defer q.Close(time.Second)
	var inUse, overlaps, ran atomic.Int32
	job := func(int) (int, error) {
		if inUse.Add(1) != 1 {
			overlaps.Add(1)
		}
		for i := 0; i < 200; i++ {
			runtime.Gosched()
		}
		inUse.Add(-1)
		ran.Add(1)
		return 0, nil
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(owner uint64) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if i%3 == 0 {
					tk := Submit(q, owner, job, nil)
					<-tk.Done()
				} else {
					_, _ = Do(q, owner, job)
				}
			}
		}(uint64(g))
	}
	wg.Wait()
	require.Zero(t, overlaps.Load())
	require.Equal(t, int32(800), ran.Load())
}

// Jobs run by their callers count as activity: the idle function runs
// once they stop, not while they go on, and yielding still happens between
// them.
func TestInlineJobsKeepIdleAndYield(t *testing.T) {
	q := New(0)
	defer q.Close(time.Second)
	var calls atomic.Int32
	q.OnIdle(30*time.Millisecond, func(int) { calls.Add(1) })
	start := time.Now()
	for time.Since(start) < 100*time.Millisecond { // never idle for 30 ms
		_, err := Do(q, 1, func(int) (int, error) { time.Sleep(time.Millisecond); return 0, nil })
		require.NoError(t, err)
	}
	require.Zero(t, calls.Load(), "idle called while jobs kept coming")
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 2*time.Second, time.Millisecond)

	var yields atomic.Int32
	q.YieldWhen(func() bool { return yields.Add(1)%5 == 0 })
	before := calls.Load()
	for i := 0; i < 20; i++ {
		_, err := Do(q, 1, func(int) (int, error) { return 0, nil })
		require.NoError(t, err)
	}
	require.GreaterOrEqual(t, calls.Load()-before, int32(3), "the yield policy is asked before inline jobs too")
}

// A panicking job run by its caller is an error, not a crash, and leaves
// the resource free.
func TestInlinePanicFreesResource(t *testing.T) {
	q := New(0)
	defer q.Close(time.Second)
	_, err := Do(q, 1, func(int) (int, error) { panic("boom") })
	require.Error(t, err)
	v, err := Do(q, 1, func(int) (int, error) { return 7, nil })
	require.NoError(t, err)
	require.Equal(t, 7, v)
}

// A job cancelled while running is discarded with the resource still
// held: no caller's own job runs beside the discard.
func TestDiscardHoldsTheResource(t *testing.T) {
	q := New(0)
	defer q.Close(time.Second)
	var inUse, overlaps atomic.Int32
	use := func() {
		if inUse.Add(1) != 1 {
			overlaps.Add(1)
		}
		time.Sleep(5 * time.Millisecond)
		inUse.Add(-1)
	}
	started := make(chan struct{})
	tk := Submit(q, 1, func(int) (int, error) { close(started); use(); return 1, nil }, func(int, int) { use() })
	<-started
	tk.Cancel()
	done := make(chan struct{})
	go func() {
		for i := 0; i < 20; i++ {
			_, _ = Do(q, 2, func(int) (int, error) { use(); return 0, nil })
		}
		close(done)
	}()
	<-tk.Done()
	<-done
	require.Zero(t, overlaps.Load())
}

// A panic in the yield policy or the idle function, on a caller's thread
// or the worker's, leaves the queue working.
func TestPanickingPolicyLeavesQueueWorking(t *testing.T) {
	q := New(0)
	defer q.Close(time.Second)
	q.OnIdle(time.Millisecond, func(int) { panic("idle") })
	q.YieldWhen(func() bool { panic("yield") })
	for i := 0; i < 3; i++ {
		_, err := Do(q, 1, func(int) (int, error) { return 0, nil })
		require.NoError(t, err)
		time.Sleep(5 * time.Millisecond) // the worker's idle call panics too
	}
	done := make(chan error, 1)
	go func() { _, err := Do(q, 1, func(int) (int, error) { return 7, nil }); done <- err }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("queue wedged after a panicking policy")
	}
}

// A caller running its own jobs passes through the Go scheduler at most
// every 5 ms (see reschedule): in 60 ms of back-to-back jobs some pass,
// never one per job.
func TestRescheduleAtMostEvery5ms(t *testing.T) {
	q := New(0)
	defer q.Close(time.Second)
	before := lastResched.Load()
	jobs := 0
	for start := time.Now(); time.Since(start) < 60*time.Millisecond; jobs++ {
		_, err := Do(q, 1, func(int) (int, error) { time.Sleep(100 * time.Microsecond); return 0, nil })
		require.NoError(t, err)
	}
	require.Greater(t, lastResched.Load(), before, "no pass through the scheduler in 60 ms")
	require.Greater(t, jobs, 20)
}
