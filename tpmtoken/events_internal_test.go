package tpmtoken

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
)

type slotWait struct {
	id  uint64
	err error
}

// waitInBackground calls WaitForSlotEvent(block) on another goroutine and
// returns once that call is blocked (the library counts its waiters).
func waitInBackground(t *testing.T, l *Library) <-chan slotWait {
	t.Helper()
	out := make(chan slotWait, 1)
	go func() {
		id, err := l.WaitForSlotEvent(true)
		out <- slotWait{id, err}
	}()
	require.Eventually(t, func() bool {
		l.events.mu.Lock()
		defer l.events.mu.Unlock()
		return l.events.waiters == 1
	}, 10*time.Second, time.Millisecond, "the waiter never blocked")
	return out
}

func receive(t *testing.T, c <-chan slotWait) slotWait {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked WaitForSlotEvent was not woken")
		return slotWait{}
	}
}

// C_WaitForSlotEvent: nothing to report at start; C_InitToken into the
// empty slot and re-initializing a token are events, each reported once
// with its slot ID, waking a blocked caller; Close (C_Finalize) wakes a
// blocked caller with CKR_CRYPTOKI_NOT_INITIALIZED.
func TestSlotEvents(t *testing.T) {
	l, err := Open(Config{TPM: swtpmtest.Socket(t), Store: t.TempDir()})
	require.NoError(t, err)
	noEvent := func() {
		t.Helper()
		_, err := l.WaitForSlotEvent(false)
		require.Equal(t, ck.CKR_NO_EVENT, ck.ToRV(err))
	}
	noEvent()

	w := waitInBackground(t, l)
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("events")))
	r := receive(t, w)
	require.NoError(t, r.err)
	require.Equal(t, uint64(0), r.id)
	noEvent()

	// Two flags set before anyone asks: each slot once, lowest first.
	require.NoError(t, l.InitToken(1, []byte("sopin2"), []byte("second")))
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("again")))
	for _, want := range []uint64{0, 1} {
		id, err := l.WaitForSlotEvent(false)
		require.NoError(t, err)
		require.Equal(t, want, id)
	}
	noEvent()

	// A failed C_InitToken changes nothing.
	require.Error(t, l.InitToken(0, []byte("wrong-so"), []byte("x")))
	noEvent()

	w = waitInBackground(t, l)
	l.Close()
	r = receive(t, w)
	require.Equal(t, ck.CKR_CRYPTOKI_NOT_INITIALIZED, ck.ToRV(r.err))
	_, err = l.WaitForSlotEvent(false)
	require.Equal(t, ck.CKR_CRYPTOKI_NOT_INITIALIZED, ck.ToRV(err))

	// The next library starts with every flag clear.
	l, err = Open(l.cfg)
	require.NoError(t, err)
	defer l.Close()
	noEvent()
}
