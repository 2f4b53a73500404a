package tpmtoken_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config")
	require.NoError(t, os.WriteFile(file, []byte("# comment\ntpm = swtpm:unix:/from/file\nstore=/file/store\nlog = info\n"), 0o600))
	env := map[string]string{"TPM11_CONFIG": file, "TPM11_STORE": "/env/store", "HOME": dir}
	c := tpmtoken.LoadConfig(func(k string) string { return env[k] })
	require.Equal(t, "swtpm:unix:/from/file", c.TPM, "file over default")
	require.Equal(t, "/env/store", c.Store, "env over file")
	require.Equal(t, "info", c.Log)

	c = tpmtoken.LoadConfig(func(k string) string { return map[string]string{"HOME": dir}[k] })
	require.Equal(t, filepath.Join(dir, ".local/share/tpm11"), c.Store)
	require.Equal(t, "", c.Log, "quiet by default")
}

// An unreachable TPM never fails the host: the library opens, the slot has
// no token, and token calls say CKR_TOKEN_NOT_PRESENT.
func TestUnreachableTPM(t *testing.T) {
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: "swtpm:unix:" + filepath.Join(t.TempDir(), "nothing"), Store: t.TempDir()})
	require.NoError(t, err)
	defer l.Close()
	require.Empty(t, l.SlotList(true))
	require.Len(t, l.SlotList(false), 1)
	si, err := l.SlotInfo(0)
	require.NoError(t, err)
	require.Zero(t, si.Flags&ck.CKF_TOKEN_PRESENT)
	_, err = l.TokenInfo(0)
	require.Equal(t, ck.CKR_TOKEN_NOT_PRESENT, ck.ToRV(err))
	_, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.Equal(t, ck.CKR_TOKEN_NOT_PRESENT, ck.ToRV(err))
}

// The command deadlines come from the environment over the config file;
// zero means tpm.DefaultDeadlines.
func TestConfigDeadlines(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config")
	require.NoError(t, os.WriteFile(file, []byte("timeout = 5s\nkeygen_timeout = 10m\n"), 0o600))
	env := map[string]string{"TPM11_CONFIG": file, "TPM11_TIMEOUT": "750ms"}
	c := tpmtoken.LoadConfig(func(k string) string { return env[k] })
	require.Equal(t, 750*time.Millisecond, c.Deadlines.Command, "env over file")
	require.Equal(t, 10*time.Minute, c.Deadlines.KeyGen)
	c = tpmtoken.LoadConfig(func(k string) string { return map[string]string{"TPM11_CONFIG": filepath.Join(dir, "none")}[k] })
	require.Zero(t, c.Deadlines)
}
