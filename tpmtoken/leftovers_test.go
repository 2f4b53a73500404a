package tpmtoken_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// dieMidCommand does on spec what a process killed at the worst moment
// leaves behind on a TPM without a resource manager: a session started
// for a command it never sent, and an object it loaded and never flushed;
// then its connection closes.
func dieMidCommand(t *testing.T, spec string) {
	t.Helper()
	dev, err := tpm.Open(spec, t.TempDir())
	require.NoError(t, err)
	defer dev.Close()
	_, err = tpm2.StartAuthSession{
		TPMKey: tpm2.TPMRHNull, Bind: tpm2.TPMRHNull,
		NonceCaller: tpm2.TPM2BNonce{Buffer: make([]byte, 16)},
		SessionType: tpm2.TPMSEHMAC,
		Symmetric:   tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
		AuthHash:    tpm2.TPMAlgSHA256,
	}.Execute(dev.TPM)
	require.NoError(t, err)
	_, err = tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm.SRKTemplate()}.Execute(dev.TPM)
	require.NoError(t, err)
}

// Three processes died on swtpm between starting a session and using it,
// each with an object loaded: the TPM's three session slots and three
// object slots are full of what nobody alive can use. A new process still
// logs in and signs (the library flushes the dead ones' sessions and
// objects when the TPM has no room), while another live process keeps
// signing throughout without an error; and the TPM is left empty at the end.
func TestDeadProcessesLeftoversAreReclaimed(t *testing.T) {
	srv := swtpmtest.NewServer(t)
	store := t.TempDir()
	first := open(t, srv.Spec, store)
	h := provision(t, first)
	_, priv, err := first.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, []byte("k")}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte("k")}})
	require.NoError(t, err)
	first.Close()

	for i := 0; i < 3; i++ {
		dieMidCommand(t, srv.Spec)
	}

	// A live process signing all along.
	live := open(t, srv.Spec, store)
	defer live.Close()
	lh, err := live.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, live.Login(lh, ck.CKU_USER, []byte("userpin")), "the dead processes' sessions lock nobody out")
	stop := make(chan struct{})
	var liveSigns atomic.Int64
	var liveErr error
	failed := make(chan struct{}) // closed when the live process fails
	signedOrFailed := func(n int64) func() bool {
		return func() bool {
			select {
			case <-failed:
				return true
			default:
				return liveSigns.Load() > n
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := live.SignInit(lh, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, priv)
			if err == nil {
				_, _, err = sign(live, lh, []byte("live"), 64, false)
			}
			if err != nil {
				liveErr = err
				close(failed)
				return
			}
			liveSigns.Add(1)
			time.Sleep(time.Millisecond) // a client's pause between signatures (pacing, not synchronisation)
		}
	}()

	// More processes die while it signs, and new ones start and log in;
	// the live process signs between each of them.
	waitFor(t, "the live process's first signature", signedOrFailed(0))
	for i := 0; i < 3; i++ {
		signed := liveSigns.Load()
		dieMidCommand(t, srv.Spec)
		l := open(t, srv.Spec, store)
		s, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
		require.NoError(t, err)
		require.NoError(t, l.Login(s, ck.CKU_USER, []byte("userpin")), "process %d", i)
		require.NoError(t, l.SignInit(s, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, priv))
		_, _, err = sign(l, s, []byte("new"), 64, false)
		require.NoError(t, err, "process %d", i)
		l.Close()
		waitFor(t, "the live process to sign again", signedOrFailed(signed))
	}
	close(stop)
	wg.Wait()
	require.NoError(t, liveErr, "the live process never fails while others' leftovers are reclaimed")
	require.NotZero(t, liveSigns.Load())
	t.Logf("live process signed %d times meanwhile", liveSigns.Load())
	// The cleanup check of swtpmtest.NewServer fails the test if anything
	// is left in the TPM once every library is closed.
}
