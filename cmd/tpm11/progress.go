package main

import (
	"fmt"
	"os"
	"time"
)

// progressAfter is how long a step runs before its elapsed time is shown.
const progressAfter = 250 * time.Millisecond

// progress runs a slow step (RSA key generation takes seconds on real
// TPMs), showing what it does and the elapsed time on the terminal; it is
// silent when stderr is not a terminal.
func progress(what string, f func() error) error {
	if !stderrIsTerminal() {
		return f()
	}
	start := time.Now()
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		shown := false
		for {
			select {
			case <-done:
				if shown {
					fmt.Fprintf(os.Stderr, "\r\033[K%s: %.1fs\n", what, time.Since(start).Seconds())
				}
				return
			case <-tick.C:
				if d := time.Since(start); d >= progressAfter {
					shown = true
					fmt.Fprintf(os.Stderr, "\r\033[K%s... %.1fs", what, d.Seconds())
				}
			}
		}
	}()
	err := f()
	close(done)
	<-stopped
	return err
}
