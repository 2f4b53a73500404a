package tpmtoken_test

import (
	"crypto/sha256"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

// The asynchronous functions of PKCS#11 3.2 (docs/async.md) from Go, on a
// TPM 20 ms slow per command (swtpmtest.Slow) so that every TPM job pends:
// the C tests (testdata/c/async_test.c, async_join_test.c) drive the same
// rules through the ABI.

// hangBound bounds every wait for an event: it only catches a hang.
const hangBound = 60 * time.Second

const slowTPM = 20 * time.Millisecond

// waitFor polls cond until it holds, failing after hangBound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, hangBound, time.Millisecond, "waiting for %s", what)
}

// asyncSetup opens a library on a slow TPM with a provisioned token, a
// logged-in synchronous session and an EC token key pair; it returns the
// key's handles and its public key as Go parses it.
func asyncSetup(t *testing.T, spec, store string) (l *tpmtoken.Library, sync, pubH, privH uint64, pub any) {
	t.Helper()
	l = open(t, swtpmtest.Slow(t, spec, slowTPM), store)
	sync = provision(t, l)
	pubH, privH = ecTokenPair(t, l, sync, 0x51)
	res, err := l.GetAttributeValue(sync, privH, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pub, err = x509.ParsePKIXPublicKey(res[0].Value)
	require.NoError(t, err)
	return l, sync, pubH, privH, pub
}

func ecTokenPair(t *testing.T, l *tpmtoken.Library, h uint64, id byte) (uint64, uint64) {
	t.Helper()
	pubH, privH, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, []byte{id}}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte{id}}})
	require.NoError(t, err)
	return pubH, privH
}

func openAsync(t *testing.T, l *tpmtoken.Library) uint64 {
	t.Helper()
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION|ck.CKF_ASYNC_SESSION)
	require.NoError(t, err)
	return h
}

// complete polls C_AsyncComplete for fn until the operation ends.
func complete(t *testing.T, l *tpmtoken.Library, h uint64, fn string) (tpmtoken.Result, error) {
	t.Helper()
	var res tpmtoken.Result
	var err error
	waitFor(t, fn+" to complete", func() bool {
		var consumed bool
		res, consumed, err = l.AsyncComplete(h, fn, true)
		if !consumed {
			require.Equal(t, ck.CKR_PENDING, rv(err), "not consumed, so pending")
		}
		return consumed
	})
	return res, err
}

// A signature on an async session pends; while it does the session
// refuses other calls (length queries included) and C_AsyncComplete names
// are checked; completion hands back the caller's buffer reference and a
// signature Go verifies, once.
func TestAsyncSignPendsThenCompletes(t *testing.T) {
	l, _, _, privH, pub := asyncSetup(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	a := openAsync(t, l)
	msg := []byte("signed while the caller did other work")
	digest := sha256.Sum256(msg)
	m := tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}

	require.NoError(t, l.SignInit(a, m, privH))
	_, n, err := sign(l, a, msg, 0, true)
	require.NoError(t, err, "a length query never pends")
	require.Equal(t, 64, n)
	_, err = l.Sign(a, msg, tpmtoken.Dest{Cap: n, Ref: "the caller's buffer"})
	require.Equal(t, ck.CKR_PENDING, rv(err))

	_, _, err = l.OutputLen(a, tpmtoken.OpSign, tpmtoken.Single, len(msg))
	require.Equal(t, ck.CKR_OPERATION_ACTIVE, rv(err), "a length query on a session with a pending operation")
	require.Equal(t, ck.CKR_OPERATION_ACTIVE, rv(l.SignInit(a, m, privH)))
	_, err = l.GenerateRandom(a, 8, tpmtoken.Dest{Cap: 8})
	require.Equal(t, ck.CKR_OPERATION_ACTIVE, rv(err))

	_, _, err = l.AsyncComplete(a, "C_Verify", true)
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err), "C_Verify never pends")
	_, _, err = l.AsyncComplete(a, "C_Sign", false)
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err), "C_Sign has outputs: a result is required")
	_, _, err = l.AsyncComplete(a, "C_Decrypt", true)
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "another function than the pending one")

	res, err := complete(t, l, a, "C_Sign")
	require.NoError(t, err)
	require.Equal(t, "the caller's buffer", res.Out)
	requireECDSA(t, pub, digest[:], res.Data)
	_, _, err = l.AsyncComplete(a, "C_Sign", true)
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "a result is consumed once")

	// The session is free again; a synchronous wait (Dest.Wait) never pends.
	require.NoError(t, l.SignInit(a, m, privH))
	sig, err := l.Sign(a, msg, tpmtoken.Dest{Cap: 64, Wait: true})
	require.NoError(t, err)
	requireECDSA(t, pub, digest[:], sig)
}

