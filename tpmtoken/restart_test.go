package tpmtoken_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

// A long-lived host keeps its library while the TPM is killed and started
// again on the same state: calls fail while it is down (at once, not after
// a timeout), and the first call after it is back succeeds, with the login
// and the keys of before. Killed both while the library holds the
// connection (mid-use) and while it has let go of it (idle).
func TestTPMRestartRecovers(t *testing.T) {
	srv := swtpmtest.NewServer(t)
	l := open(t, srv.Spec, t.TempDir())
	defer l.Close()
	h := provision(t, l)
	pubH, privH, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}})
	require.NoError(t, err)
	pk := spki(t, l, h, pubH)
	signOnce := func() error {
		if err := l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, privH); err != nil {
			return err
		}
		sig, _, err := sign(l, h, []byte("still here"), 64, false)
		if err == nil {
			d := sha256.Sum256([]byte("still here"))
			requireECDSA(t, pk, d[:], sig)
		}
		return err
	}
	require.NoError(t, signOnce())

	for round, idle := range []bool{false, true, false, true} {
		if idle {
			waitFor(t, "the library to let go of swtpm when idle", func() bool { return !l.HoldsTPM() })
		} else {
			require.NoError(t, signOnce()) // the library holds the connection
		}
		srv.Kill()
		start := time.Now()
		err := signOnce()
		require.Equal(t, ck.CKR_DEVICE_ERROR, rv(err), "round %d: a dead TPM is a device error", round)
		require.Less(t, time.Since(start), time.Second, "round %d: a TPM that is gone is noticed at once", round)
		// Token queries keep answering from what is known.
		_, err = l.TokenInfo(0)
		require.NoError(t, err)

		srv.Start()
		back := time.Now()
		require.NoError(t, signOnce(), "round %d (idle %v): the first call after the TPM is back succeeds", round, idle)
		t.Logf("round %d (idle %v): first signature %v after the TPM was back", round, idle, time.Since(back))
		require.NoError(t, signOnce())
	}
	// A new login works too (the seals load under the same SRK).
	require.NoError(t, l.Logout(h))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	require.NoError(t, signOnce())
}

// A host started while the TPM is down shows no token in the empty slot;
// when the TPM comes up, slot queries alone (nothing else calls the TPM)
// see it within StaleAfter: the library asks again in the background.
func TestTPMComingUpLaterIsSeen(t *testing.T) {
	srv := swtpmtest.NewServer(t)
	srv.Kill()
	l := open(t, srv.Spec, t.TempDir())
	defer l.Close()
	require.Empty(t, l.SlotList(true), "no token while the TPM is down")
	srv.Start()
	up := time.Now()
	require.Eventually(t, func() bool { return len(l.SlotList(true)) == 1 }, 3*tpmtoken.StaleAfter+time.Second, 10*time.Millisecond)
	t.Logf("the empty slot shows its token %v after the TPM came up", time.Since(up))
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("late")))
}
