package tpmtoken_test

import (
	"encoding/asn1"
	"encoding/pem"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// keyFileASN1 is TPMKey (the TSS2 PRIVATE KEY format) as a test writes it.
type keyFileASN1 struct {
	Type       asn1.ObjectIdentifier
	EmptyAuth  bool          `asn1:"optional,explicit,tag:0"`
	Policy     asn1.RawValue `asn1:"optional,explicit,tag:1"`
	Secret     []byte        `asn1:"optional,explicit,tag:2"`
	AuthPolicy asn1.RawValue `asn1:"optional,explicit,tag:3"`
	RSAParent  bool          `asn1:"optional,explicit,tag:5"`
	Parent     int64
	Pubkey     []byte
	Privkey    []byte
}

// A key file that cannot be linked is refused, saying why, before the TPM
// is asked: not PEM, another PEM type, trailing or broken DER, another
// key type, a policy or secret, an RSA or other parent, a TPM2B whose size
// lies, a public area that does not parse; the token's own export parses.
func TestKeyFileBadInput(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	_, portable, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_PRIVATE, []byte{0}}, {tpmtoken.CKA_TPM11_PORTABLE, []byte{1}}})
	require.NoError(t, err)
	good, err := l.ExportKeyFile(h, portable)
	require.NoError(t, err)
	kf, err := tpmtoken.ParseKeyFile(good)
	require.NoError(t, err)
	require.True(t, kf.EmptyAuth)

	blk, _ := pem.Decode(good)
	var k keyFileASN1
	_, err = asn1.Unmarshal(blk.Bytes, &k)
	require.NoError(t, err)
	encode := func(f func(k *keyFileASN1)) []byte {
		c := k
		f(&c)
		der, err := asn1.Marshal(c)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "TSS2 PRIVATE KEY", Bytes: der})
	}
	same := encode(func(*keyFileASN1) {})
	_, err = tpmtoken.ParseKeyFile(same)
	require.NoError(t, err, "the test's own encoding is a valid key file")

	policy, _ := asn1.Marshal([]asn1.RawValue{})
	for name, b := range map[string][]byte{
		"not PEM":        []byte("TSS2 PRIVATE KEY"),
		"another PEM":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: blk.Bytes}),
		"trailing bytes": pem.EncodeToMemory(&pem.Block{Type: "TSS2 PRIVATE KEY", Bytes: append(append([]byte{}, blk.Bytes...), 0)}),
		"broken DER":     pem.EncodeToMemory(&pem.Block{Type: "TSS2 PRIVATE KEY", Bytes: blk.Bytes[:len(blk.Bytes)/2]}),
		"importable key": encode(func(k *keyFileASN1) { k.Type = asn1.ObjectIdentifier{2, 23, 133, 10, 1, 4} }),
		"a policy":       encode(func(k *keyFileASN1) { k.Policy = asn1.RawValue{FullBytes: policy} }),
		"a secret":       encode(func(k *keyFileASN1) { k.Secret = []byte{1, 2} }),
		"an RSA parent":  encode(func(k *keyFileASN1) { k.RSAParent = true }),
		"another parent": encode(func(k *keyFileASN1) { k.Parent = 0x81000001 }),
		"public size":    encode(func(k *keyFileASN1) { k.Pubkey = append([]byte{0xff, 0xff}, k.Pubkey[2:]...) }),
		"private size":   encode(func(k *keyFileASN1) { k.Privkey = k.Privkey[:1] }),
		"public garbage": encode(func(k *keyFileASN1) { k.Pubkey = []byte{0, 4, 0xde, 0xad, 0xbe, 0xef} }),
	} {
		_, err := tpmtoken.ParseKeyFile(b)
		require.Error(t, err, name)
		_, _, err = l.LinkKeyFile(h, b, []tpmtoken.Attr{{ck.CKA_ID, []byte{9}}})
		require.Error(t, err, name)
		require.NotEqual(t, ck.CKR_DEVICE_ERROR, rv(err), "%s: the caller's bytes, not the device", name)
		require.NotEqual(t, ck.CKR_GENERAL_ERROR, rv(err), "%s: a clear return code", name)
	}
}
