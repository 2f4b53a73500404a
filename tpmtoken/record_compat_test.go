package tpmtoken_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// A store whose object files are in the first record format (attributes
// as their 8-byte host-order C encoding, written by the old encoder kept
// below) still works: every attribute reads back the same, the key signs,
// and the next change writes the record in the typed format.
func TestOldRecordFormatStillReads(t *testing.T) {
	spec, dir := startSwtpm(t), t.TempDir()
	l := open(t, spec, dir)
	h := provision(t, l)
	yes := []byte{1}
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, yes}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_LABEL, []byte("old key")}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, yes}, {ck.CKA_LABEL, []byte("old key")}, {ck.CKA_START_DATE, []byte("20260101")},
			{ck.CKA_ALLOWED_MECHANISMS, ulong(ck.CKM_ECDSA_SHA256)}})
	require.NoError(t, err)
	data, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}, {ck.CKA_TOKEN, yes},
		{ck.CKA_APPLICATION, []byte("app")}, {ck.CKA_VALUE, []byte("public data")}})
	require.NoError(t, err)
	all := []ck.AttributeType{ck.CKA_CLASS, ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_LABEL, ck.CKA_KEY_TYPE, ck.CKA_SIGN,
		ck.CKA_START_DATE, ck.CKA_ALLOWED_MECHANISMS, ck.CKA_EC_PARAMS, ck.CKA_EC_POINT, ck.CKA_PUBLIC_KEY_INFO,
		ck.CKA_KEY_GEN_MECHANISM, ck.CKA_UNIQUE_ID, ck.CKA_APPLICATION, ck.CKA_VALUE}
	before := map[uint64][]tpmtoken.AttrResult{}
	for _, o := range []uint64{pub, priv, data} {
		before[o], err = l.GetAttributeValue(h, o, all)
		require.NoError(t, err)
	}
	l.Close()

	files, err := filepath.Glob(filepath.Join(dir, "tokens", "*", "objects", "*.obj"))
	require.NoError(t, err)
	require.Len(t, files, 3)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.Contains(t, string(b), `{"type":"CKA_CLASS","ulong":`, "written typed")
		var rec store.Object
		require.NoError(t, json.Unmarshal(b, &rec))
		old, err := json.Marshal(struct { // the first format's encoder
			UID     string                      `json:"uid"`
			Attrs   map[ck.AttributeType][]byte `json:"attrs"`
			Public  []byte                      `json:"tpm_public,omitempty"`
			Private []byte                      `json:"tpm_private,omitempty"`
			Sealed  []byte                      `json:"sealed,omitempty"`
			Parent  string                      `json:"parent,omitempty"`
		}{rec.UID, rec.Attrs, rec.Public, rec.Private, rec.Sealed, rec.Parent})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(f, old, 0o600))
	}

	l = open(t, spec, dir)
	defer l.Close()
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	for _, o := range []uint64{pub, priv, data} {
		after, err := l.GetAttributeValue(h, o, all)
		require.NoError(t, err)
		require.Equal(t, before[o], after)
	}
	res, err := l.GetAttributeValue(h, pub, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(res[0].Value)
	require.NoError(t, err)
	sig := signWith(t, l, h, priv, ck.CKM_ECDSA_SHA256, []byte("old store"))
	d := sha256.Sum256([]byte("old store"))
	requireECDSA(t, pk.(*ecdsa.PublicKey), d[:], sig)

	require.NoError(t, l.SetAttributeValue(h, priv, []tpmtoken.Attr{{ck.CKA_LABEL, []byte("renamed")}}))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		if strings.Contains(string(b), `"format":2`) {
			n++
			require.Contains(t, string(b), `{"type":"CKA_START_DATE","date":"20260101"}`)
		}
	}
	require.Equal(t, 1, n, "the changed record, and only it, is rewritten typed")
}

// A record of the first format whose values are not of their types (a
// CK_BBOOL of two bytes: the token never wrote one) is no object; the
// others of the store still are.
func TestIllTypedOldRecordIsNoObject(t *testing.T) {
	spec, dir := startSwtpm(t), t.TempDir()
	l := open(t, spec, dir)
	h := provision(t, l)
	good, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}, {ck.CKA_TOKEN, []byte{1}}, {ck.CKA_LABEL, []byte("good")}})
	require.NoError(t, err)
	l.Close()
	objects, err := filepath.Glob(filepath.Join(dir, "tokens", "*", "objects"))
	require.NoError(t, err)
	require.Len(t, objects, 1)
	bad, err := json.Marshal(struct { // the first format's encoder
		UID   string                      `json:"uid"`
		Attrs map[ck.AttributeType][]byte `json:"attrs"`
	}{"0123456789abcdef0123456789abcdef", map[ck.AttributeType][]byte{ck.CKA_CLASS: ulong(ck.CKO_DATA),
		ck.CKA_TOKEN: {1, 1}, ck.CKA_LABEL: []byte("bad")}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(objects[0], "0123456789abcdef0123456789abcdef.obj"), bad, 0o600))

	l = open(t, spec, dir)
	defer l.Close()
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.FindObjectsInit(h, nil))
	found, err := l.FindObjects(h, 10)
	require.NoError(t, err)
	require.Equal(t, []uint64{good}, found)
}
