package tpmtoken_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
)

// C_LoginUser without a user name is C_Login; a name is refused before the
// TPM (the token has no named users) and leaves the session logged out.
func TestLoginUser(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	require.NoError(t, l.Logout(h))
	before := daCounter(t, l)

	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(l.LoginUser(h, ck.CKU_USER, []byte("userpin"), []byte("alice"))))
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(l.LoginUser(h, ck.CKU_SO, []byte("sopin1"), []byte("admin"))))
	info, err := l.SessionInfo(h)
	require.NoError(t, err)
	require.Equal(t, ck.CKS_RW_PUBLIC_SESSION, info.State)
	require.Equal(t, ck.CKR_SESSION_HANDLE_INVALID, rv(l.LoginUser(0x12345, ck.CKU_USER, []byte("userpin"), []byte("alice"))))

	require.NoError(t, l.LoginUser(h, ck.CKU_USER, []byte("userpin"), nil))
	require.Equal(t, ck.CKR_USER_ALREADY_LOGGED_IN, rv(l.LoginUser(h, ck.CKU_USER, []byte("userpin"), []byte{})))
	require.NoError(t, l.Logout(h))
	require.NoError(t, l.LoginUser(h, ck.CKU_SO, []byte("sopin1"), []byte{}))
	require.NoError(t, l.Logout(h))
	require.Equal(t, ck.CKR_USER_TYPE_INVALID, rv(l.LoginUser(h, 7, []byte("userpin"), nil)))
	require.Equal(t, before, daCounter(t, l))
}
