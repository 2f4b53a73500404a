package asyncq

// YieldWhen makes the worker also call the OnIdle function between jobs,
// once busy, whenever yield says so: for a resource shared with other
// processes, yield knows how long this one has held it and whether others
// wait.
func (q *Queue[R]) YieldWhen(yield func() bool) {
	q.mu.Lock()
	q.yieldWhen = yield
	q.mu.Unlock()
}
