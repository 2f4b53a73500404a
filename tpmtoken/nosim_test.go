package tpmtoken_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// On a host without a TPM, nothing chosen: no simulator (no seed made, no
// software token offered to every program that lists p11-kit modules);
// the slot says no TPM was found and how to choose one.
func TestNoTPMNoSimulatorUnlessChosen(t *testing.T) {
	if _, err := os.Stat("/dev/tpmrm0"); err == nil {
		t.Skip("this host has a TPM")
	}
	dir := t.TempDir()
	env := map[string]string{"HOME": dir, "TPM11_CONFIG": filepath.Join(dir, "none")}
	cfg := tpmtoken.LoadConfig(func(k string) string { return env[k] })
	require.Equal(t, "", cfg.TPM, "no default backend without a device")
	l, err := tpmtoken.Open(cfg)
	require.NoError(t, err)
	defer l.Close()
	require.False(t, l.Simulated())
	require.Empty(t, l.SlotList(true))
	si, err := l.SlotInfo(0)
	require.NoError(t, err)
	require.Zero(t, si.Flags&ck.CKF_TOKEN_PRESENT)
	require.Contains(t, si.Description, "no TPM")
	require.Contains(t, si.Description, "TPM11_TPM")
	require.LessOrEqual(t, len(si.Description), 64, "fits CK_SLOT_INFO.slotDescription")
	_, err = l.TokenInfo(0)
	require.Equal(t, ck.CKR_TOKEN_NOT_PRESENT, rv(err))
	require.True(t, errors.Is(err, tpm.ErrNoTPM) && strings.Contains(err.Error(), "simulator"), "the error says how to choose: %v", err)
	_, err = os.Stat(filepath.Join(cfg.Store, "simulator-seed"))
	require.True(t, errors.Is(err, os.ErrNotExist), "no simulator seed made")

	// Chosen, it is used.
	env["TPM11_TPM"] = "simulator"
	require.Equal(t, "simulator", tpmtoken.LoadConfig(func(k string) string { return env[k] }).TPM)
}

// The simulator starts from empty NV in every process; its lockout counter
// is kept in the store and put back, so wrong PINs count across processes
// (as on a TPM) and a lockout outlives the process that caused it, until
// the recovery time has passed.
func TestSimulatorLockoutOutlivesTheProcess(t *testing.T) {
	store := t.TempDir()
	openSim := func() *tpmtoken.Library {
		l, err := tpmtoken.Open(tpmtoken.Config{TPM: "simulator", Store: store})
		require.NoError(t, err)
		if _, err := l.Diagnose(); errors.Is(err, tpm.ErrNoSimulator) {
			l.Close()
			t.Skip("built without the simulator")
		}
		return l
	}
	counter := func(l *tpmtoken.Library) uint32 {
		d, err := l.Diagnose()
		require.NoError(t, err)
		return d.DA.Counter
	}
	l := openSim()
	provision(t, l) // one wrong user PIN
	require.Equal(t, uint32(1), counter(l))
	l.Close()

	l = openSim()
	require.Equal(t, uint32(1), counter(l), "the failure counts in the next process too")
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.Login(h, ck.CKU_USER, []byte("wrong-1"))))
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.Login(h, ck.CKU_USER, []byte("wrong-2"))))
	require.Equal(t, ck.CKR_PIN_LOCKED, rv(l.Login(h, ck.CKU_USER, []byte("userpin"))))
	l.Close()

	l = openSim()
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_PIN_LOCKED, rv(l.Login(h, ck.CKU_USER, []byte("userpin"))), "a new process is locked out too")
	ti, err := l.TokenInfo(0)
	require.NoError(t, err)
	require.NotZero(t, ti.Flags&ck.CKF_USER_PIN_LOCKED)
	l.Close()

	// Two recovery intervals later, two failures are forgiven.
	path := filepath.Join(store, "simulator-da")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var st map[string]int64
	require.NoError(t, json.Unmarshal(b, &st))
	st["saved_unix"] = time.Now().Unix() - 2*st["recovery_s"] - 1
	b, _ = json.Marshal(st)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	l = openSim()
	defer l.Close()
	require.Equal(t, uint32(1), counter(l))
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
}
