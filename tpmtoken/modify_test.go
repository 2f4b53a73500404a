package tpmtoken_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

func TestSetCopyAndSize(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	l := open(t, spec, store)
	h := provision(t, l)
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}})
	require.NoError(t, err)

	findAll := func(tmpl ...tpmtoken.Attr) []uint64 {
		require.NoError(t, l.FindObjectsInit(h, tmpl))
		found, err := l.FindObjects(h, 100)
		require.NoError(t, err)
		require.NoError(t, l.FindObjectsFinal(h))
		return found
	}
	require.Equal(t, []uint64{priv}, findAll(tpmtoken.Attr{Type: ck.CKA_CLASS, Value: ulong(ck.CKO_PRIVATE_KEY)}))
	require.NoError(t, l.SetAttributeValue(h, priv, []tpmtoken.Attr{{ck.CKA_LABEL, []byte("renamed")}, {ck.CKA_ID, []byte{9}}}))
	// The find index follows the change.
	require.Equal(t, []uint64{priv}, findAll(tpmtoken.Attr{Type: ck.CKA_ID, Value: []byte{9}}))
	require.Equal(t, []uint64{priv}, findAll(tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("renamed")},
		tpmtoken.Attr{Type: ck.CKA_CLASS, Value: ulong(ck.CKO_PRIVATE_KEY)}))
	require.Empty(t, findAll(tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("renamed")},
		tpmtoken.Attr{Type: ck.CKA_CLASS, Value: ulong(ck.CKO_PUBLIC_KEY)}))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, ck.ToRV(l.SetAttributeValue(h, priv, []tpmtoken.Attr{{ck.CKA_SENSITIVE, []byte{0}}})))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, ck.ToRV(l.SetAttributeValue(h, pub, []tpmtoken.Attr{{ck.CKA_EC_POINT, []byte{4}}})))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, ck.ToRV(l.SetAttributeValue(h, priv, []tpmtoken.Attr{{ck.CKA_DECRYPT, []byte{1}}})))
	require.NoError(t, l.SetAttributeValue(h, priv, []tpmtoken.Attr{{ck.CKA_DERIVE, []byte{0}}}))

	// NSS copies with an empty template; the copy signs with the same TPM key.
	cp, err := l.CopyObject(h, priv, nil)
	require.NoError(t, err)
	require.NotEqual(t, priv, cp)
	require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, cp))
	sig, _, err := sign(l, h, []byte("copy"), 64, false)
	require.NoError(t, err)
	require.NoError(t, l.VerifyInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, pub))
	require.NoError(t, l.Verify(h, []byte("copy"), sig))

	n, err := l.ObjectSize(h, priv)
	require.NoError(t, err)
	require.Greater(t, n, uint64(100))
	l.Close()

	// The change is in the store: a new library sees it.
	l = open(t, spec, store)
	defer l.Close()
	s, _ := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, l.Login(s, ck.CKU_USER, []byte("userpin")))
	require.NoError(t, l.FindObjectsInit(s, []tpmtoken.Attr{{ck.CKA_LABEL, []byte("renamed")}}))
	found, _ := l.FindObjects(s, 10)
	require.Len(t, found, 2, "the renamed key and its copy")
}

func TestAllowedMechanisms(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}},
		[]tpmtoken.Attr{{ck.CKA_ALLOWED_MECHANISMS, ulong(ck.CKM_ECDSA_SHA256)}})
	require.NoError(t, err)
	require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, priv))
	require.NoError(t, l.SessionCancel(h, ck.CKF_SIGN))
	require.Equal(t, ck.CKR_MECHANISM_INVALID, ck.ToRV(l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, priv)))
	res, err := l.GetAttributeValue(h, priv, []ck.AttributeType{ck.CKA_ALLOWED_MECHANISMS})
	require.NoError(t, err)
	require.Equal(t, ulong(ck.CKM_ECDSA_SHA256), res[0].Value)
}
