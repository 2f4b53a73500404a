package tpmtoken_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// requireMismatch checks that l shows its token 0 as another TPM's
// plainly: TPMCheck, Diagnose, the slot description, and C_Login (a device
// error that says why, with no PIN tried: the DA counter does not move).
func requireMismatch(t *testing.T, l *tpmtoken.Library) {
	t.Helper()
	c, err := l.TPMCheck(0)
	require.NoError(t, err)
	require.True(t, c.Known && c.Mismatch, "%+v", c)
	d, err := l.Diagnose()
	require.NoError(t, err)
	require.Len(t, d.Tokens, 1)
	require.True(t, d.Tokens[0].Mismatch)
	si, err := l.SlotInfo(0)
	require.NoError(t, err)
	require.Contains(t, si.Description, "another TPM")
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	loginErr := l.Login(h, ck.CKU_USER, []byte("userpin"))
	require.Equal(t, ck.CKR_DEVICE_ERROR, rv(loginErr))
	require.Contains(t, loginErr.Error(), "belongs to another TPM, or this TPM was cleared")
	d2, err := l.Diagnose()
	require.NoError(t, err)
	require.Equal(t, d.DA.Counter, d2.DA.Counter, "no PIN tried")
	t.Logf("slot: %q; login: %v", si.Description, loginErr)
}

// A token records the TPM it belongs to (its storage root's name); opened
// against another TPM, or the same one after TPM2_Clear, it says so
// plainly instead of failing with TPM_RC_INTEGRITY. A token from before
// the name was recorded is checked by loading its storage key.
func TestTokenOfAnotherTPM(t *testing.T) {
	specA, specB, store := startSwtpm(t), startSwtpm(t), t.TempDir()
	l := open(t, specA, store)
	provision(t, l)
	c, err := l.TPMCheck(0)
	require.NoError(t, err)
	require.False(t, c.Mismatch)
	l.Close()
	recPath := func() string {
		m, err := filepath.Glob(filepath.Join(store, "tokens", "*", "token.json"))
		require.NoError(t, err)
		require.Len(t, m, 1)
		return m[0]
	}
	var rec map[string]any
	b, err := os.ReadFile(recPath())
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rec))
	require.NotEmpty(t, rec["tpm_name"], "the token records its TPM")

	l = open(t, specA, store)
	c, err = l.TPMCheck(0)
	require.NoError(t, err)
	require.True(t, c.Known && !c.Mismatch && c.Recorded == c.Current, "%+v", c)
	l.Close()

	t.Run("another TPM", func(t *testing.T) {
		l := open(t, specB, store)
		defer l.Close()
		requireMismatch(t, l)
	})

	// A token made before the name was recorded.
	delete(rec, "tpm_name")
	b, _ = json.Marshal(rec)
	require.NoError(t, os.WriteFile(recPath(), b, 0o600))
	t.Run("another TPM, no name recorded", func(t *testing.T) {
		l := open(t, specB, store)
		defer l.Close()
		requireMismatch(t, l)
	})
	t.Run("its TPM, no name recorded", func(t *testing.T) {
		l := open(t, specA, store)
		defer l.Close()
		c, err := l.TPMCheck(0)
		require.NoError(t, err)
		require.True(t, c.Known && !c.Mismatch, "%+v", c)
		h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
		require.NoError(t, err)
		require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	})

	t.Run("its TPM cleared", func(t *testing.T) {
		dev, err := tpm.Open(specA, t.TempDir())
		require.NoError(t, err)
		_, err = tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)}}.Execute(dev.TPM)
		require.NoError(t, err)
		dev.Close()
		l := open(t, specA, store)
		defer l.Close()
		requireMismatch(t, l)
	})
}
