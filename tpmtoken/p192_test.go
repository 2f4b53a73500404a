package tpmtoken_test

import (
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

var oidP192 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x01}

// P-192 (prime192v1), which swtpm has: the mechanism info reaches down to
// 192 bits; the explicit parameters OpenSSL writes for prime192v1 are the
// token's P-192 (so its constants are right); a key generated in the TPM
// signs what OpenSSL verifies and derives by ECDH the secret OpenSSL
// derives with its own key.
func TestP192(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	openssl := func(args ...string) []byte {
		out, err := exec.Command("openssl", args...).CombinedOutput()
		require.NoError(t, err, "openssl %v: %s", args, out)
		return out
	}
	read := func(obj uint64, a ck.AttributeType) []byte {
		r, err := l.GetAttributeValue(h, obj, []ck.AttributeType{a})
		require.NoError(t, err)
		return r[0].Value
	}

	for _, m := range []ck.MechType{ck.CKM_EC_KEY_PAIR_GEN, ck.CKM_ECDSA, ck.CKM_ECDH1_DERIVE} {
		info, err := l.MechanismInfo(0, m)
		require.NoError(t, err)
		require.Equal(t, uint64(192), info.Min, "mechanism 0x%x", m)
	}
	require.Equal(t, "p192", mech.CurveOf(opensslExplicit(t, "prime192v1", "uncompressed")).Name)
	require.Equal(t, "p192", mech.CurveOf(opensslExplicit(t, "prime192v1", "compressed")).Name)

	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, oidP192}}, []tpmtoken.Attr{{ck.CKA_SIGN, []byte{1}}, {ck.CKA_DERIVE, []byte{1}}})
	require.NoError(t, err)
	pubFile := file("pub.der", read(pub, ck.CKA_PUBLIC_KEY_INFO))
	require.Contains(t, string(openssl("pkey", "-pubin", "-inform", "DER", "-in", pubFile, "-text", "-noout")), "prime192v1")

	// ECDSA over SHA-256 (longer than the order: the leftmost 192 bits are
	// signed) and SHA-1 (shorter), checked by openssl pkeyutl.
	for _, digest := range [][]byte{sha256Of("p192"), sha256Of("p192")[:20]} {
		require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA}, priv))
		sig, err := l.Sign(h, digest, tpmtoken.Dest{Cap: 128})
		require.NoError(t, err)
		require.Len(t, sig, 48)
		der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:24]), new(big.Int).SetBytes(sig[24:])})
		require.NoError(t, err)
		out := openssl("pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", pubFile,
			"-in", file("digest", digest), "-sigfile", file("sig", der))
		require.Contains(t, string(out), "Signature Verified Successfully")
	}

	// ECDH with a key OpenSSL made.
	peerKey := filepath.Join(dir, "peer.pem")
	openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime192v1", "-out", peerKey)
	peerSPKI := openssl("pkey", "-in", peerKey, "-pubout", "-outform", "DER")
	peerPoint := peerSPKI[len(peerSPKI)-49:]
	require.Equal(t, byte(4), peerPoint[0])
	want := openssl("pkeyutl", "-derive", "-inkey", peerKey, "-peerkey", pubFile, "-peerform", "DER")
	require.Len(t, want, 24)
	secret, err := l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: mech.ECDH1Params{KDF: ck.CKD_NULL, PublicData: peerPoint}}, priv,
		[]tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
			{ck.CKA_VALUE_LEN, ulong(24)}, {ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, []byte{1}}})
	require.NoError(t, err)
	require.Equal(t, want, read(secret, ck.CKA_VALUE))
}

func sha256Of(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }
