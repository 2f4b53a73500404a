package tpmtoken_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// Wrong PINs are counted by the TPM, not a file: the token flags follow the
// TPM's DA counter, and once it locks even the right PIN is refused.
func TestPINLockoutIsTheTPMs(t *testing.T) {
	// Set DA parameters on the test's own swtpm first (4 tries, long recovery).
	tr := swtpmtest.Start(t)
	require.NoError(t, swtpmtest.SetDAParameters(tr, 4, 1000, 1000))
	e := tpm.NewEngine(tr, 3)
	st, err := e.DAState()
	require.NoError(t, err)
	require.Equal(t, uint32(4), st.MaxTries)

	spec, store := startSwtpm(t), t.TempDir()
	l := open(t, spec, store)
	defer l.Close()
	h := provision(t, l) // one wrong PIN already
	require.NoError(t, l.Logout(h))
	info, err := l.TokenInfo(0)
	require.NoError(t, err)
	require.NotZero(t, info.Flags&ck.CKF_USER_PIN_COUNT_LOW, "a wrong PIN shows as count low")
	require.Zero(t, info.Flags&ck.CKF_USER_PIN_LOCKED)

	// swtpm's default is 3 tries: two more wrong PINs reach the limit.
	var last error
	for i := 0; i < 3; i++ {
		last = l.Login(h, ck.CKU_USER, []byte("wrong-pin"))
	}
	require.Equal(t, ck.CKR_PIN_LOCKED, ck.ToRV(last))
	require.Equal(t, ck.CKR_PIN_LOCKED, ck.ToRV(l.Login(h, ck.CKU_USER, []byte("userpin"))), "lockout refuses the right PIN too")
	info, err = l.TokenInfo(0)
	require.NoError(t, err)
	require.NotZero(t, info.Flags&ck.CKF_USER_PIN_LOCKED)
}
