package tpmtoken_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// tpm2OpenSSL runs openssl with tpm2-openssl's provider on the swtpm of
// spec ("swtpm:unix:PATH"); it skips the test without the provider
// (Debian tpm2-openssl).
func tpm2OpenSSL(t *testing.T, spec string) func(dir string, args ...string) string {
	// Look for the provider's file: loading it probes for a TPM (device,
	// then fixed ports), which a test must not do.
	out, err := exec.Command("openssl", "version", "-m").Output()
	dir := strings.Trim(strings.TrimSpace(strings.TrimPrefix(string(out), "MODULESDIR:")), `"`)
	if _, serr := os.Stat(filepath.Join(dir, "tpm2.so")); err != nil || serr != nil {
		t.Skip("tpm2-openssl not installed (Debian tpm2-openssl)")
	}
	sock := strings.TrimPrefix(spec, "swtpm:unix:")
	return func(dir string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "openssl", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TPM2OPENSSL_TCTI=swtpm:path="+sock)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "openssl %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
}

func pemPublicKey(t *testing.T, b []byte) any {
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk)
	pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
	require.NoError(t, err)
	return pk
}

// A key tpm2-openssl made is linked into the token and signs through
// PKCS#11; a key the token made portable is exported as a key file and
// signs through tpm2-openssl; a token key under its storage key has no
// key file; another TPM's key file does not link.
func TestTSS2KeyFilesWithTPM2OpenSSL(t *testing.T) {
	spec := startSwtpm(t)
	openssl := tpm2OpenSSL(t, spec)
	dir := t.TempDir()
	l := open(t, spec, t.TempDir())
	defer l.Close()
	h := provision(t, l)
	waitFor(t, "the library to let go of the swtpm when idle", func() bool { return !l.HoldsTPM() })

	// tpm2-openssl's key, linked.
	openssl(dir, "genpkey", "-provider", "tpm2", "-provider", "default", "-algorithm", "EC", "-pkeyopt", "group:P-256", "-out", "key.pem")
	openssl(dir, "pkey", "-provider", "tpm2", "-provider", "default", "-in", "key.pem", "-pubout", "-out", "pub.pem")
	file, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	require.NoError(t, err)
	pubPEM, err := os.ReadFile(filepath.Join(dir, "pub.pem"))
	require.NoError(t, err)
	_, linked, err := l.LinkKeyFile(h, file, []tpmtoken.Attr{{ck.CKA_ID, []byte{9}}, {ck.CKA_LABEL, []byte("from openssl")}})
	require.NoError(t, err)
	msg := []byte("linked")
	d := sha256.Sum256(msg)
	sig := signWith(t, l, h, linked, ck.CKM_ECDSA_SHA256, msg)
	requireECDSA(t, pemPublicKey(t, pubPEM), d[:], sig)
	res, err := l.GetAttributeValue(h, linked, []ck.AttributeType{ck.CKA_PRIVATE, ck.CKA_LOCAL, ck.CKA_NEVER_EXTRACTABLE, tpmtoken.CKA_TPM11_PORTABLE})
	require.NoError(t, err)
	require.Equal(t, [][]byte{{0}, {0}, {1}, {1}}, [][]byte{res[0].Value, res[1].Value, res[2].Value, res[3].Value})
	// The linked key comes back out as the same key file.
	back, err := l.ExportKeyFile(h, linked)
	require.NoError(t, err)
	a, err := tpmtoken.ParseKeyFile(file)
	require.NoError(t, err)
	b, err := tpmtoken.ParseKeyFile(back)
	require.NoError(t, err)
	require.Equal(t, a, b)

	// The token's portable key, exported, signs in tpm2-openssl.
	pubH, portable, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_PRIVATE, []byte{0}}, {tpmtoken.CKA_TPM11_PORTABLE, []byte{1}}})
	require.NoError(t, err)
	kf, err := l.ExportKeyFile(h, portable)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "portable.pem"), kf, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "msg"), msg, 0o600))
	waitFor(t, "the library to let go of the swtpm when idle", func() bool { return !l.HoldsTPM() })
	openssl(dir, "pkeyutl", "-provider", "tpm2", "-provider", "default", "-sign", "-inkey", "portable.pem",
		"-rawin", "-digest", "sha256", "-in", "msg", "-out", "sig")
	der, err := os.ReadFile(filepath.Join(dir, "sig"))
	require.NoError(t, err)
	res, err = l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(res[0].Value)
	require.NoError(t, err)
	require.True(t, ecdsa.VerifyASN1(pk.(*ecdsa.PublicKey), d[:], der), "tpm2-openssl signed with the token's key")

	// A portable key cannot be private; an ordinary key has no key file.
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{ck.CKA_PRIVATE, []byte{1}}, {tpmtoken.CKA_TPM11_PORTABLE, []byte{1}}})
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))
	_, ordinary, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
	require.NoError(t, err)
	_, err = l.ExportKeyFile(h, ordinary)
	require.Equal(t, ck.CKR_KEY_UNEXTRACTABLE, rv(err))

	// Another TPM's key file does not link.
	other := open(t, startSwtpm(t), t.TempDir())
	defer other.Close()
	oh := provision(t, other)
	_, op, err := other.GenerateKeyPair(oh, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{ck.CKA_PRIVATE, []byte{0}}, {tpmtoken.CKA_TPM11_PORTABLE, []byte{1}}})
	require.NoError(t, err)
	foreign, err := other.ExportKeyFile(oh, op)
	require.NoError(t, err)
	_, _, err = l.LinkKeyFile(h, foreign, nil)
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err))
	_, _, err = l.LinkKeyFile(h, []byte("not a key"), nil)
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err))
}
