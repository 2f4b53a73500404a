package tpmtoken_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// findID returns the handles of objects with CKA_ID id.
func findID(t *testing.T, l *tpmtoken.Library, h uint64, id []byte) []uint64 {
	require.NoError(t, l.FindObjectsInit(h, []tpmtoken.Attr{{ck.CKA_ID, id}}))
	found, err := l.FindObjects(h, 10)
	require.NoError(t, err)
	require.NoError(t, l.FindObjectsFinal(h))
	return found
}

// Object handles come from the object's identity in the store: the same in
// another library (another process), and after C_Finalize/C_Initialize.
func TestObjectHandlesAreStable(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l := open(t, spec, store)
	h := provision(t, l)
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, []byte{7}}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte{7}}})
	require.NoError(t, err)
	require.ElementsMatch(t, []uint64{pub, priv}, findID(t, l, h, []byte{7}))

	other := open(t, spec, t.TempDir())
	other.Close()
	other = open(t, spec, store) // a second library on the same store, while the first runs
	h2, err := other.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, other.Login(h2, ck.CKU_USER, []byte("userpin")))
	require.ElementsMatch(t, []uint64{pub, priv}, findID(t, other, h2, []byte{7}))
	other.Close()
	l.Close()

	l = open(t, spec, store) // after C_Finalize and C_Initialize
	defer l.Close()
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, priv), "the old handle signs")
	sig, _, err := sign(l, h, []byte("stable"), 64, false)
	require.NoError(t, err)
	require.NoError(t, l.VerifyInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, pub))
	require.NoError(t, l.Verify(h, []byte("stable"), sig))
}
