package tpmtoken_test

import (
	"crypto/ecdsa"
	"math/big"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// The operation driver under the race detector: one session, one thread
// signing with a P-256 key into a 64-byte buffer, another ending the
// operation and starting an RSA-2048 one (256-byte signatures) meanwhile.
// The signer only ever gets a signature that fits (and verifies),
// CKR_BUFFER_TOO_SMALL with 256, or CKR_OPERATION_ACTIVE /
// CKR_OPERATION_NOT_INITIALIZED; never more bytes than its capacity.
func TestOperationReplacedDuringCall(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	ecPub, ecPriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
	require.NoError(t, err)
	_, rsaPriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}}, nil)
	require.NoError(t, err)
	pk := spki(t, l, h, ecPub).(*ecdsa.PublicKey)
	digest := make([]byte, 32)

	const calls = 300
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() { // B: replaces the operation
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = l.SessionCancel(h, ck.CKF_SIGN)
			_ = l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS}, rsaPriv)
		}
	}()
	var ok, met int
	for i := 0; i < calls; i++ {
		_ = l.SessionCancel(h, ck.CKF_SIGN)
		_ = l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, ecPriv)
		sig, err := l.Sign(h, digest, tpmtoken.Dest{Cap: 64})
		switch rv(err) {
		case ck.CKR_OK:
			require.Len(t, sig, 64)
			require.True(t, ecdsa.Verify(pk, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])), "a signature by the EC key")
			ok++
		case ck.CKR_BUFFER_TOO_SMALL:
			var ce *ck.Error
			require.ErrorAs(t, err, &ce)
			require.EqualValues(t, 256, ce.Needed)
			require.Nil(t, sig)
			met++
		case ck.CKR_OPERATION_ACTIVE, ck.CKR_OPERATION_NOT_INITIALIZED:
			require.Nil(t, sig)
		default:
			t.Fatalf("C_Sign: %v", err)
		}
	}
	close(done)
	wg.Wait()
	require.NotZero(t, ok, "no signature made")
	t.Logf("%d calls: %d signed, %d met the RSA operation", calls, ok, met)
}

// §5.2 through the driver: a single-part call after an update is refused
// and ends the operation; a length query or a short buffer keeps it.
func TestRefusedSinglePartEndsTheOperation(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	sha := tpmtoken.Mechanism{Type: ck.CKM_SHA256}
	require.NoError(t, l.DigestInit(h, sha))
	require.NoError(t, l.DigestUpdate(h, []byte("a")))
	_, err := l.Digest(h, []byte("b"), tpmtoken.Dest{Cap: 32})
	require.Equal(t, ck.CKR_OPERATION_ACTIVE, rv(err))
	_, err = l.DigestFinal(h, tpmtoken.Dest{Cap: 32})
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err))

	require.NoError(t, l.DigestInit(h, sha))
	_, err = l.Digest(h, []byte("ab"), tpmtoken.Dest{Cap: 31})
	require.Equal(t, ck.CKR_BUFFER_TOO_SMALL, rv(err))
	d, err := l.Digest(h, []byte("ab"), tpmtoken.Dest{Cap: 32})
	require.NoError(t, err)
	require.Len(t, d, 32)
	_, err = l.Digest(h, []byte("ab"), tpmtoken.Dest{Cap: 32})
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "a finished operation is ended")
}
