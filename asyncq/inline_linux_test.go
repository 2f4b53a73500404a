package asyncq

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// With the resource idle and nothing queued, Do runs the job on the
// caller's own thread; behind a running job it waits its turn and the
// worker runs it.
func TestDoRunsOnCallersThreadWhenIdle(t *testing.T) {
	g := &gate{}
	q := New(g)
	defer q.Close(time.Second)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid, err := Do(q, 1, func(*gate) (int, error) { return unix.Gettid(), nil })
	require.NoError(t, err)
	require.Equal(t, unix.Gettid(), tid, "an idle queue's job runs on the caller's thread")

	release := make(chan struct{})
	busy := Submit(q, 2, blocker(g, "busy", release), nil)
	done := make(chan int, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		_, _ = Do(q, 1, func(r *gate) (int, error) { r.record("after"); return unix.Gettid(), nil })
		done <- unix.Gettid()
	}()
	waitQueued(t, q, 1) // behind the running job, not run beside it
	select {
	case <-done:
		t.Fatal("Do ran beside a running job")
	default:
	}
	close(release)
	<-done
	require.True(t, busy.Wait(time.Second))
	require.Equal(t, []string{"busy", "after"}, g.order)
}
