package tpmtoken_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// A 1 MiB C_GenerateRandom (32,768 TPM commands) does not hold swtpm for
// its whole length: another process (library) signs five times while it
// runs. In one job, the other waited for all of it.
func TestLargeRandomLetsOthersIn(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	a := open(t, spec, store)
	defer a.Close()
	provision(t, a)
	b := open(t, spec, store)
	defer b.Close()
	hb, err := b.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.NoError(t, b.Login(hb, ck.CKU_USER, []byte("userpin")))
	_, priv, err := b.GenerateKeyPair(hb, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
	require.NoError(t, err)

	ha, err := a.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	// B signs only once A's random holds the TPM: the queue beside the
	// socket (tpm/turns.go) first empty (both let go), then with a
	// connected ticket (A's: B is idle).
	queue := strings.TrimPrefix(spec, "swtpm:unix:") + ".tpm11-turns"
	tickets := func(connected bool) int {
		ents, _ := os.ReadDir(queue)
		n := 0
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(queue, e.Name()))
			if !strings.HasPrefix(e.Name(), ".") && (!connected || strings.HasPrefix(string(b), "fd ")) {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return tickets(false) == 0 }, time.Minute, time.Millisecond, "the libraries never let go of the TPM")
	var done atomic.Bool
	errs := make(chan error, 1)
	go func() {
		out, err := a.GenerateRandom(ha, 1<<20, tpmtoken.Dest{Cap: 1 << 20})
		if err == nil && len(out) != 1<<20 {
			err = ck.Errorf(ck.CKR_GENERAL_ERROR, "%d bytes", len(out))
		}
		done.Store(true)
		errs <- err
	}()
	require.Eventually(t, func() bool { return tickets(true) > 0 || done.Load() }, time.Minute, time.Millisecond)
	require.False(t, done.Load(), "the random was done before it was seen holding the TPM")
	signed := 0
	for ; signed < 5; signed++ {
		require.NoError(t, b.SignInit(hb, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, priv))
		_, _, err := sign(b, hb, make([]byte, 32), 64, false)
		require.NoError(t, err)
	}
	finishedFirst := done.Load()
	require.NoError(t, <-errs)
	require.False(t, finishedFirst, "the 1 MiB random held the TPM until it was done: 5 signatures waited for it")
}
