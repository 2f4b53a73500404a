package tpmtoken_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Keys made with CKA_PRIVATE false need no PIN: made, found and used
// without C_Login, in this library and another one; private keys stay
// behind the PIN, and C_Logout ends their use with CKR_USER_NOT_LOGGED_IN.
func TestKeysThatNeedNoPIN(t *testing.T) {
	spec, dir := startSwtpm(t), t.TempDir()
	l := open(t, spec, dir)
	defer l.Close()
	h := provision(t, l)
	require.NoError(t, l.Logout(h))
	no, yes := []byte{0}, []byte{1}

	// No login: a private key with CKA_PRIVATE false, as a token object.
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, yes}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, []byte("host")}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, yes}, {ck.CKA_PRIVATE, no}, {ck.CKA_ID, []byte("host")}})
	require.NoError(t, err)
	sig := signWith(t, l, h, priv, ck.CKM_ECDSA_SHA256, []byte("no pin"))
	require.NoError(t, l.VerifyInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, pub))
	require.NoError(t, l.Verify(h, []byte("no pin"), sig))
	// ... but a private one needs the user.
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
	require.Equal(t, ck.CKR_USER_NOT_LOGGED_IN, rv(err))

	// Public session objects in a read-only session: an AES key.
	ro, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	aes, err := l.GenerateKey(ro, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN},
		[]tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(32)}, {ck.CKA_PRIVATE, no}})
	require.NoError(t, err)
	iv := mech.Bytes(make([]byte, 16))
	require.NoError(t, l.EncryptInit(ro, tpmtoken.Mechanism{Type: ck.CKM_AES_CBC_PAD, Param: iv}, aes))
	ct, _, err := encrypt(l, ro, []byte("session secret"), 64, false)
	require.NoError(t, err)
	require.NoError(t, l.DecryptInit(ro, tpmtoken.Mechanism{Type: ck.CKM_AES_CBC_PAD, Param: iv}, aes))
	pt, _, err := decrypt(l, ro, ct, 64, false)
	require.NoError(t, err)
	require.Equal(t, []byte("session secret"), pt)
	_, err = l.GenerateKey(ro, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN},
		[]tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(32)}, {ck.CKA_PRIVATE, no}, {ck.CKA_TOKEN, yes}})
	require.Equal(t, ck.CKR_SESSION_READ_ONLY, rv(err), "token objects need a R/W session")

	// Another library (another process) uses the key without any PIN.
	other := open(t, spec, dir)
	oh, err := other.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	found := findID(t, other, oh, []byte("host"))
	require.ElementsMatch(t, []uint64{pub, priv}, found)
	signWith(t, other, oh, priv, ck.CKM_ECDSA_SHA256, []byte("elsewhere"))
	other.Close()

	// A private key: an operation begun while logged in ends with
	// CKR_USER_NOT_LOGGED_IN after C_Logout; a search begun while logged
	// in stops returning private objects.
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	_, userKey, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, yes}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, []byte("user")}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, yes}, {ck.CKA_ID, []byte("user")}})
	require.NoError(t, err)
	require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, userKey))
	require.NoError(t, l.FindObjectsInit(ro, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}}))
	require.NoError(t, l.Logout(h))
	_, _, err = sign(l, h, []byte("after logout"), 64, false)
	require.Equal(t, ck.CKR_USER_NOT_LOGGED_IN, rv(err))
	left, err := l.FindObjects(ro, 10)
	require.NoError(t, err)
	require.Equal(t, []uint64{priv}, left, "only the public private key after logout")
	require.NoError(t, l.FindObjectsFinal(ro))
	require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, priv), "the no-PIN key still works")
	_, _, err = sign(l, h, []byte("still"), 64, false)
	require.NoError(t, err)
}

// A token with no login: CKF_LOGIN_REQUIRED clear, and keys are not
// private unless asked to be.
func TestTokenWithNoLogin(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	require.NoError(t, l.Logout(h))
	require.Equal(t, ck.CKR_USER_NOT_LOGGED_IN, rv(l.SetLoginRequired(h, false)), "the SO decides")
	require.NoError(t, l.Login(h, ck.CKU_SO, []byte("sopin1")))
	require.NoError(t, l.SetLoginRequired(h, false))
	require.NoError(t, l.Logout(h))
	info, err := l.TokenInfo(0)
	require.NoError(t, err)
	require.Zero(t, info.Flags&ck.CKF_LOGIN_REQUIRED)
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}})
	require.NoError(t, err)
	res, err := l.GetAttributeValue(h, priv, []ck.AttributeType{ck.CKA_PRIVATE})
	require.NoError(t, err)
	require.Equal(t, []byte{0}, res[0].Value)
	signWith(t, l, h, priv, ck.CKM_ECDSA_SHA256, []byte("service"))
}
