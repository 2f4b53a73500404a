package tpmtoken_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// Four libraries on one swtpm and one store stand in for four processes:
// each has its own connection (swtpm serves one at a time), its own handle
// table and store cache. Mixed operations must all succeed, and each must
// see the others' token objects.
func TestFourLibrariesShareOneSwtpm(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	first := open(t, spec, store)
	provision(t, first)
	first.Close()

	const n, rounds = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, n*rounds*8)
	for p := 0; p < n; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			l, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: store})
			if err != nil {
				errs <- err
				return
			}
			defer l.Close()
			h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
			if err == nil {
				err = l.Login(h, ck.CKU_USER, []byte("userpin"))
			}
			if err != nil {
				errs <- fmt.Errorf("process %d login: %w", p, err)
				return
			}
			for r := 0; r < rounds; r++ {
				id := []byte(fmt.Sprintf("p%d-r%d", p, r))
				_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
					[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, id}},
					[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, id}})
				if err != nil {
					errs <- fmt.Errorf("process %d keygen: %w", p, err)
					continue
				}
				if err := l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, priv); err != nil {
					errs <- fmt.Errorf("process %d sign init: %w", p, err)
				} else if _, _, err = sign(l, h, id, 64, false); err != nil {
					errs <- fmt.Errorf("process %d sign: %w", p, err)
				}
				time.Sleep(30 * time.Millisecond) // clients pause (pacing, not synchronisation); the TPM goes to whoever waits
			}
		}(p)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Everyone's keys are visible to a fifth process.
	l := open(t, spec, store)
	defer l.Close()
	h, _ := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	require.NoError(t, l.FindObjectsInit(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}}))
	found, _ := l.FindObjects(h, 100)
	require.Len(t, found, n*rounds)
}

// A process that signs without pause still hands swtpm over: another
// process logs in and signs while the first is busy, instead of waiting
// until it stops.
func TestBusyLibraryYieldsTheTPM(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	busy := open(t, spec, store)
	defer busy.Close()
	h := provision(t, busy)
	_, priv, err := busy.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}})
	require.NoError(t, err)

	var otherDone sync.WaitGroup
	otherDone.Add(1)
	finished := make(chan struct{})
	holding := make(chan struct{}) // closed once the busy one has signed: it holds the TPM
	go func() {
		defer otherDone.Done()
		defer close(finished)
		<-holding
		l, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: store})
		if !assert.NoError(t, err) {
			return
		}
		defer l.Close()
		s, _ := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
		assert.NoError(t, l.Login(s, ck.CKU_USER, []byte("userpin")))
		assert.NoError(t, l.FindObjectsInit(s, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}}))
		keys, _ := l.FindObjects(s, 1)
		if !assert.Len(t, keys, 1) {
			return
		}
		assert.NoError(t, l.SignInit(s, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, keys[0]))
		_, _, err = sign(l, s, []byte("my turn"), 64, false)
		assert.NoError(t, err)
	}()
	signs, start := 0, time.Now()
	for busyToo := true; busyToo; {
		select {
		case <-finished:
			busyToo = false
		default:
			if time.Since(start) > hangBound {
				t.Fatal("the other process never got the TPM while this one was busy")
			}
			require.NoError(t, busy.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, priv))
			_, _, err := sign(busy, h, []byte("busy"), 64, false)
			require.NoError(t, err)
			if signs++; signs == 1 {
				close(holding)
			}
		}
	}
	otherDone.Wait()
	t.Logf("the other process finished after %v, while this one made %d signatures", time.Since(start), signs)
}
