package asyncq

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Submitting a Record allocates nothing and takes no lock the worker
// holds (issue 25: a call returning CKR_PENDING made 17 allocations and
// took the queue's lock). The worker is held by another job meanwhile, so
// the records stay queued and the count is the submitter's alone; then
// every job runs, in order, and gives its result.
func TestRecordSubmitAllocatesNothing(t *testing.T) {
	g := &gate{}
	q := New(g)
	defer q.Close(hangBound)
	hold := make(chan struct{})
	running := Submit(q, 0, blocker(g, "hold", hold), nil)
	waitRunning(t, running.Ticket)

	const runs = 50
	var recs []*Record[*gate, int]
	for i := 0; i < runs+1; i++ { // AllocsPerRun runs f once more first
		i := i
		recs = append(recs, NewRecord(q, uint64(i+1), func(*gate) (int, error) { return i, nil }, nil))
	}
	tickets := make([]Typed[int], 0, runs+1)
	next := 0
	allocs := testing.AllocsPerRun(runs, func() {
		tk, ok := recs[next].Submit()
		if !ok || tk.Poll() {
			panic("a fresh record is free and its job queued behind the held one")
		}
		tickets = append(tickets, tk)
		next++
	})
	require.Zero(t, allocs, "allocations per Record.Submit")
	close(hold)
	for i, tk := range tickets {
		tk.block()
		v, err := tk.Result()
		require.NoError(t, err)
		require.Equal(t, i, v)
	}
}

// A Record is submitted again only once the queue is done with its last
// run: not while it is queued or running, not after a cancel until the
// worker has skipped it, never once detached.
func TestRecordReuse(t *testing.T) {
	g := &gate{}
	q := New(g)
	defer q.Close(hangBound)
	release := make(chan struct{})
	runs := 0
	r := NewRecord(q, 1, func(*gate) (int, error) { <-release; runs++; return runs, nil }, nil)
	require.True(t, r.Free())

	tk, ok := r.Submit()
	require.True(t, ok)
	waitRunning(t, tk.Ticket)
	_, ok = r.Submit()
	require.False(t, ok, "running")
	release <- struct{}{}
	tk.block()
	v, err := tk.Result()
	require.NoError(t, err)
	require.Equal(t, 1, v)
	waitFor(t, "the worker to let go of the record", r.Free)

	// Queued behind another job, then cancelled: finished at once, free
	// once the worker has skipped it.
	hold := make(chan struct{})
	other := Submit(q, 2, blocker(g, "hold", hold), nil)
	waitRunning(t, other.Ticket)
	tk, ok = r.Submit()
	require.True(t, ok)
	require.False(t, tk.Poll())
	require.True(t, tk.Cancel())
	require.True(t, tk.Poll())
	_, err = tk.Result()
	require.ErrorIs(t, err, ErrCancelled)
	require.False(t, r.Free(), "the worker has not skipped it yet")
	close(hold)
	waitFor(t, "the worker to skip the cancelled run", r.Free)
	require.Equal(t, 1, runs, "a cancelled queued run never runs")

	tk, ok = r.Submit()
	require.True(t, ok)
	id := q.Detach(tk.Ticket)
	release <- struct{}{}
	tk.block()
	v, err = tk.Result()
	require.NoError(t, err)
	require.Equal(t, 2, v)
	joined, found := q.Join(id)
	require.True(t, found)
	require.Same(t, tk.Ticket, joined)
	require.False(t, r.Free(), "a detached record is its ID's for good")
}
