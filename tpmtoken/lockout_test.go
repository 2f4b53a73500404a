package tpmtoken_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

func tokenFlags(t *testing.T, l *tpmtoken.Library) ck.Flags {
	t.Helper()
	info, err := l.TokenInfo(0)
	require.NoError(t, err)
	return info.Flags
}

func daCounter(t *testing.T, l *tpmtoken.Library) uint32 {
	t.Helper()
	d, err := l.Diagnose()
	require.NoError(t, err)
	return d.DA.Counter
}

const userPINFlags = ck.CKF_USER_PIN_COUNT_LOW | ck.CKF_USER_PIN_FINAL_TRY | ck.CKF_USER_PIN_LOCKED
const soPINFlags = ck.CKF_SO_PIN_COUNT_LOW | ck.CKF_SO_PIN_FINAL_TRY | ck.CKF_SO_PIN_LOCKED

// Wrong PINs are counted by the TPM, not a file: once its lockout counter
// reaches the limit even the right PIN is refused, and the token says
// locked. COUNT_LOW and FINAL_TRY speak of failures since the user's last
// success, which the TPM's counter (TPM-wide, never reset by a success)
// does not: a good login clears them.
func TestPINLockoutIsTheTPMs(t *testing.T) {
	// Set DA parameters on the test's own swtpm first (4 tries, long recovery).
	tr := swtpmtest.Start(t)
	require.NoError(t, swtpmtest.SetDAParameters(tr, 4, 1000, 1000))
	e := tpm.NewEngine(tr, 3)
	st, err := e.DAState()
	require.NoError(t, err)
	require.Equal(t, uint32(4), st.MaxTries)

	// The token's swtpm keeps its defaults: 3 tries, 1000 s recovery.
	spec, store := startSwtpm(t), t.TempDir()
	l := open(t, spec, store)
	defer l.Close()
	h := provision(t, l) // one wrong user PIN, then the right one
	require.NoError(t, l.Logout(h))
	require.Equal(t, uint32(1), daCounter(t, l))
	require.Zero(t, tokenFlags(t, l)&(userPINFlags|soPINFlags), "a good login clears COUNT_LOW though the TPM still counts the failure")

	// One wrong PIN: count low; the TPM is now one failure from lockout
	// (2 of 3), and this user has failed since its success: final try.
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.Login(h, ck.CKU_USER, []byte("wrong-pin"))))
	f := tokenFlags(t, l)
	require.Equal(t, ck.CKF_USER_PIN_COUNT_LOW|ck.CKF_USER_PIN_FINAL_TRY, f&(userPINFlags|soPINFlags), "the SO has not failed")

	// The right PIN clears them; the TPM's counter stays.
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	require.NoError(t, l.Logout(h))
	require.Equal(t, uint32(2), daCounter(t, l))
	require.Zero(t, tokenFlags(t, l)&(userPINFlags|soPINFlags))

	// A wrong SO PIN reaches the limit: both PINs locked, even the right
	// one refused.
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.Login(h, ck.CKU_SO, []byte("wrong-so"))))
	require.Equal(t, ck.CKR_PIN_LOCKED, rv(l.Login(h, ck.CKU_USER, []byte("userpin"))), "lockout refuses the right PIN too")
	f = tokenFlags(t, l)
	require.Equal(t, ck.CKF_USER_PIN_LOCKED|ck.CKF_SO_PIN_LOCKED|ck.CKF_SO_PIN_COUNT_LOW, f&(userPINFlags|soPINFlags))
}
