package tpmtoken_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// C_InitToken on an existing token needs its SO PIN and no open session,
// destroys every object, and leaves a token with no user PIN; another
// process sees the same.
func TestReinitializeToken(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l := open(t, spec, store)
	h := provision(t, l)
	_, _, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}})
	require.NoError(t, err)
	before, err := l.TokenInfo(0)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_SESSION_EXISTS, rv(l.InitToken(0, []byte("sopin1"), []byte("again"))))
	require.NoError(t, l.CloseSession(h))
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.InitToken(0, []byte("wrong-so"), []byte("again"))))
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("again")))

	after, err := l.TokenInfo(0)
	require.NoError(t, err)
	require.Equal(t, before.Serial, after.Serial)
	require.Zero(t, after.Flags&ck.CKF_USER_PIN_INITIALIZED)
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_USER_PIN_NOT_INITIALIZED, rv(l.Login(h, ck.CKU_USER, []byte("userpin"))))
	require.NoError(t, l.Login(h, ck.CKU_SO, []byte("sopin1")))
	require.NoError(t, l.FindObjectsInit(h, nil))
	objs, err := l.FindObjects(h, 10)
	require.NoError(t, err)
	require.Empty(t, objs)
	l.Close()

	l = open(t, spec, store)
	defer l.Close()
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.FindObjectsInit(h, nil))
	objs, err = l.FindObjects(h, 10)
	require.NoError(t, err)
	require.Empty(t, objs)
	ti, err := l.TokenInfo(0)
	require.NoError(t, err)
	require.Contains(t, ti.Label, "again")
}
