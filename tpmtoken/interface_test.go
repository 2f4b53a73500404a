package tpmtoken_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// The rest of the 3.2 interface on the token: sign/verify with recovery,
// C_VerifySignature*, operation state, C_DigestKey, the dual-function
// updates and the session validation flags.
func TestRestOfTheInterface(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	yes := []byte{1}
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}, {ck.CKA_VERIFY_RECOVER, yes}},
		[]tpmtoken.Attr{{ck.CKA_SIGN_RECOVER, yes}})
	require.NoError(t, err)
	pk := spki(t, l, h, pub).(*rsa.PublicKey)

	// Sign with recovery in the TPM, recover in software.
	pkcs := tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS}
	require.NoError(t, l.SignRecoverInit(h, pkcs, priv))
	sig, err := l.SignRecover(h, []byte("carried in the signature"), tpmtoken.Dest{Cap: 256})
	require.NoError(t, err)
	require.Len(t, sig, 256)
	require.NoError(t, rsa.VerifyPKCS1v15(pk, 0, []byte("carried in the signature"), sig), "Go agrees")
	require.NoError(t, l.VerifyRecoverInit(h, pkcs, pub))
	_, err = l.VerifyRecover(h, sig, tpmtoken.Dest{Cap: 5})
	require.Equal(t, ck.CKR_BUFFER_TOO_SMALL, rv(err))
	got, err := l.VerifyRecover(h, sig, tpmtoken.Dest{Cap: 256})
	require.NoError(t, err)
	require.Equal(t, []byte("carried in the signature"), got)
	require.Equal(t, ck.CKR_MECHANISM_INVALID, rv(l.SignRecoverInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256_RSA_PKCS}, priv)))

	// C_VerifySignature: the signature first, then the data.
	sha := tpmtoken.Mechanism{Type: ck.CKM_SHA256_RSA_PKCS}
	msg := []byte("message for verify-signature")
	s2 := signWith(t, l, h, priv, ck.CKM_SHA256_RSA_PKCS, msg)
	require.NoError(t, l.VerifySignatureInit(h, sha, pub, s2))
	require.NoError(t, l.VerifySignatureUpdate(h, msg[:7]))
	require.NoError(t, l.VerifySignatureUpdate(h, msg[7:]))
	require.NoError(t, l.VerifySignatureFinal(h))
	require.NoError(t, l.VerifySignatureInit(h, sha, pub, s2))
	require.Equal(t, ck.CKR_SIGNATURE_INVALID, rv(l.VerifySignature(h, []byte("other"))))
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(l.VerifySignatureFinal(h)))

	// Operation state: a digest and a verification move to another session.
	require.NoError(t, l.DigestInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256}))
	require.NoError(t, l.DigestUpdate(h, []byte("first half, ")))
	require.NoError(t, l.VerifyInit(h, sha, pub))
	require.NoError(t, l.VerifyUpdate(h, msg[:10]))
	state, err := l.OperationState(h)
	require.NoError(t, err)
	h2, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_KEY_NEEDED, rv(l.SetOperationState(h2, state, 0, 0)))
	require.NoError(t, l.SetOperationState(h2, state, 0, pub))
	require.NoError(t, l.DigestUpdate(h2, []byte("second half")))
	d, err := l.DigestFinal(h2, tpmtoken.Dest{Cap: 64})
	require.NoError(t, err)
	want := sha256.Sum256([]byte("first half, second half"))
	require.Equal(t, want[:], d)
	require.NoError(t, l.VerifyUpdate(h2, msg[10:]))
	require.NoError(t, l.VerifyFinal(h2, s2))
	require.Equal(t, ck.CKR_SAVED_STATE_INVALID, rv(l.SetOperationState(h2, []byte("junk"), 0, 0)))
	require.NoError(t, l.SignInit(h, sha, priv))
	_, err = l.OperationState(h)
	require.Equal(t, ck.CKR_STATE_UNSAVEABLE, rv(err), "a signature's state is in the TPM")
	require.NoError(t, l.SessionCancel(h, ck.CKF_SIGN|ck.CKF_VERIFY|ck.CKF_DIGEST))

	// C_DigestKey: a readable session key yes, a key in the TPM no.
	value := []byte("0123456789abcdef0123456789abcdef")
	readable, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
		{ck.CKA_VALUE, value}, {ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, yes}})
	require.NoError(t, err)
	require.NoError(t, l.DigestInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256}))
	require.NoError(t, l.DigestKey(h, readable))
	d, err = l.DigestFinal(h, tpmtoken.Dest{Cap: 64})
	require.NoError(t, err)
	want = sha256.Sum256(value)
	require.Equal(t, want[:], d)
	aesKey, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN}, []tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(16)},
		{ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, yes}})
	require.NoError(t, err)
	require.NoError(t, l.DigestInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256}))
	require.Equal(t, ck.CKR_KEY_INDIGESTIBLE, rv(l.DigestKey(h, priv)))

	// Dual functions: digest+encrypt, then decrypt+digest, with AES-CBC.
	res, err := l.GetAttributeValue(h, aesKey, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	iv := make([]byte, 16)
	cbc := tpmtoken.Mechanism{Type: ck.CKM_AES_CBC, Param: mech.Bytes(iv)}
	pt := make([]byte, 64)
	_, _ = rand.Read(pt)
	require.NoError(t, l.DigestInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256}))
	require.NoError(t, l.EncryptInit(h, cbc, aesKey))
	ct, err := l.DigestEncryptUpdate(h, pt, tpmtoken.Dest{Cap: 64})
	require.NoError(t, err)
	blk, _ := aes.NewCipher(res[0].Value)
	goCT := make([]byte, 64)
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(goCT, pt)
	require.Equal(t, goCT, ct)
	d, err = l.DigestFinal(h, tpmtoken.Dest{Cap: 64})
	require.NoError(t, err)
	want = sha256.Sum256(pt)
	require.Equal(t, want[:], d)
	_, _, err = encryptFinal(l, h, 16, false)
	require.NoError(t, err)
	require.NoError(t, l.DigestInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256}))
	require.NoError(t, l.DecryptInit(h, cbc, aesKey))
	back, err := l.DecryptDigestUpdate(h, ct, tpmtoken.Dest{Cap: 64})
	require.NoError(t, err)
	require.Equal(t, pt, back)
	d, err = l.DigestFinal(h, tpmtoken.Dest{Cap: 64})
	require.NoError(t, err)
	require.Equal(t, want[:], d)

	// Validation flags: none, ever; an unknown type is bad arguments.
	f, err := l.SessionValidationFlags(h, tpmtoken.CKS_LAST_VALIDATION_OK)
	require.NoError(t, err)
	require.Zero(t, f)
	_, err = l.SessionValidationFlags(h, 7)
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err))
}

