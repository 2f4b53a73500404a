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

// Jobs run by their callers count as activity: the idle function never
// runs sooner than the idle time after the last job ended (load may only
// make it later), it runs once they stop, and the yield policy is asked
// before them too.
func TestInlineJobsKeepIdleAndYield(t *testing.T) {
	const idleAfter = 30 * time.Millisecond
	q := New(0)
	defer q.Close(hangBound)
	var mu sync.Mutex
	var lastEnd time.Time
	var early []time.Duration
	var calls atomic.Int32
	q.OnIdle(idleAfter, func(int) {
		mu.Lock()
		if gap := time.Since(lastEnd); gap < idleAfter {
			early = append(early, gap)
		}
		mu.Unlock()
		calls.Add(1)
	})
	for i := 0; i < 50; i++ {
		_, err := Do(q, 1, func(int) (int, error) {
			mu.Lock()
			lastEnd = time.Now() // the job's end, as release sees it: after this
			mu.Unlock()
			return 0, nil
		})
		require.NoError(t, err)
	}
	waitFor(t, "the idle call after the last job", func() bool { return calls.Load() >= 1 })
	mu.Lock()
	require.Empty(t, early, "idle called less than the idle time after a caller's own job")
	mu.Unlock()

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
		time.Sleep(5 * time.Millisecond) // latency on purpose: a wide window for an overlap to show
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
	var idles atomic.Int32
	q.OnIdle(time.Millisecond, func(int) { idles.Add(1); panic("idle") })
	q.YieldWhen(func() bool { panic("yield") })
	for i := int32(1); i <= 3; i++ {
		_, err := Do(q, 1, func(int) (int, error) { return 0, nil })
		require.NoError(t, err)
		waitFor(t, "the worker's idle call (it panics too)", func() bool { return idles.Load() == i })
	}
	done := make(chan error, 1)
	go func() { _, err := Do(q, 1, func(int) (int, error) { return 7, nil }); done <- err }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(hangBound):
		t.Fatal("queue wedged after a panicking policy")
	}
}

// A caller running its own jobs passes through the Go scheduler only when
// its job would end more than reschedMargin after the last pass (see
// reschedule): not again soon after the last pass, and again once the
// margin has passed, sooner by as long as the last job took. The clocks
// are set, not waited for.
func TestRescheduleBeforeTheTickIsStale(t *testing.T) {
	q := New(0)
	defer q.Close(hangBound)
	job := func(int) (int, error) { return 0, nil }
	// Every P's last pass is set: the test's goroutine may run on any.
	setPasses := func(v int64) {
		for i := range lastResched {
			lastResched[i].Store(v)
		}
	}
	passedAfter := func(v int64) bool {
		for i := range lastResched {
			if lastResched[i].Load() > v {
				return true
			}
		}
		return false
	}
	future := mono() + int64(time.Hour)
	setPasses(future) // a pass "just now", however slow this test runs
	for i := 0; i < 100; i++ {
		_, err := Do(q, 1, job)
		require.NoError(t, err)
	}
	require.False(t, passedAfter(future), "a pass through the scheduler right after the last")
	past := mono() - int64(time.Hour)
	setPasses(past)
	_, err := Do(q, 1, job)
	require.NoError(t, err)
	require.True(t, passedAfter(past), "no pass through the scheduler long after the last")

	// A job as long as the margin: the next one passes at once.
	before := mono() - 1
	setPasses(before)
	lastJob.Store(int64(reschedMargin) + int64(time.Hour))
	defer lastJob.Store(0)
	_ = reschedule()
	require.True(t, passedAfter(before), "a long last job did not bring the pass forward")
}
