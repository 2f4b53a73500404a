package tpmtoken_test

import (
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// TestLockOrder drives every path that takes the locks of docs/design.md
// "Locks" at once, from many goroutines: sessions opened, searched and
// closed, logins and logouts, queries (slot, token, session, mechanisms: the
// capability probe), synchronous and asynchronous signatures completed,
// cancelled, detached and joined, new keys; then C_Finalize with work pending
// and a caller blocked in C_WaitForSlotEvent. Run with -race (make test
// does), it also checks the data those locks guard. An inversion of the
// lock order deadlocks it, and the bound (only a hang reaches it) reports
// every goroutine's stack. Errors that a racing logout or close explains are
// expected; any other return code fails the test.
func TestLockOrder(t *testing.T) {
	const rounds = 25
	l := open(t, startSwtpm(t), t.TempDir())
	h := provision(t, l)
	_, privH := ecTokenPair(t, l, h, 0x31)
	m := tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}

	expected := map[ck.RV]bool{
		ck.CKR_OK: true, ck.CKR_PENDING: true,
		// a logout on another goroutine
		ck.CKR_USER_NOT_LOGGED_IN: true, ck.CKR_USER_ALREADY_LOGGED_IN: true, ck.CKR_KEY_HANDLE_INVALID: true,
		ck.CKR_OBJECT_HANDLE_INVALID: true, ck.CKR_SAVED_STATE_INVALID: true,
		// C_CloseAllSessions on another goroutine
		ck.CKR_SESSION_HANDLE_INVALID: true, ck.CKR_OPERATION_NOT_INITIALIZED: true,
		ck.CKR_OPERATION_ACTIVE: true,
	}
	var mu sync.Mutex
	unexpected := map[string]int{}
	seen := map[string]int{}
	check := func(what string, err error) {
		r := rv(err)
		mu.Lock()
		defer mu.Unlock()
		seen[what+" "+ck.RVName(r)]++
		if !expected[r] {
			unexpected[fmt.Sprintf("%s: %v", what, err)]++
		}
	}
	var wg sync.WaitGroup
	work := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				f(i)
			}
		}()
	}
	// Sessions: open, find, close.
	work(func(int) {
		s, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
		check("OpenSession", err)
		check("FindObjectsInit", l.FindObjectsInit(s, []tpmtoken.Attr{{ck.CKA_ID, []byte{0x31}}}))
		_, err = l.FindObjects(s, 10)
		check("FindObjects", err)
		check("FindObjectsFinal", l.FindObjectsFinal(s))
		check("CloseSession", l.CloseSession(s))
	})
	// Logins and logouts on a session of their own (opened again when
	// C_CloseAllSessions closed it).
	lh, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	work(func(i int) {
		var err error
		if i%4 == 3 {
			err = l.Logout(lh)
			check("Logout", err)
		} else {
			err = l.Login(lh, ck.CKU_USER, []byte("userpin"))
			check("Login", err)
		}
		if rv(err) == ck.CKR_SESSION_HANDLE_INVALID {
			lh, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION)
			check("OpenSession", err)
		}
	})
	// Signers log in again after a logout.
	login := func(s uint64) {
		if err := l.Login(s, ck.CKU_USER, []byte("userpin")); rv(err) != ck.CKR_USER_ALREADY_LOGGED_IN {
			check("Login", err)
		}
	}
	// Queries.
	work(func(int) {
		_, err := l.SlotInfo(0)
		check("SlotInfo", err)
		_, err = l.TokenInfo(0)
		check("TokenInfo", err)
		_, err = l.SessionInfo(h)
		check("SessionInfo", err)
		_, err = l.MechanismList(0)
		check("MechanismList", err)
		_, err = l.MechanismInfo(0, ck.CKM_EC_KEY_PAIR_GEN)
		check("MechanismInfo", err)
		_, err = l.WaitForSlotEvent(false)
		if rv(err) != ck.CKR_NO_EVENT {
			check("WaitForSlotEvent", err)
		}
	})
	// Synchronous signatures and new session keys.
	work(func(i int) {
		s, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
		check("OpenSession", err)
		login(s)
		check("SignInit", l.SignInit(s, m, privH))
		_, err = l.Sign(s, []byte("x"), tpmtoken.Dest{Cap: 64})
		check("Sign", err)
		if i%5 == 0 {
			_, _, err = l.GenerateKeyPair(s, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
				[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
			check("GenerateKeyPair", err)
		}
		check("CloseSession", l.CloseSession(s))
	})
	// Asynchronous signatures: completed, cancelled, or detached and joined.
	for g := 0; g < 2; g++ {
		work(func(i int) {
			a, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_ASYNC_SESSION)
			check("OpenSession", err)
			login(a)
			check("SignInit", l.SignInit(a, m, privH))
			_, err = l.Sign(a, []byte("x"), tpmtoken.Dest{Cap: 64})
			check("Sign", err)
			if rv(err) == ck.CKR_PENDING {
				switch i % 3 {
				case 0:
					for {
						_, done, err := l.AsyncComplete(a, "C_Sign", true)
						if done || rv(err) != ck.CKR_PENDING {
							check("AsyncComplete", err)
							break
						}
					}
				case 1:
					check("SessionCancel", l.SessionCancel(a, ck.CKF_SIGN))
				case 2:
					id, err := l.AsyncGetID(a, "C_Sign")
					check("AsyncGetID", err)
					if err == nil {
						check("AsyncJoin", l.AsyncJoin(a, "C_Sign", id, tpmtoken.Dest{Cap: 64}))
					}
				}
			}
			check("CloseSession", l.CloseSession(a))
		})
	}
	// Now and then every session of the slot closes.
	work(func(i int) {
		if i%10 == 9 {
			check("CloseAllSessions", l.CloseAllSessions(0))
		}
		_, err := l.TokenInfo(0)
		check("TokenInfo", err)
	})
	waitOrDump(t, "the concurrent calls", func() { wg.Wait() })

	// C_Finalize with operations pending and a caller waiting for a slot event.
	waiting := make(chan error, 1)
	go func() { _, err := l.WaitForSlotEvent(true); waiting <- err }()
	h2, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_ASYNC_SESSION)
	require.NoError(t, err)
	login(h2)
	require.NoError(t, l.SignInit(h2, m, privH))
	_, err = l.Sign(h2, []byte("x"), tpmtoken.Dest{Cap: 64})
	check("Sign", err)
	waitOrDump(t, "C_Finalize", l.Close)
	select {
	case err := <-waiting:
		require.Equal(t, ck.CKR_CRYPTOKI_NOT_INITIALIZED, rv(err), "C_WaitForSlotEvent woken by C_Finalize")
	case <-time.After(hangBound):
		t.Fatal("C_WaitForSlotEvent not woken by C_Finalize")
	}
	mu.Lock()
	defer mu.Unlock()
	t.Log(seen)
	require.Empty(t, unexpected)
}

// waitOrDump runs f and fails with every goroutine's stack if it does not
// return within hangBound: a deadlock.
func waitOrDump(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(hangBound):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		t.Fatalf("%s still running after %v: a deadlock (stacks above)", what, hangBound)
	}
}
