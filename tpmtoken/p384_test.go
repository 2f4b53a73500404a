package tpmtoken_test

import (
	"crypto/sha512"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// P-384 keys sign in the TPM with ECDSA-SHA384 and Go's crypto verifies.
func TestP384SignVerifiedByGo(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	p384 := []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}
	pubH, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p384}}, nil)
	require.NoError(t, err)
	res, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(res[0].Value)
	require.NoError(t, err)
	msg := []byte("p-384")
	require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA384}, priv))
	sig, n, err := l.Sign(h, msg, 96, false)
	require.NoError(t, err)
	require.Equal(t, 96, n)
	d := sha512.Sum384(msg)
	requireECDSA(t, pk, d[:], sig)
}
