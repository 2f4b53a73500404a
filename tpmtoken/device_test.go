package tpmtoken_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// The production path, a TPM character device (device:/dev/tpmrm0 or
// /dev/tpm0), on an emulated device with the kernel's semantics (one write
// one command, one read one whole response; the relay fails the test on a
// command written in pieces): a token is made, a key generated, signed
// with, the signature checked; a device that stops answering fails within
// the deadline and the next call after it answers again succeeds (the
// device is opened again); the TPM is left empty.
func TestDeviceBackend(t *testing.T) {
	dev := swtpmtest.Device(t)
	store := t.TempDir()
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: dev.Spec, Store: store, Deadlines: tpm.Deadlines{Command: 500 * time.Millisecond}})
	require.NoError(t, err)
	defer l.Close()
	require.False(t, l.Simulated())
	si, err := l.SlotInfo(0)
	require.NoError(t, err)
	require.NotZero(t, si.Flags&ck.CKF_HW_SLOT)
	require.NotZero(t, si.Flags&ck.CKF_TOKEN_PRESENT)
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
		sig, _, err := sign(l, h, []byte("device"), 64, false)
		if err == nil {
			d := sha256.Sum256([]byte("device"))
			requireECDSA(t, pk, d[:], sig)
		}
		return err
	}
	require.NoError(t, signOnce())

	dev.Stall(true)
	start := time.Now()
	require.Equal(t, ck.CKR_DEVICE_ERROR, rv(signOnce()))
	require.Less(t, time.Since(start), time.Second, "a wedged device fails within the deadline")
	dev.Stall(false)
	require.NoError(t, signOnce(), "the first call after the device answers again succeeds")
	require.NotZero(t, dev.Commands.Load())
}
