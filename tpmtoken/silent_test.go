package tpmtoken_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// provisionedStore is a store with one token (user PIN "userpin") made on
// a real swtpm that is gone by the time the store is used.
func provisionedStore(t *testing.T) string {
	t.Helper()
	store := t.TempDir()
	l := open(t, startSwtpm(t), store)
	provision(t, l)
	l.Close()
	return store
}

// A TPM that accepts connections and never answers: C_Initialize waits at
// most one command deadline, slot and token queries never wait at all,
// a call waits at most its own command's deadline, and callers queued
// behind a stuck command fail when it does, not one deadline each after it.
func TestSilentTPMBoundsEveryWait(t *testing.T) {
	store := provisionedStore(t)
	spec := swtpmtest.Fake(t, swtpmtest.Silent)
	deadline := tpm.DefaultDeadlines.Command
	slack := deadline / 4

	start := time.Now()
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: store})
	require.NoError(t, err)
	defer l.Close()
	opened := time.Since(start)
	require.Less(t, opened, deadline+slack, "C_Initialize waits at most one command deadline")

	h1, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err, "an initialized token stays present")
	h2, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)

	type call struct {
		name string
		took time.Duration
		err  error
	}
	var mu sync.Mutex
	var calls []call
	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := time.Now()
			err := f()
			mu.Lock()
			calls = append(calls, call{name, time.Since(s), err})
			mu.Unlock()
		}()
	}
	run("C_Login", func() error { return l.Login(h1, ck.CKU_USER, []byte("userpin")) })
	waitFor(t, "the login's command in the TPM", l.TPMBusy)
	run("C_GenerateRandom behind it", func() error { _, err := random(l, h2, 16); return err })
	run("C_GenerateRandom also behind it", func() error { _, err := random(l, h2, 16); return err })
	var queries time.Duration
	for i := 0; i < 20; i++ {
		// Queries spread over the stuck command's deadline (sampling, not
		// synchronisation): none of them waits on the TPM.
		time.Sleep(deadline / 20)
		s := time.Now()
		_, err := l.SlotInfo(0)
		require.NoError(t, err)
		_, err = l.TokenInfo(0)
		require.NoError(t, err, "the initialized token answers from what is known")
		l.SlotList(true)
		queries = max(queries, time.Since(s))
	}
	wg.Wait()
	require.Less(t, queries, 50*time.Millisecond, "slot and token queries never wait on the TPM")
	longest := time.Duration(0)
	for _, c := range calls {
		require.Equal(t, ck.CKR_DEVICE_ERROR, rv(c.err), "%s: %v", c.name, c.err)
		require.Less(t, c.took, deadline+slack, "%s waited %v", c.name, c.took)
		longest = max(longest, c.took)
	}
	t.Logf("silent TPM: C_Initialize %v, longest call %v, longest slot/token query %v (deadline %v)", opened, longest, queries, deadline)

	// The deadline is configurable. The first library goes first: while it
	// holds the TPM's turn (tpm/turns.go), or re-asks a TPM that is down in
	// the background, another library on the same TPM waits for the turn
	// with the holder's deadline, not its own.
	l.Close()
	l2, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: store, Deadlines: tpm.Deadlines{Command: 200 * time.Millisecond}})
	require.NoError(t, err)
	defer l2.Close()
	h, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	s := time.Now()
	require.Equal(t, ck.CKR_DEVICE_ERROR, rv(l2.Login(h, ck.CKU_USER, []byte("userpin"))))
	require.Less(t, time.Since(s), 200*time.Millisecond+slack)
}

// A TPM that cannot be read (silent, garbage, a connection closed at once,
// a response cut short, nothing listening) never shows as an uninitialized
// token, which would invite C_InitToken over real keys: the empty slot
// has no token and says why; an initialized token stays listed, and what
// needs the TPM is a device error.
func TestUnreadableTPMIsNoUninitializedToken(t *testing.T) {
	store := provisionedStore(t)
	specs := map[string]string{"nothing listening": "swtpm:unix:" + t.TempDir() + "/none"}
	for _, m := range []swtpmtest.Misbehaviour{swtpmtest.Garbage, swtpmtest.Hangup, swtpmtest.BadResponse, swtpmtest.Silent} {
		specs[m.String()] = swtpmtest.Fake(t, m)
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			l, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: store, Deadlines: tpm.Deadlines{Command: 300 * time.Millisecond}})
			require.NoError(t, err)
			defer l.Close()
			require.Equal(t, []uint64{0}, l.SlotList(true), "only the initialized token")
			require.Equal(t, []uint64{0, 1}, l.SlotList(false))
			si, err := l.SlotInfo(1)
			require.NoError(t, err)
			require.Zero(t, si.Flags&ck.CKF_TOKEN_PRESENT, "no uninitialized token over an unreadable TPM")
			require.NotZero(t, si.Flags&ck.CKF_REMOVABLE_DEVICE, "a slot whose token comes and goes says so")
			require.True(t, strings.Contains(si.Description, "TPM") && !strings.Contains(si.Description, "uninitialized"), si.Description)
			t.Logf("slot description: %q", si.Description)
			_, err = l.TokenInfo(1)
			require.Equal(t, ck.CKR_TOKEN_NOT_PRESENT, rv(err))
			require.NotEqual(t, ck.CKR_OK, rv(l.InitToken(1, []byte("sopin1"), []byte("new"))))

			ti, err := l.TokenInfo(0)
			require.NoError(t, err)
			require.NotZero(t, ti.Flags&ck.CKF_TOKEN_INITIALIZED)
			h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
			require.NoError(t, err)
			require.Equal(t, ck.CKR_DEVICE_ERROR, rv(l.Login(h, ck.CKU_USER, []byte("userpin"))))
		})
	}
}
