package asyncq

import "time"

// YieldWhen makes the worker also call the OnIdle function between jobs,
// once busy, whenever yield says so: for a resource shared with other
// processes, yield knows how long this one has held it and whether others
// wait.
func (q *Queue[R]) YieldWhen(yield func() bool) {
	q.mu.Lock()
	q.yieldWhen = yield
	q.mu.Unlock()
}

// IdleSooner makes the resource count as idle after d instead of the
// OnIdle time when, at a job's end, soon says so: for a resource shared
// with other processes, handed over as soon as this one pauses while
// others wait for it, instead of standing idle in its hands. Call it
// after OnIdle, before submitting work.
func (q *Queue[R]) IdleSooner(d time.Duration, soon func() bool) {
	q.mu.Lock()
	q.soonAfter, q.soonWhen = d, soon
	q.mu.Unlock()
}
