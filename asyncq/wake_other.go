//go:build !linux

package asyncq

func (t *Ticket) block()       { <-t.done }
func (t *Ticket) wakeSleeper() {}
