package tpmtoken_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"math/big"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

// Two libraries (standing in for two processes) on one swtpm, each with
// more keys than its 3 object slots, sign round-robin at once: they take
// turns, each handing the TPM over emptied (its keys' contexts kept, see
// tpm/context.go) and finding it as the other left it. Then swtpm is
// restarted (every saved context stops loading) and they sign on. Every
// signature verifies with Go's ECDSA against the key's own public key, and
// the TPM is left with nothing loaded (NewServer's check at cleanup).
func TestManyKeysTwoLibrariesAndARestart(t *testing.T) {
	srv := swtpmtest.NewServer(t)
	store := t.TempDir()
	first := open(t, srv.Spec, store)
	provision(t, first)
	first.Close()

	type signer struct {
		l    *tpmtoken.Library
		h    uint64
		keys []uint64
		pubs []any
	}
	var signers []*signer
	for p := 0; p < 2; p++ {
		l := open(t, srv.Spec, store)
		defer l.Close()
		h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
		require.NoError(t, err)
		require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
		s := &signer{l: l, h: h}
		for i := 0; i < 6; i++ {
			pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
				[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
			require.NoError(t, err)
			s.keys, s.pubs = append(s.keys, priv), append(s.pubs, spki(t, l, h, pub))
		}
		signers = append(signers, s)
	}
	// rounds signs with every key of both libraries at once, rounds times.
	rounds := func(what string, n int) {
		var wg sync.WaitGroup
		errs := make(chan error, 2*n*6)
		for p, s := range signers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < n; r++ {
					for i, k := range s.keys {
						msg := []byte(fmt.Sprintf("%s p%d r%d k%d", what, p, r, i))
						if err := s.l.SignInit(s.h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, k); err != nil {
							errs <- fmt.Errorf("%s: %w", msg, err)
							continue
						}
						sig, _, err := sign(s.l, s.h, msg, 64, false)
						if err != nil {
							errs <- fmt.Errorf("%s: %w", msg, err)
							continue
						}
						d := sha256.Sum256(msg)
						if !ecdsa.Verify(s.pubs[i].(*ecdsa.PublicKey), d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
							errs <- fmt.Errorf("%s: the signature does not verify", msg)
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	rounds("before", 4)
	srv.Kill()
	srv.Start()
	rounds("after a restart", 3)
}
