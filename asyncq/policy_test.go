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
