package asyncq

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var errGivenUp = errors.New("given up")

// stuck is a job on a resource that never answers until aborted: it
// returns only when abort is closed.
func stuck(started chan<- struct{}, abort <-chan struct{}) Job[*gate, string] {
	return func(*gate) (string, error) {
		close(started)
		<-abort
		return "", errGivenUp
	}
}

// Stop gives up a job stuck on its resource (the worker's, or a caller's
// own in Do) through the abort function instead of waiting for it; queued
// jobs are dropped; every waiter wakes; the worker ends.
func TestStopAbortsTheRunningJob(t *testing.T) {
	for _, inline := range []bool{true, false} {
		q := New(&gate{})
		started, abort := make(chan struct{}), make(chan struct{})
		var running Typed[string]
		var doErr error
		var wg sync.WaitGroup
		if inline {
			wg.Add(1)
			go func() { defer wg.Done(); _, doErr = Do(q, 1, stuck(started, abort)) }()
		} else {
			running = Submit(q, 1, stuck(started, abort), nil)
		}
		<-started
		queued := Submit(q, 2, func(*gate) (string, error) { return "ran", nil }, nil)
		var waiterErr error
		wg.Add(1)
		go func() { defer wg.Done(); _, waiterErr = Do(q, 3, func(*gate) (string, error) { return "ran", nil }) }()

		aborts := 0
		// A bound that only catches a hang: Stop returns once abort makes the job return.
		require.True(t, q.Stop(func() { aborts++; close(abort) }, time.Minute), "inline=%v: the worker did not stop", inline)
		require.Equal(t, 1, aborts)
		wg.Wait()
		if inline {
			require.ErrorIs(t, doErr, errGivenUp)
		} else {
			<-running.Done()
			_, err := running.Result()
			require.ErrorIs(t, err, errGivenUp)
		}
		<-queued.Done()
		_, err := queued.Result()
		require.ErrorIs(t, err, ErrCancelled, "a queued job is dropped, not run")
		require.Error(t, waiterErr, "a caller that came after is not run")
		_, err = Do(q, 4, func(*gate) (string, error) { return "ran", nil })
		require.ErrorIs(t, err, ErrClosed)
	}
}

// With nothing running, Stop does not call abort.
func TestStopIdleDoesNotAbort(t *testing.T) {
	q := New(&gate{})
	_, err := Do(q, 1, func(*gate) (string, error) { return "ok", nil })
	require.NoError(t, err)
	require.True(t, q.Stop(func() { t.Error("abort called on an idle queue") }, time.Minute))
}
