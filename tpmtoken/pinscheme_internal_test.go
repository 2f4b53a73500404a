package tpmtoken

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// A token from the first release (user PIN object with the raw-digest
// scheme 0) still logs in; its next C_SetPIN moves it to the current
// scheme, and the keys stay usable throughout.
func TestFirstReleasePINScheme(t *testing.T) {
	cfg := Config{TPM: swtpmtest.Socket(t), Store: t.TempDir()}
	l, err := Open(cfg)
	require.NoError(t, err)
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("old")))
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_SO, []byte("sopin1")))
	tok := l.slots[0].tok
	storage := tok.storage
	rec := *tok.record()
	// What the first release wrote: the user PIN sealed with scheme 0.
	_, err = l.run(0, func(e *tpm.Engine) (any, error) {
		salt := randBytes(16)
		pub, priv, err := e.Create(l.srk, tpm.SealTemplate(), pinAuth(0, salt, []byte("oldpin1")), storage.Auth)
		rec.User = &store.PINObject{Scheme: 0, Salt: salt, Public: pub.Bytes(), Private: priv.Buffer}
		return nil, err
	})
	require.NoError(t, err)
	require.NoError(t, tok.putRecord(&rec))
	require.NoError(t, l.Logout(h))
	l.Close()

	l, err = Open(cfg)
	require.NoError(t, err)
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_PIN_INCORRECT, ck.ToRV(l.Login(h, ck.CKU_USER, []byte("wrongpin"))))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("oldpin1")))
	_, _, err = l.GenerateKeyPair(h, Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, mech.Curves[0].Params}}, []Attr{{ck.CKA_TOKEN, []byte{1}}})
	require.NoError(t, err)
	require.NoError(t, l.SetPIN(h, []byte("oldpin1"), []byte("newpin1")))
	require.Equal(t, pinScheme, l.slots[0].tok.record().User.Scheme)
	l.Close()

	l, err = Open(cfg)
	require.NoError(t, err)
	defer l.Close()
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_PIN_INCORRECT, ck.ToRV(l.Login(h, ck.CKU_USER, []byte("oldpin1"))))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("newpin1")))
	keys, err := l.tokenKeys(h)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NoError(t, l.SignInit(h, Mechanism{Type: ck.CKM_ECDSA_SHA256}, keys[0]))
	_, err = l.Sign(h, []byte("kept"), Dest{Cap: 64})
	require.NoError(t, err)
}

func (l *Library) tokenKeys(h uint64) ([]uint64, error) {
	if err := l.FindObjectsInit(h, []Attr{{ck.CKA_CLASS, ulongBytes(uint64(ck.CKO_PRIVATE_KEY))}}); err != nil {
		return nil, err
	}
	defer l.FindObjectsFinal(h)
	return l.FindObjects(h, 10)
}