// Random bytes, a key pair and a decryption pend too; C_SessionCancel
// cancels only the operations its flags name.
func TestAsyncCancel(t *testing.T) {
	l, _, _, privH, _ := asyncSetup(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	a := openAsync(t, l)

	_, err := l.GenerateRandom(a, 16, tpmtoken.Dest{Cap: 16})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	res, err := complete(t, l, a, "C_GenerateRandom")
	require.NoError(t, err)
	require.Len(t, res.Data, 16)

	require.NoError(t, l.SignInit(a, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, privH))
	_, err = l.Sign(a, make([]byte, 32), tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	require.NoError(t, l.SessionCancel(a, ck.CKF_DECRYPT|ck.CKF_GENERATE_KEY_PAIR))
	_, err = complete(t, l, a, "C_Sign")
	require.NoError(t, err, "cancelling other operations leaves the signature")

	require.NoError(t, l.SignInit(a, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, privH))
	_, err = l.Sign(a, make([]byte, 32), tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	require.NoError(t, l.SessionCancel(a, ck.CKF_SIGN))
	_, _, err = l.AsyncComplete(a, "C_Sign", true)
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "a cancelled operation is gone")
	require.NoError(t, l.SignInit(a, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, privH), "and the session is free")
	require.NoError(t, l.SessionCancel(a, ck.CKF_SIGN), "an operation not yet run is cancelled too")
	_, err = l.Sign(a, make([]byte, 32), tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err))

	_, _, err = l.GenerateKeyPair(a, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
	require.Equal(t, ck.CKR_PENDING, rv(err))
	res, err = complete(t, l, a, "C_GenerateKeyPair")
	require.NoError(t, err)
	require.Len(t, res.Objects, 2)
	got, err := l.GetAttributeValue(a, res.Objects[1], []ck.AttributeType{ck.CKA_CLASS})
	require.NoError(t, err)
	require.Equal(t, ulong(ck.CKO_PRIVATE_KEY), got[0].Value)

	require.Equal(t, ck.CKR_SESSION_HANDLE_INVALID, rv(l.SessionCancel(a+1000, ck.CKF_SIGN)))
}

// A detached signature and key-pair generation outlive their session and
// C_Finalize (Library.Close waits for them); a second library on the same
// token joins them by ID, once each, only as the logged-in user, with a
// buffer large enough, and the joined key signs.
func TestAsyncDetachJoinAcrossLibraries(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l, _, _, privH, pub := asyncSetup(t, spec, store)
	a := openAsync(t, l)
	msg := []byte("detached")
	digest := sha256.Sum256(msg)

	// Only signatures and token key pairs can be detached.
	_, err := l.AsyncGetID(a, "C_Sign")
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "nothing pending")
	_, err = l.AsyncGetID(a, "C_Verify")
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err))
	_, err = l.GenerateRandom(a, 16, tpmtoken.Dest{Cap: 16})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	_, err = l.AsyncGetID(a, "C_GenerateRandom")
	require.Equal(t, ck.CKR_STATE_UNSAVEABLE, rv(err), "random bytes are secret: never stored")
	_, err = complete(t, l, a, "C_GenerateRandom")
	require.NoError(t, err)

	require.NoError(t, l.SignInit(a, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, privH))
	_, err = l.Sign(a, msg, tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	_, err = l.AsyncGetID(a, "C_GenerateKeyPair")
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "another function than the pending one")
	sigID, err := l.AsyncGetID(a, "C_Sign")
	require.NoError(t, err)
	_, _, err = l.AsyncComplete(a, "C_Sign", true)
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "detached: no longer the session's")

	_, _, err = l.GenerateKeyPair(a, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, []byte{0x77}}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte{0x77}}})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	keyID, err := l.AsyncGetID(a, "C_GenerateKeyPair")
	require.NoError(t, err)
	require.NotEqual(t, sigID, keyID)
	require.NoError(t, l.CloseSession(a), "closing the session leaves detached work running")
	l.Close() // C_Finalize: waits for the detached operations and records them

	l2 := open(t, spec, store)
	defer l2.Close()
	b := openAsync(t, l2)
	require.Equal(t, ck.CKR_SAVED_STATE_INVALID, rv(l2.AsyncJoin(b, "C_Sign", sigID, tpmtoken.Dest{Cap: 64})),
		"only the logged-in user joins")
	require.NoError(t, l2.Login(b, ck.CKU_USER, []byte("userpin")))
	require.Equal(t, ck.CKR_SAVED_STATE_INVALID, rv(l2.AsyncJoin(b, "C_Sign", keyID, tpmtoken.Dest{Cap: 64})),
		"an ID joins as the function that made it")
	require.Equal(t, ck.CKR_SAVED_STATE_INVALID, rv(l2.AsyncJoin(b, "C_Sign", sigID^keyID^1, tpmtoken.Dest{Cap: 64})),
		"an unknown ID")
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(l2.AsyncJoin(b, "C_Verify", sigID, tpmtoken.Dest{Cap: 64})))
	err = l2.AsyncJoin(b, "C_Sign", sigID, tpmtoken.Dest{Cap: 10})
	require.Equal(t, ck.CKR_BUFFER_TOO_SMALL, rv(err))
	require.Equal(t, uint64(64), err.(*ck.Error).Needed)

	require.NoError(t, l2.AsyncJoin(b, "C_Sign", sigID, tpmtoken.Dest{Cap: 64, Ref: "joined"}))
	res, err := complete(t, l2, b, "C_Sign")
	require.NoError(t, err)
	require.Equal(t, "joined", res.Out)
	requireECDSA(t, pub, digest[:], res.Data)
	require.Equal(t, ck.CKR_SAVED_STATE_INVALID, rv(l2.AsyncJoin(b, "C_Sign", sigID, tpmtoken.Dest{Cap: 64})),
		"a result is joined once")

	require.NoError(t, l2.AsyncJoin(b, "C_GenerateKeyPair", keyID, tpmtoken.Dest{}))
	res, err = complete(t, l2, b, "C_GenerateKeyPair")
	require.NoError(t, err)
	require.Len(t, res.Objects, 2)
	got, err := l2.GetAttributeValue(b, res.Objects[0], []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO, ck.CKA_ID})
	require.NoError(t, err)
	require.Equal(t, []byte{0x77}, got[1].Value)
	newPub, err := x509.ParsePKIXPublicKey(got[0].Value)
	require.NoError(t, err)
	require.NoError(t, l2.SignInit(b, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, res.Objects[1]))
	sig, err := l2.Sign(b, msg, tpmtoken.Dest{Cap: 64, Wait: true})
	require.NoError(t, err)
	requireECDSA(t, newPub, digest[:], sig)
}

