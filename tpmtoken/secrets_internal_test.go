package tpmtoken

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// The value a login unseals (the storage key's authValue) is wiped, not
// left to the garbage collector: at C_Logout, and at C_Finalize for a
// token still logged in. (PINs are wiped by the module's C wrappers, which
// made the copies: testdata/c/secrets_test.c scans a process for them.)
func TestUnsealedValueWiped(t *testing.T) {
	l, err := Open(Config{TPM: swtpmtest.Socket(t), Store: t.TempDir()})
	require.NoError(t, err)
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("t")))
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_SO, []byte("sopin1")))
	require.NoError(t, l.InitPIN(h, []byte("userpin")))
	require.NoError(t, l.Logout(h))

	tok := l.slots[0].tok
	unsealed := func() []byte {
		v, err := do(l, 0, func(*tpm.Engine) ([]byte, error) { return tok.storage.Auth, nil })
		require.NoError(t, err)
		return v
	}
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	v := unsealed()
	require.Len(t, v, 32)
	require.NoError(t, l.Logout(h))
	require.Equal(t, make([]byte, 32), v, "wiped at C_Logout")

	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	v = unsealed()
	require.False(t, bytes.Equal(v, make([]byte, 32)))
	l.Close()
	require.Equal(t, make([]byte, 32), v, "wiped at C_Finalize")
}
