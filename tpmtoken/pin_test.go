package tpmtoken_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// A PIN shorter than ulMinPinLen (the empty one too) or longer than
// ulMaxPinLen never reaches the TPM: setting one is CKR_PIN_LEN_RANGE,
// presenting one CKR_PIN_INCORRECT, and the TPM's lockout counter does not
// move though there are more of them than the TPM allows failures (3).
func TestPINLengthNeverReachesTheTPM(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	info, err := l.TokenInfo(0)
	require.NoError(t, err)
	require.Equal(t, uint64(tpmtoken.MinPINLen), info.MinPIN)
	require.Equal(t, uint64(tpmtoken.MaxPINLen), info.MaxPIN)
	bad := [][]byte{nil, {}, []byte("abc"), bytes.Repeat([]byte("x"), tpmtoken.MaxPINLen+1)}

	for _, p := range bad {
		require.Equal(t, ck.CKR_PIN_LEN_RANGE, rv(l.InitToken(0, p, []byte("t"))))
	}
	require.Len(t, l.SlotList(false), 1, "no token was made")
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("t")))
	before := daCounter(t, l)
	for _, p := range bad {
		require.Equal(t, ck.CKR_PIN_LEN_RANGE, rv(l.InitToken(0, p, []byte("t"))), "re-initializing")
	}
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	for _, p := range bad {
		require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.Login(h, ck.CKU_SO, p)))
	}
	require.NoError(t, l.Login(h, ck.CKU_SO, []byte("sopin1")))
	for _, p := range bad {
		require.Equal(t, ck.CKR_PIN_LEN_RANGE, rv(l.InitPIN(h, p)))
	}
	require.NoError(t, l.InitPIN(h, []byte("userpin")))
	for _, p := range bad {
		require.Equal(t, ck.CKR_PIN_LEN_RANGE, rv(l.SetPIN(h, []byte("sopin1"), p)), "SO's new PIN")
		require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.SetPIN(h, p, []byte("sopin2"))), "SO's old PIN")
	}
	require.NoError(t, l.Logout(h))
	for _, p := range bad {
		require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.Login(h, ck.CKU_USER, p)))
		require.Equal(t, ck.CKR_PIN_LEN_RANGE, rv(l.SetPIN(h, []byte("userpin"), p)), "user's new PIN")
		require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.SetPIN(h, p, []byte("userpin2"))), "user's old PIN")
	}
	require.Equal(t, before, daCounter(t, l), "a PIN of impossible length cost a dictionary-attack try")
	require.Zero(t, tokenFlags(t, l)&(userPINFlags|soPINFlags))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
}

// Wrong old PINs in C_SetPIN and a wrong SO PIN in C_InitToken are failed
// PIN checks like a wrong C_Login, and a right one is a success.
func TestPINCountsEveryCheck(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	require.NoError(t, l.Logout(h))
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.SetPIN(h, []byte("not-the-pin"), []byte("userpin2"))))
	require.NotZero(t, tokenFlags(t, l)&ck.CKF_USER_PIN_COUNT_LOW)
	require.NoError(t, l.SetPIN(h, []byte("userpin"), []byte("userpin2")))
	require.Zero(t, tokenFlags(t, l)&ck.CKF_USER_PIN_COUNT_LOW, "C_SetPIN checked the old PIN: a success")

	require.NoError(t, l.CloseSession(h))
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.InitToken(0, []byte("wrong-so"), []byte("t"))))
	// The TPM's third failure (provision's, C_SetPIN's, this one): locked.
	require.Equal(t, ck.CKF_SO_PIN_COUNT_LOW|ck.CKF_SO_PIN_LOCKED|ck.CKF_USER_PIN_LOCKED, tokenFlags(t, l)&(userPINFlags|soPINFlags))
}
