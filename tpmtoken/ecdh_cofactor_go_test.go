package tpmtoken_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/asn1"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// CKM_ECDH1_COFACTOR_DERIVE in C_DeriveKey: on the curves a TPM has
// (cofactor 1) it is ECDH1_DERIVE. The secret the TPM's key derives with
// Go's ephemeral key is the one Go's crypto/ecdh computes (NULL KDF), and
// with the SHA-256 KDF the X9.63 KDF of it, as ECDH1_DERIVE gives; a key
// whose CKA_ALLOWED_MECHANISMS names only ECDH1_DERIVE refuses it.
func TestECDHCofactorDeriveAgainstGoCrypto(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	info, err := l.MechanismInfo(0, ck.CKM_ECDH1_COFACTOR_DERIVE)
	require.NoError(t, err)
	require.NotZero(t, info.Flags&ck.CKF_DERIVE, "CKF_DERIVE")
	readable := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
		{ck.CKA_SENSITIVE, boolAttr(false)}, {ck.CKA_EXTRACTABLE, boolAttr(true)}}
	value := func(k uint64) []byte {
		t.Helper()
		res, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
		require.NoError(t, err)
		return res[0].Value
	}
	for _, c := range []struct {
		oid   []byte
		curve ecdh.Curve
	}{{oidP256, ecdh.P256()}, {oidP384, ecdh.P384()}} {
		pubH, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, c.oid}}, []tpmtoken.Attr{{ck.CKA_DERIVE, boolAttr(true)}})
		require.NoError(t, err)
		res, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_EC_POINT})
		require.NoError(t, err)
		var point []byte
		_, err = asn1.Unmarshal(res[0].Value, &point)
		require.NoError(t, err)
		tpmPub, err := c.curve.NewPublicKey(point)
		require.NoError(t, err)
		mine, err := c.curve.GenerateKey(rand.Reader)
		require.NoError(t, err)
		z, err := mine.ECDH(tpmPub)
		require.NoError(t, err)

		k, err := l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_COFACTOR_DERIVE,
			Param: ecdhParams(ck.CKD_NULL, nil, mine.PublicKey().Bytes())}, priv, readable)
		require.NoError(t, err)
		require.Equal(t, z, value(k), "NULL KDF: Go's shared secret")

		shared := []byte("cofactor")
		withLen := append(readable, tpmtoken.Attr{Type: ck.CKA_VALUE_LEN, Value: ulong(40)})
		kc, err := l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_COFACTOR_DERIVE,
			Param: ecdhParams(ck.CKD_SHA256_KDF, shared, mine.PublicKey().Bytes())}, priv, withLen)
		require.NoError(t, err)
		kp, err := l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE,
			Param: ecdhParams(ck.CKD_SHA256_KDF, shared, mine.PublicKey().Bytes())}, priv, withLen)
		require.NoError(t, err)
		require.Equal(t, refKDF(z, shared, 40), value(kc), "SHA-256 KDF of Go's secret")
		require.Equal(t, value(kp), value(kc), "the same as ECDH1_DERIVE")
	}

	onlyPlain := make([]byte, 8)
	binary.NativeEndian.PutUint64(onlyPlain, uint64(ck.CKM_ECDH1_DERIVE))
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN}, []tpmtoken.Attr{{ck.CKA_EC_PARAMS, oidP256}},
		[]tpmtoken.Attr{{ck.CKA_DERIVE, boolAttr(true)}, {ck.CKA_ALLOWED_MECHANISMS, onlyPlain}})
	require.NoError(t, err)
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	_, err = l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_COFACTOR_DERIVE,
		Param: ecdhParams(ck.CKD_NULL, nil, eph.PublicKey().Bytes())}, priv, readable)
	require.Equal(t, ck.CKR_MECHANISM_INVALID, rv(err), "not among the key's allowed mechanisms")
	_, err = l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE,
		Param: ecdhParams(ck.CKD_NULL, nil, eph.PublicKey().Bytes())}, priv, readable)
	require.NoError(t, err, "ECDH1_DERIVE is")
}
