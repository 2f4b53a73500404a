//go:build !linux

package asyncq

func (t *Ticket) block()       { <-t.Done() }
func (t *Ticket) wakeSleeper() {}

// signal is a one-slot "there may be work" flag for the worker.
type signal struct{ c chan struct{} }

func newSignal() *signal { return &signal{c: make(chan struct{}, 1)} }

func (s *signal) notify() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

func (s *signal) wait() { <-s.c }
