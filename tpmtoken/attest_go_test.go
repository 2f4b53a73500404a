package tpmtoken_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

// The token's attestation API (attest.go) as an attestation CA and a
// verifier use it, on a swtpm with an EK certificate from a test CA
// (swtpmtest.EKCA): the attestation package verifies (its own tests drive
// the verifier's side in depth); here the token's side and its CK_RVs.

func testAttestationCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tpmtoken test attestation CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c, k
}

func TestAttestEnrollActivateAndCKRVs(t *testing.T) {
	ca := swtpmtest.NewEKCA(t)
	l := open(t, swtpmtest.SocketOn(t, ca.Manufacture(t)), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	pubH, priv := ecTokenPair(t, l, h, 0x61)
	ekOpts := attestation.VerifyOptions{EKRoots: ca.Roots(t), EKIntermediates: ca.Intermediates(t)}

	// AK evidence for an attestation CA, RSA and ECC AKs; the EK chain the
	// caller adds comes after the TPM's EK certificate.
	_, err := l.AKEvidence(h, "dsa", nil)
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err))
	_, err = l.AKEvidence(h+1000, "", nil)
	require.Equal(t, ck.CKR_SESSION_HANDLE_INVALID, rv(err))
	evRSA, err := l.AKEvidence(h, "rsa", []*x509.Certificate{ca.Intermediate(t)})
	require.NoError(t, err)
	require.Len(t, evRSA.EK.Certificates, 2)
	akRSA, err := attestation.AKPublicKey(evRSA)
	require.NoError(t, err)
	require.IsType(t, &rsa.PublicKey{}, akRSA)
	evECC, err := l.AKEvidence(h, "ecc", nil)
	require.NoError(t, err)
	akECC, err := attestation.AKPublicKey(evECC)
	require.NoError(t, err)
	require.IsType(t, &ecdsa.PublicKey{}, akECC)

	// Credential activation: the TPM recovers the verifier's secret only
	// for the AK the challenge names.
	for _, ev := range []*tpmtoken.Evidence{evRSA, evECC} {
		ch, secret, _, err := attestation.NewActivationChallenge(ev, ekOpts)
		require.NoError(t, err)
		got, err := l.ActivateCredential(h, ch)
		require.NoError(t, err)
		require.Equal(t, secret, got)
	}
	ch, _, _, err := attestation.NewActivationChallenge(evRSA, ekOpts)
	require.NoError(t, err)
	wrongAK := *ch
	wrongAK.AKType = "ecc"
	_, err = l.ActivateCredential(h, &wrongAK)
	require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, rv(err), "a challenge for the RSA AK, answered with the ECC AK")
	for name, bad := range map[string]*tpmtoken.ActivationChallenge{
		"nil":       nil,
		"empty":     {},
		"too long":  {Credential: make([]byte, 1025), Secret: ch.Secret},
		"no secret": {Credential: ch.Credential, Secret: []byte{0}},
	} {
		_, err = l.ActivateCredential(h, bad)
		require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err), name)
	}

	// Key evidence; the spec's return values for what cannot be attested.
	_, err = l.Attest(h, priv, tpmtoken.AttestOptions{Nonce: make([]byte, 65)})
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err))
	_, err = l.Attest(h, pubH, tpmtoken.AttestOptions{})
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, rv(err))
	_, err = l.Attest(h, priv, tpmtoken.AttestOptions{AKType: "dsa"})
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err))
	nonce := []byte("verifier nonce")
	ev, err := l.Attest(h, priv, tpmtoken.AttestOptions{Nonce: nonce, AKType: "ecc"})
	require.NoError(t, err)
	activate := func(c *tpmtoken.ActivationChallenge) ([]byte, error) { return l.ActivateCredential(h, c) }
	opts := ekOpts
	opts.Nonce, opts.Activate = nonce, activate
	v, err := attestation.VerifyEvidence(ev, opts)
	require.NoError(t, err)
	require.True(t, v.PublicKey.(*ecdsa.PublicKey).Equal(spki(t, l, h, pubH)))
	// Its forms read back; what is not evidence is refused.
	p, err := ev.PEM()
	require.NoError(t, err)
	back, err := tpmtoken.ReadEvidence(p)
	require.NoError(t, err)
	_, err = attestation.VerifyEvidence(back, opts)
	require.NoError(t, err)
	for _, bad := range [][]byte{[]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte("{"), []byte(`{"format":"other"}`)} {
		_, err = tpmtoken.ReadEvidence(bad)
		require.Error(t, err, "%s", bad)
	}

	// An RSA key's evidence, and the vendor attribute: the same evidence
	// (no nonce) on each read.
	rsaPub, rsaPriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}}, nil)
	require.NoError(t, err)
	ev, err = l.Attest(h, rsaPriv, tpmtoken.AttestOptions{Nonce: nonce})
	require.NoError(t, err)
	v, err = attestation.VerifyEvidence(ev, opts)
	require.NoError(t, err)
	require.True(t, v.PublicKey.(*rsa.PublicKey).Equal(spki(t, l, h, rsaPub)))
	blk, _ := pem.Decode([]byte(ev.Key.PublicKey))
	require.NotNil(t, blk, "the evidence's PEM public key")
	pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
	require.NoError(t, err)
	require.True(t, pk.(*rsa.PublicKey).Equal(spki(t, l, h, rsaPub)))
	a1, err := l.GetAttributeValue(h, priv, []ck.AttributeType{tpmtoken.CKA_TPM11_ATTESTATION})
	require.NoError(t, err)
	a2, err := l.GetAttributeValue(h, priv, []ck.AttributeType{tpmtoken.CKA_TPM11_ATTESTATION})
	require.NoError(t, err)
	require.Equal(t, a1[0].Value, a2[0].Value)
	aev, err := tpmtoken.ParseEvidence(a1[0].Value)
	require.NoError(t, err)
	noNonce := opts
	noNonce.Nonce = []byte{}
	v, err = attestation.VerifyEvidence(aev, noNonce)
	require.NoError(t, err)
	require.True(t, v.PublicKey.(*ecdsa.PublicKey).Equal(spki(t, l, h, pubH)))

	// Enrollment: the CA issues an AK certificate after activation; the
	// token keeps it (not its self-signed root) and Attest carries it.
	attCA, attKey := testAttestationCA(t)
	akCert, err := attestation.IssueAKCertificate(evECC, attestation.VerifyOptions{EKRoots: ca.Roots(t), EKIntermediates: ca.Intermediates(t), Activate: activate}, attCA, attKey, time.Hour)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(l.SetAKCertificates(h, nil)))
	ro, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.Equal(t, ck.CKR_SESSION_READ_ONLY, rv(l.SetAKCertificates(ro, []*x509.Certificate{akCert})))
	require.NoError(t, l.CloseSession(ro))
	require.NoError(t, l.SetAKCertificates(h, []*x509.Certificate{akCert, attCA}))
	ev, err = l.Attest(h, priv, tpmtoken.AttestOptions{Nonce: nonce}) // the enrolled AK's type
	require.NoError(t, err)
	require.Len(t, ev.AK.Certificates, 1, "the self-signed root is not kept")
	roots := x509.NewCertPool()
	roots.AddCert(attCA)
	v, err = attestation.VerifyEvidence(ev, attestation.VerifyOptions{AKRoots: roots, Nonce: nonce})
	require.NoError(t, err)
	require.True(t, bytes.Equal(akCert.Raw, v.AKCertificate.Raw))
	// An RSA AK's evidence does not carry the ECC AK's certificate.
	ev, err = l.Attest(h, priv, tpmtoken.AttestOptions{AKType: "rsa"})
	require.NoError(t, err)
	require.Empty(t, ev.AK.Certificates)

	// Logged out, the AK certificates cannot be set.
	require.NoError(t, l.Logout(h))
	require.Equal(t, ck.CKR_USER_NOT_LOGGED_IN, rv(l.SetAKCertificates(h, []*x509.Certificate{akCert})))
}

// A TPM without an EK certificate (a plain swtpm) has no attestation: the
// spec's CKR_FUNCTION_NOT_SUPPORTED, and no vendor attribute value.
func TestAttestWithoutEKCertificate(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	_, priv := ecTokenPair(t, l, h, 0x62)
	_, err := l.AKEvidence(h, "", nil)
	require.ErrorIs(t, err, tpmtoken.ErrNoEKCertificate)
	require.Equal(t, ck.CKR_FUNCTION_NOT_SUPPORTED, rv(err))
	_, err = l.Attest(h, priv, tpmtoken.AttestOptions{})
	require.Equal(t, ck.CKR_FUNCTION_NOT_SUPPORTED, rv(err))
	_, err = l.ActivateCredential(h, &tpmtoken.ActivationChallenge{Credential: []byte{0, 1, 2}, Secret: []byte{0, 1, 2}})
	require.Equal(t, ck.CKR_FUNCTION_NOT_SUPPORTED, rv(err))
	res, err := l.GetAttributeValue(h, priv, []ck.AttributeType{tpmtoken.CKA_TPM11_ATTESTATION})
	require.NoError(t, err)
	require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, res[0].RV)
}
