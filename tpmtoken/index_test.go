package tpmtoken_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

func findLabel(t *testing.T, l *tpmtoken.Library, s uint64, label string) []uint64 {
	t.Helper()
	require.NoError(t, l.FindObjectsInit(s, []tpmtoken.Attr{{ck.CKA_LABEL, []byte(label)}}))
	got, err := l.FindObjects(s, 100)
	require.NoError(t, err)
	require.NoError(t, l.FindObjectsFinal(s))
	return got
}

// Libraries sharing a store see each other's objects through the object
// index: one made or destroyed by another library behind a library's back,
// before or after its first look, is seen as it is on disk; private
// objects stay hidden until login, as without an index.
func TestObjectIndexAcrossLibraries(t *testing.T) {
	defer func(n int) { store.IndexMin = n }(store.IndexMin)
	store.IndexMin = 8
	spec, dir := startSwtpm(t), t.TempDir()
	a := open(t, spec, dir)
	h := provision(t, a)
	data := func(label string, private bool) []tpmtoken.Attr {
		return []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}, {ck.CKA_TOKEN, []byte{1}},
			{ck.CKA_PRIVATE, []byte{b2i(private)}}, {ck.CKA_LABEL, []byte(label)}, {ck.CKA_VALUE, []byte("v")}}
	}
	for _, label := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		_, err := a.CreateObject(h, data(label, false))
		require.NoError(t, err)
	}
	_, err := a.CreateObject(h, data("secret", true))
	require.NoError(t, err)
	a.Close()
	matches, _ := filepath.Glob(filepath.Join(dir, "tokens", "*", "objects.idx"))
	require.Len(t, matches, 1, "C_Finalize after changes writes the index")
	st, err := os.Stat(matches[0])
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	b := open(t, spec, dir) // looks before the change
	defer b.Close()
	bs, _ := b.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.Len(t, findLabel(t, b, bs, "a"), 1)
	require.Empty(t, findLabel(t, b, bs, "secret"), "a private object before login")

	c := open(t, spec, dir) // looks only after it
	defer c.Close()
	cs, _ := c.OpenSession(0, ck.CKF_SERIAL_SESSION)

	w := open(t, spec, dir) // the other process: changes, never finalizes
	ws, _ := w.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	gone := findLabel(t, w, ws, "b")
	require.Len(t, gone, 1)
	require.NoError(t, w.DestroyObject(ws, gone[0]))
	_, err = w.CreateObject(ws, data("new", false))
	require.NoError(t, err)

	for name, lib := range map[string]*tpmtoken.Library{"looked before": b, "looks after": c} {
		s := bs
		if lib == c {
			s = cs
		}
		require.Empty(t, findLabel(t, lib, s, "b"), "%s: destroyed object resurrected", name)
		require.Len(t, findLabel(t, lib, s, "new"), 1, "%s: new object hidden", name)
		require.Len(t, findLabel(t, lib, s, "j"), 1, name)
	}
	require.NoError(t, c.Login(cs, ck.CKU_USER, []byte("userpin")))
	require.Len(t, findLabel(t, c, cs, "secret"), 1, "a private object after login")
	require.NoError(t, c.Logout(cs))
	require.Empty(t, findLabel(t, c, cs, "secret"), "a private object after logout")
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}