// Joined in the same library before it finished, a detached operation
// pends on the joining session until it does; C_SessionCancel cancels a
// joined operation whatever its flags.
func TestAsyncJoinWhileRunning(t *testing.T) {
	l, _, _, privH, pub := asyncSetup(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	a, b := openAsync(t, l), openAsync(t, l)
	msg := []byte("joined while running")
	digest := sha256.Sum256(msg)
	require.NoError(t, l.SignInit(a, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, privH))
	_, err := l.Sign(a, msg, tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	id, err := l.AsyncGetID(a, "C_Sign")
	require.NoError(t, err)
	require.NoError(t, l.AsyncJoin(b, "C_Sign", id, tpmtoken.Dest{Cap: 64}))
	res, err := complete(t, l, b, "C_Sign")
	require.NoError(t, err)
	requireECDSA(t, pub, digest[:], res.Data)

	require.NoError(t, l.SignInit(a, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, privH))
	_, err = l.Sign(a, msg, tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	id, err = l.AsyncGetID(a, "C_Sign")
	require.NoError(t, err)
	require.NoError(t, l.AsyncJoin(b, "C_Sign", id, tpmtoken.Dest{Cap: 64}))
	require.NoError(t, l.SessionCancel(b, ck.CKF_DECRYPT))
	_, _, err = l.AsyncComplete(b, "C_Sign", true)
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err), "a joined operation is cancelled by any flags")
}

// C_Finalize with operations pending on async sessions (not detached)
// cancels them and returns; the TPM is left empty (swtpmtest's leak check
// at cleanup) and the token works in the next library.
func TestAsyncFinalizeWhilePending(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l, _, _, privH, pub := asyncSetup(t, spec, store)
	a, b := openAsync(t, l), openAsync(t, l)
	require.NoError(t, l.SignInit(a, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, privH))
	_, err := l.Sign(a, make([]byte, 32), tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	_, _, err = l.GenerateKeyPair(b, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, []byte{0x66}}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte{0x66}}})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(hangBound):
		t.Fatal("C_Finalize hangs with operations pending")
	}

	l2 := open(t, spec, store)
	defer l2.Close()
	h, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l2.Login(h, ck.CKU_USER, []byte("userpin")))
	require.NoError(t, l2.FindObjectsInit(h, []tpmtoken.Attr{{ck.CKA_ID, []byte{0x66}}}))
	found, err := l2.FindObjects(h, 10)
	require.NoError(t, err)
	require.NoError(t, l2.FindObjectsFinal(h))
	require.Empty(t, found, "a cancelled key-pair generation leaves no object")
	require.NoError(t, l2.FindObjectsInit(h, []tpmtoken.Attr{{ck.CKA_ID, []byte{0x51}}, {ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}}))
	found, err = l2.FindObjects(h, 10)
	require.NoError(t, err)
	require.NoError(t, l2.FindObjectsFinal(h))
	require.Len(t, found, 1)
	msg := []byte("after finalize")
	digest := sha256.Sum256(msg)
	require.NoError(t, l2.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, found[0]))
	sig, err := l2.Sign(h, msg, tpmtoken.Dest{Cap: 64})
	require.NoError(t, err)
	requireECDSA(t, pub, digest[:], sig)
}
