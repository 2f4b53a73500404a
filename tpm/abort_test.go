package tpm_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// Abort frees a command stuck on a TPM that accepts it and never answers,
// with a command deadline far beyond the test (only the abort can end the
// wait), and every command after it fails at once without connecting.
func TestAbortFreesACommandOnASilentTPM(t *testing.T) {
	dev, err := tpm.OpenWith(swtpmtest.Fake(t, swtpmtest.Silent), tpm.Options{Deadlines: tpm.Deadlines{Command: time.Hour, KeyGen: time.Hour}})
	require.NoError(t, err)
	defer dev.Close()
	done := make(chan error, 1)
	go func() {
		_, err := tpm2.GetRandom{BytesRequested: 8}.Execute(dev.TPM)
		done <- err
	}()
	// The event: the command is in the TPM (sent, unanswered).
	for end := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if _, _, busy := dev.Busy(); busy {
			break
		}
		require.True(t, time.Now().Before(end), "the command never reached the TPM")
	}
	dev.Abort()
	select {
	case err := <-done:
		require.Error(t, err)
		var te *tpm.TransportError
		require.True(t, errors.As(err, &te), "a transport error: %v", err)
	case <-time.After(time.Minute): // only a hang reaches this
		t.Fatal("the command stuck on the silent TPM was not freed by Abort")
	}
	_, err = tpm2.GetRandom{BytesRequested: 8}.Execute(dev.TPM)
	require.ErrorIs(t, err, tpm.ErrAborted, "a command after Abort fails at once")
	dev.Abort() // twice is harmless
}
