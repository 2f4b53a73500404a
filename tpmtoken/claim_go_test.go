package tpmtoken_test

import (
	"crypto/elliptic"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// Library.Claim (the tpm11 command's "find a free ID, make the key" step)
// excludes other libraries on the same store, as it does other processes
// (a file lock): two libraries claiming at once are never inside together.
func TestClaimExcludesOtherLibraries(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l1 := open(t, spec, store)
	defer l1.Close()
	require.Equal(t, ck.CKR_SLOT_ID_INVALID, rv(l1.Claim(99, func() error { return nil })))
	require.Equal(t, ck.CKR_TOKEN_NOT_RECOGNIZED, rv(l1.Claim(0, func() error { t.Error("ran without a token"); return nil })))
	provision(t, l1)
	l2 := open(t, spec, store)
	defer l2.Close()

	stop := errors.New("f's own error")
	require.ErrorIs(t, l1.Claim(0, func() error { return stop }), stop)

	var inside, overlaps, runs atomic.Int32
	var wg sync.WaitGroup
	for _, l := range []*tpmtoken.Library{l1, l2, l1, l2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				assert.NoError(t, l.Claim(0, func() error {
					if inside.Add(1) != 1 {
						overlaps.Add(1)
					}
					runs.Add(1)
					runtime.Gosched() // widen the window another claim would need
					inside.Add(-1)
					return nil
				}))
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int32(200), runs.Load())
	require.Zero(t, overlaps.Load(), "two claims were inside at once")
}

// The curve look-ups the tool uses agree with the one table: by
// CKA_EC_PARAMS, by Go curve, by name; unknown ones are nil.
func TestCurveLookups(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P224(), elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		byGo := tpmtoken.CurveOfGo(c)
		require.NotNil(t, byGo, c.Params().Name)
		require.Equal(t, c.Params().BitSize, byGo.Bits)
		require.Same(t, byGo, tpmtoken.CurveOf(byGo.Params))
		require.Same(t, byGo, tpmtoken.CurveNamed(byGo.Name))
	}
	require.Same(t, tpmtoken.CurveOf(p256), tpmtoken.CurveNamed("p256"))
	require.Nil(t, tpmtoken.CurveOf([]byte{0x06, 0x03, 0x2b, 0x65, 0x70})) // Ed25519's OID: not a TPM curve
	require.Nil(t, tpmtoken.CurveOf(nil))
	require.Nil(t, tpmtoken.CurveNamed("secp256k1"))
}
