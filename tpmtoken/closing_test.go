package tpmtoken_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// C_Finalize (Closing, then Close) while the TPM holds a command
// unanswered, with a command deadline of an hour: Close returns while the
// TPM still holds it, the call that waited gets CKR_DEVICE_ERROR, an async
// operation queued behind it ends, the connection is closed (the TPM sees
// the command abandoned), and every goroutine the library started ends.
// Then a new library on the same TPM signs as ever.
func TestCloseGivesUpOnATPMHoldingACommand(t *testing.T) {
	spec, store, dir := startSwtpm(t), t.TempDir(), t.TempDir()
	relay, err := swtpmtest.NewSlowRelay(spec, filepath.Join(t.TempDir(), "hold.sock"), 0)
	require.NoError(t, err)
	relay.HoldDir = dir
	defer relay.Close()
	exists := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	goroutines := runtime.NumGoroutine()

	cfg := tpmtoken.Config{TPM: relay.Spec, Store: store, Deadlines: tpm.Deadlines{Command: time.Hour, KeyGen: time.Hour}}
	l, err := tpmtoken.Open(cfg)
	require.NoError(t, err)
	h := provision(t, l)
	a := openAsync(t, l)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "hold"), nil, 0o644))
	held := make(chan error, 1)
	go func() { _, err := random(l, h, 16); held <- err }()
	waitFor(t, "the TPM to hold the command", func() bool { return exists("holding") })
	_, err = random(l, a, 16)
	require.Equal(t, ck.CKR_PENDING, rv(err), "an async operation queued behind the held command")

	closed := make(chan struct{})
	go func() { l.Closing(); l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(hangBound): // only a hang reaches this
		t.Fatal("Close waits on a TPM that does not answer")
	}
	require.False(t, exists("answered"), "Close returned only after the TPM answered")
	require.Equal(t, ck.CKR_DEVICE_ERROR, rv(<-held))
	waitFor(t, "the held command's connection to close", func() bool { return exists("abandoned") })
	// Polled here, not with require.Eventually: it runs its condition on a
	// goroutine of its own, which would be counted.
	for end := time.Now().Add(hangBound); runtime.NumGoroutine() > goroutines; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines left (%d, before %d):\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
		}
	}

	require.NoError(t, os.Remove(filepath.Join(dir, "hold")))
	l2, err := tpmtoken.Open(cfg)
	require.NoError(t, err)
	defer l2.Close()
	h2, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l2.Login(h2, ck.CKU_USER, []byte("userpin")))
	_, err = random(l2, h2, 16)
	require.NoError(t, err)
}
