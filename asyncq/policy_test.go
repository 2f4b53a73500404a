package asyncq

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// With YieldWhen, a queue that never empties calls the idle function
// between two jobs exactly when the predicate says so (here: every third
// job), never in the middle of one.
func TestYieldWhen(t *testing.T) {
	q := New(0)
	defer q.Close(time.Second)
	var jobs, yields atomic.Int32
	inJob := atomic.Bool{}
	q.OnIdle(time.Hour, func(int) {
		require.False(t, inJob.Load(), "yield in the middle of a job")
		yields.Add(1)
	})
	q.YieldWhen(func() bool { return jobs.Load()%3 == 0 })
	for i := 0; i < 30; i++ {
		_, err := Do(q, 1, func(int) (any, error) {
			inJob.Store(true)
			jobs.Add(1)
			inJob.Store(false)
			return nil, nil
		})
		require.NoError(t, err)
	}
	require.Equal(t, int32(9), yields.Load(), "before jobs 4, 7, ..., 28 (never before the first)")
}

// With IdleSooner, the idle function runs soon after a job whose end the
// predicate marked (others wait for the resource), not after the OnIdle
// time (an hour here: without it the test would time out); a job whose
// end it did not mark leaves the resource held.
func TestIdleSooner(t *testing.T) {
	q := New(0)
	defer q.Close(time.Second)
	idled := make(chan struct{}, 10)
	q.OnIdle(time.Hour, func(int) { idled <- struct{}{} })
	var soon atomic.Bool
	q.IdleSooner(time.Millisecond, soon.Load)
	job := func(int) (any, error) { return nil, nil }

	_, err := Do(q, 1, job)
	require.NoError(t, err)
	soon.Store(true)
	_, err = Do(q, 1, job)
	require.NoError(t, err)
	select {
	case <-idled:
	case <-time.After(30 * time.Second):
		t.Fatal("the resource was not handed over after a job that others waited behind")
	}
	// The first job's end (not marked) had armed the hour; only the
	// marked one's end set the short time: one idle call in all.
	require.Len(t, idled, 0)
}
