package tpmtoken

import "time"

// Closing starts C_Finalize's watch on the TPM, before C_Finalize waits
// for the calls in flight: from now until Close ends, a command the TPM
// has not answered within FinalizeGrace, or ten times the time it
// usually takes to answer if that is longer, is given up (tpm.Device.Abort),
// with every command after it, and its caller gets CKR_DEVICE_ERROR. So
// C_Finalize never waits on a TPM that does not answer, while one that
// answers still gets what this process loaded flushed. What is left
// loaded is reclaimed by the next process (tpm/reclaim.go); a kernel
// resource manager flushes it when the connection closes. Detached
// operations were promised to outlive C_Finalize: while one runs, the
// TPM is not given up. Safe to call more than once, and after Close.
func (l *Library) Closing() {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closing != nil || l.closed || l.dev == nil || l.dev.Abort == nil {
		return
	}
	stop := make(chan struct{})
	l.closing = stop
	go func() {
		// A tick while the library closes, never otherwise: the TPM's
		// answers are not waited for with a timer of their own (the
		// command's own deadline is long: 2 s, minutes for RSA keys).
		tick := time.NewTicker(FinalizeGrace / 10)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if l.detachedRunning.Load() > 0 {
				continue
			}
			// A TPM that is slow but answers (a slow chip, a loaded
			// host) is given ten times its usual answer time.
			grace := max(FinalizeGrace, 10*l.dev.Typical())
			if elapsed, _, busy := l.dev.Busy(); busy && elapsed >= grace {
				l.log.Warn("the TPM did not answer while the library closed: given up", "after", elapsed)
				l.dev.Abort()
				return
			}
		}
	}()
}

// closeWatch ends Closing's watch (Close, at its end).
func (l *Library) closeWatch() {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	l.closed = true
	if l.closing != nil {
		close(l.closing)
		l.closing = nil
	}
}

// abortTPM gives up on the TPM at once (Close, for a job still running
// when the queue has closed).
func (l *Library) abortTPM() {
	if l.dev != nil && l.dev.Abort != nil {
		l.dev.Abort()
	}
}
