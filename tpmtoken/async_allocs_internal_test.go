package tpmtoken

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/asyncq"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// mallocs is how many heap allocations f made (testing.AllocsPerRun's
// measure: runtime.MemStats.Mallocs, which counts every goroutine's). It
// is used where f can run only once: AllocsPerRun calls f again.
func mallocs(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.Mallocs - a.Mallocs
}

// The caller's path from C_Sign to CKR_PENDING on an async session
// allocates nothing (issue 25: its p99 was the garbage it made). The
// worker is held by another job meanwhile, so the signature stays queued
// and nothing else in the process allocates while it is measured; it is
// then released, and the signature completes and verifies with Go's
// crypto/ecdsa, so the path measured is the real one. The count is the
// process's (as testing.AllocsPerRun's), so the least of several rounds
// is asserted: a path that allocates does so in every round, while a
// timer's goroutine may add one to some round on a loaded machine.
func TestAsyncSignPendsWithoutAllocating(t *testing.T) {
	l, err := Open(Config{TPM: swtpmtest.Socket(t), Store: t.TempDir()})
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("allocs")))
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_SO, []byte("sopin1")))
	require.NoError(t, l.InitPIN(h, []byte("userpin")))
	require.NoError(t, l.Logout(h))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	_, privH, err := l.GenerateKeyPair(h, Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]Attr{{ck.CKA_EC_PARAMS, []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}}}, nil)
	require.NoError(t, err)
	info, err := l.GetAttributeValue(h, privH, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pub, err := x509.ParsePKIXPublicKey(info[0].Value)
	require.NoError(t, err)

	a, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION|ck.CKF_ASYNC_SESSION)
	require.NoError(t, err)
	m := Mechanism{Type: ck.CKM_ECDSA_SHA256}
	msg := []byte("bench")
	dst := Dest{Cap: 64, Ref: "the caller's buffer"}

	// A warm-up signature: the key is loaded and every lazily made
	// record exists, as in any steady state.
	require.NoError(t, l.SignInit(a, m, privH))
	_, err = l.Sign(a, msg, Dest{Cap: 64, Wait: true})
	require.NoError(t, err)

	least := ^uint64(0)
	for round := 0; round < 4; round++ {
		// SignInit may need the TPM (to load the key): before the hold.
		require.NoError(t, l.SignInit(a, m, privH))
		release, running := make(chan struct{}), make(chan struct{})
		hold := asyncq.Submit(l.q, 1<<62, func(*tpm.Engine) (int, error) {
			close(running)
			<-release
			return 0, nil
		}, nil)
		select {
		case <-running:
		case <-time.After(time.Minute):
			t.Fatal("the worker never ran the holding job")
		}
		var serr error
		n := mallocs(func() { _, serr = l.Sign(a, msg, dst) })
		require.Equal(t, ck.CKR_PENDING, ck.ToRV(serr), "queued behind the holding job, so pending")
		close(release)
		least = min(least, n)
		t.Logf("round %d: %d allocations", round, n)
		require.True(t, hold.Wait(time.Minute))

		var res Result
		require.Eventually(t, func() bool {
			var done bool
			res, done, err = l.AsyncComplete(a, "C_Sign", true)
			return done
		}, time.Minute, time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, "the caller's buffer", res.Out)
		digest := sha256.Sum256(msg)
		require.Len(t, res.Data, 64)
		ok := ecdsa.Verify(pub.(*ecdsa.PublicKey), digest[:], new(big.Int).SetBytes(res.Data[:32]), new(big.Int).SetBytes(res.Data[32:]))
		require.True(t, ok, "the pending signature verifies")
	}
	require.Zero(t, least, "heap allocations on the way from C_Sign to CKR_PENDING, least of the rounds")
}
