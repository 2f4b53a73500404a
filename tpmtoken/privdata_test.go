package tpmtoken_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// A private data object's value never reaches the disk in clear, is read
// back after login in another library, and can be changed and copied.
func TestPrivateDataObjectsAreSealed(t *testing.T) {
	spec, dir := startSwtpm(t), t.TempDir()
	l := open(t, spec, dir)
	h := provision(t, l)
	secret := []byte("the private data object's value, 0123456789")
	obj, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}, {ck.CKA_TOKEN, []byte{1}},
		{ck.CKA_PRIVATE, []byte{1}}, {ck.CKA_LABEL, []byte("pd")}, {ck.CKA_VALUE, secret}})
	require.NoError(t, err)
	pub, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}, {ck.CKA_TOKEN, []byte{1}},
		{ck.CKA_VALUE, []byte("public value")}})
	require.NoError(t, err)
	value := func(l *tpmtoken.Library, h, obj uint64) []byte {
		res, err := l.GetAttributeValue(h, obj, []ck.AttributeType{ck.CKA_LABEL, ck.CKA_VALUE})
		require.NoError(t, err)
		require.Equal(t, ck.RV(0), res[1].RV)
		return res[1].Value
	}
	require.Equal(t, secret, value(l, h, obj))
	require.Equal(t, []byte("public value"), value(l, h, pub))
	requireNotInStore(t, dir, secret[:16])

	// A second library (another process) reads it only after login.
	l2 := open(t, spec, dir)
	h2, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	_, err = l2.GetAttributeValue(h2, obj, []ck.AttributeType{ck.CKA_VALUE})
	require.Equal(t, ck.CKR_OBJECT_HANDLE_INVALID, rv(err))
	require.NoError(t, l2.Login(h2, ck.CKU_USER, []byte("userpin")))
	require.Equal(t, secret, value(l2, h2, obj))

	// A new value is sealed too; a copy keeps the value; a public copy has it in clear.
	changed := []byte("a changed private value, abcdefghijklmnop")
	require.NoError(t, l2.SetAttributeValue(h2, obj, []tpmtoken.Attr{{ck.CKA_VALUE, changed}}))
	require.NoError(t, l2.SetAttributeValue(h2, obj, []tpmtoken.Attr{{ck.CKA_LABEL, []byte("renamed")}}))
	cp, err := l2.CopyObject(h2, obj, nil)
	require.NoError(t, err)
	require.Equal(t, changed, value(l2, h2, cp))
	l2.Close()
	requireNotInStore(t, dir, secret[:16], changed[:16])
	findID(t, l, h, []byte("no such id")) // a find reads what other processes changed
	require.Equal(t, changed, value(l, h, obj))
	pc, err := l.CopyObject(h, obj, []tpmtoken.Attr{{ck.CKA_PRIVATE, []byte{0}}})
	require.NoError(t, err)
	require.Equal(t, changed, value(l, h, pc))
	l.Close()
}
