package tpmtoken

// What tests wait for, read from the library's TPM device; compiled into
// the tests only.

// HoldsTPM reports whether l holds its connection to a TPM that serves one
// client at a time (swtpm): a test waits for it to let go when idle.
func (l *Library) HoldsTPM() bool { return l.dev != nil && l.dev.Held() > 0 }

// TPMBusy reports whether a command of l is in the TPM now.
func (l *Library) TPMBusy() bool {
	if l.dev == nil {
		return false
	}
	_, _, busy := l.dev.Busy()
	return busy
}