// A CKA_ALWAYS_AUTHENTICATE key signs only after C_Login(CKU_CONTEXT_SPECIFIC)
// for that very operation, with the user's PIN checked by the TPM.
func TestAlwaysAuthenticate(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{ck.CKA_ALWAYS_AUTHENTICATE, []byte{1}}})
	require.NoError(t, err)
	m := tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(l.Login(h, ck.CKU_CONTEXT_SPECIFIC, []byte("userpin"))))
	require.NoError(t, l.SignInit(h, m, priv))
	_, _, err = sign(l, h, []byte("m"), 64, false)
	require.Equal(t, ck.CKR_USER_NOT_LOGGED_IN, rv(err), "no context-specific login")
	require.NoError(t, l.SignInit(h, m, priv))
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.Login(h, ck.CKU_CONTEXT_SPECIFIC, []byte("wrongpin"))))
	require.NoError(t, l.Login(h, ck.CKU_CONTEXT_SPECIFIC, []byte("userpin")))
	sig, _, err := sign(l, h, []byte("m"), 64, false)
	require.NoError(t, err)
	require.NoError(t, l.VerifyInit(h, m, pub))
	require.NoError(t, l.Verify(h, []byte("m"), sig))
	require.NoError(t, l.SignInit(h, m, priv)) // each use needs its own login
	_, _, err = sign(l, h, []byte("m"), 64, false)
	require.Equal(t, ck.CKR_USER_NOT_LOGGED_IN, rv(err))
}

// Message-based signing and verification: messages in one call and in
// parts under one context, with ECDSA and HMAC.
func TestMessageBasedSigning(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
	require.NoError(t, err)
	m := tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}
	require.NoError(t, l.MessageSignInit(h, m, priv))
	require.NoError(t, l.MessageVerifyInit(h, m, pub))
	for i := 0; i < 3; i++ {
		sig, err := l.SignMessage(h, nil, []byte("message one"), tpmtoken.Dest{Cap: 64})
		require.NoError(t, err)
		require.NoError(t, l.VerifyMessage(h, nil, []byte("message one"), sig))
		require.Equal(t, ck.CKR_SIGNATURE_INVALID, rv(l.VerifyMessage(h, nil, []byte("message two"), sig)))
	}
	require.NoError(t, l.MessageBegin(h, false, nil))
	_, err = l.SignMessage(h, nil, []byte("x"), tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_OPERATION_ACTIVE, rv(err), "a message is under way")
	_, err = l.SignMessageNext(h, nil, []byte("in "), false, tpmtoken.Dest{})
	require.NoError(t, err)
	sig, err := l.SignMessageNext(h, nil, []byte("parts"), true, tpmtoken.Dest{Cap: 64})
	require.NoError(t, err)
	require.NoError(t, l.MessageBegin(h, true, nil))
	require.NoError(t, l.VerifyMessageNext(h, nil, []byte("in par"), nil, false))
	require.NoError(t, l.VerifyMessageNext(h, nil, []byte("ts"), sig, true))
	require.NoError(t, l.MessageFinal(h, false))
	require.NoError(t, l.MessageFinal(h, true))
	_, err = l.SignMessage(h, nil, []byte("x"), tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err))
	require.NoError(t, l.MessageSignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, priv))
	require.Equal(t, ck.CKR_FUNCTION_NOT_SUPPORTED, rv(l.MessageBegin(h, false, nil)), "raw ECDSA is single-part")
	info, err := l.MechanismInfo(0, ck.CKM_ECDSA_SHA256)
	require.NoError(t, err)
	require.Equal(t, ck.CKF_MESSAGE_SIGN|ck.CKF_MESSAGE_VERIFY|ck.CKF_MULTI_MESSAGE, info.Flags&(ck.CKF_MESSAGE_SIGN|ck.CKF_MESSAGE_VERIFY|ck.CKF_MULTI_MESSAGE))
}
