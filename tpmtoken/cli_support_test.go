package tpmtoken_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

func TestLockoutCountsWrongPINs(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	provision(t, l) // one wrong PIN
	st, err := l.Lockout()
	require.NoError(t, err)
	require.Equal(t, uint32(1), st.Counter)
	require.NotZero(t, st.MaxTries)
	require.False(t, st.InLockout)
}

func TestPrivateObjectsCountedWithoutLogin(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l := open(t, spec, store)
	h := provision(t, l)
	n, err := l.PrivateObjects(0)
	require.NoError(t, err)
	require.Zero(t, n)
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{Type: ck.CKA_TOKEN, Value: []byte{1}}, {Type: ck.CKA_EC_PARAMS, Value: tpmtoken.CurveNamed("p256").Params}},
		[]tpmtoken.Attr{{Type: ck.CKA_TOKEN, Value: []byte{1}}})
	require.NoError(t, err)
	l.Close()

	l = open(t, spec, store) // nobody logged in
	defer l.Close()
	n, err = l.PrivateObjects(0)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the private key, not the public one")
	_, err = l.PrivateObjects(1)
	require.Equal(t, ck.CKR_TOKEN_NOT_RECOGNIZED, rv(err), "the empty slot")
}

func TestDestroyTokenNeedsTheSOPIN(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l := open(t, spec, store)
	h := provision(t, l)
	require.Equal(t, ck.CKR_SESSION_EXISTS, rv(l.DestroyToken(0, []byte("sopin1"), false)))
	require.NoError(t, l.CloseSession(h))
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.DestroyToken(0, []byte("wrong-so"), false)))
	ti, err := l.TokenInfo(0)
	require.NoError(t, err)
	require.NotZero(t, ti.Flags&ck.CKF_TOKEN_INITIALIZED, "a wrong SO PIN destroys nothing")
	require.NoError(t, l.DestroyToken(0, []byte("sopin1"), false))
	ents, err := os.ReadDir(filepath.Join(store, "tokens"))
	require.NoError(t, err)
	require.Empty(t, ents, "the token's files are gone")
	l.Close()
	l = open(t, spec, store)
	defer l.Close()
	ti, err = l.TokenInfo(0)
	require.NoError(t, err)
	require.Zero(t, ti.Flags&ck.CKF_TOKEN_INITIALIZED)
}

// After a TPM clear (here: the same store on another TPM) the SO PIN cannot
// be checked; the token can still be removed, unchecked.
func TestDestroyTokenAfterTPMClear(t *testing.T) {
	store := t.TempDir()
	l := open(t, startSwtpm(t), store)
	provision(t, l)
	l.Close()
	l = open(t, startSwtpm(t), store)
	defer l.Close()
	err := l.DestroyToken(0, []byte("sopin1"), false)
	require.Error(t, err)
	require.NotEqual(t, ck.CKR_PIN_INCORRECT, rv(err), "not a wrong PIN: %v", err)
	require.NoError(t, l.DestroyToken(0, nil, true))
	ents, err := os.ReadDir(filepath.Join(store, "tokens"))
	require.NoError(t, err)
	require.Empty(t, ents)
}

func TestConfigFileIsTheOneLoadConfigReads(t *testing.T) {
	dir := t.TempDir()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	e := env(map[string]string{"XDG_CONFIG_HOME": dir})
	require.Equal(t, "/etc/tpm11/config", tpmtoken.ConfigFile(e), "no user file yet")
	p := filepath.Join(dir, "tpm11", "config")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
	require.NoError(t, os.WriteFile(p, []byte("store = /from/xdg\n"), 0o600))
	require.Equal(t, p, tpmtoken.ConfigFile(e))
	require.Equal(t, "/from/xdg", tpmtoken.LoadConfig(e).Store)

	q := filepath.Join(dir, "explicit")
	require.NoError(t, os.WriteFile(q, []byte("store = /from/env\n"), 0o600))
	e = env(map[string]string{"XDG_CONFIG_HOME": dir, "TPM11_CONFIG": q})
	require.Equal(t, q, tpmtoken.ConfigFile(e))
	require.Equal(t, "/from/env", tpmtoken.LoadConfig(e).Store)

	e = env(map[string]string{"HOME": dir})
	require.NoError(t, os.MkdirAll(filepath.Join(dir, ".config", "tpm11"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".config", "tpm11", "config"), []byte("store = /from/home\n"), 0o600))
	require.Equal(t, filepath.Join(dir, ".config", "tpm11", "config"), tpmtoken.ConfigFile(e))
	require.Equal(t, "/from/home", tpmtoken.LoadConfig(e).Store)
}
