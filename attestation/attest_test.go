package attestation_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

var p256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

func ulong[T ~uint64 | ~int](v T) []byte {
	b := make([]byte, 8)
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

func open(t testing.TB, spec, store string) *tpmtoken.Library {
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: store})
	require.NoError(t, err)
	return l
}

// provision makes a token with SO PIN "sopin1" and user PIN "userpin",
// the user logged in.
func provision(t testing.TB, l *tpmtoken.Library) uint64 {
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("test token")))
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_SO, []byte("sopin1")))
	require.NoError(t, l.InitPIN(h, []byte("userpin")))
	require.NoError(t, l.Logout(h))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	return h
}

// attestedTPM is a token on a swtpm whose EK certificate ca issued.
type attestedTPM struct {
	l   *tpmtoken.Library
	h   uint64
	key uint64 // an EC P-256 key generated in the TPM
}

func newAttestedTPM(t *testing.T, ca *swtpmtest.EKCA) *attestedTPM {
	t.Helper()
	return newAttestedTPMOn(t, swtpmtest.SocketOn(t, ca.Manufacture(t)))
}

func newAttestedTPMOn(t *testing.T, spec string) *attestedTPM {
	t.Helper()
	l := open(t, spec, t.TempDir())
	t.Cleanup(l.Close)
	h := provision(t, l)
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{Type: ck.CKA_TOKEN, Value: []byte{1}}, {Type: ck.CKA_EC_PARAMS, Value: p256}},
		[]tpmtoken.Attr{{Type: ck.CKA_TOKEN, Value: []byte{1}}, {Type: ck.CKA_ID, Value: []byte{1}}})
	require.NoError(t, err)
	return &attestedTPM{l, h, priv}
}

func (a *attestedTPM) activate(ch *tpmtoken.ActivationChallenge) ([]byte, error) {
	return a.l.ActivateCredential(a.h, ch)
}

func (a *attestedTPM) publicKey(t *testing.T, obj uint64) any {
	res, err := a.l.GetAttributeValue(a.h, obj, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(res[0].Value)
	require.NoError(t, err)
	return pk
}

// A key generated in the token verifies against the EK CA's root by
// credential activation, with the verifier's nonce; without a nonce
// match, without a way to bind the AK, with a tampered statement, for a
// key imported from software, the verification fails.
func TestKeyAttestationByActivation(t *testing.T) {
	ca := swtpmtest.NewEKCA(t)
	a := newAttestedTPM(t, ca)
	nonce := []byte("verifier's nonce")
	// The TPM holds the EK certificate; its issuer comes with the evidence.
	ev, err := a.l.Attest(a.h, a.key, tpmtoken.AttestOptions{Nonce: nonce, EKChain: []*x509.Certificate{ca.Intermediate(t)}})
	require.NoError(t, err)
	opts := attestation.VerifyOptions{EKRoots: ca.Roots(t), Nonce: nonce, Activate: a.activate}
	v, err := attestation.VerifyEvidence(ev, opts)
	require.NoError(t, err)
	require.True(t, v.PublicKey.(*ecdsa.PublicKey).Equal(a.publicKey(t, a.key)))
	require.NotNil(t, v.EKCertificate)
	require.Equal(t, nonce, v.Nonce)

	// The JSON and PEM forms read back to the same evidence.
	j, err := ev.JSON()
	require.NoError(t, err)
	p, err := ev.PEM()
	require.NoError(t, err)
	for _, form := range [][]byte{j, p} {
		back, err := tpmtoken.ReadEvidence(form)
		require.NoError(t, err)
		_, err = attestation.VerifyEvidence(back, opts)
		require.NoError(t, err)
	}

	bad := opts
	bad.Nonce = []byte("another nonce")
	_, err = attestation.VerifyEvidence(ev, bad)
	require.ErrorContains(t, err, "nonce")

	bad = opts
	bad.Activate = nil
	_, err = attestation.VerifyEvidence(ev, bad)
	require.ErrorIs(t, err, attestation.ErrAKNotBound)

	// Tampered statements.
	tamper := func(f func(ev *tpmtoken.Evidence)) error {
		c := clone(t, ev)
		f(c)
		_, err := attestation.VerifyEvidence(c, opts)
		return err
	}
	require.Error(t, tamper(func(ev *tpmtoken.Evidence) { ev.Key.Attestation[len(ev.Key.Attestation)-1] ^= 1 }), "certInfo")
	require.Error(t, tamper(func(ev *tpmtoken.Evidence) { ev.Key.Signature[len(ev.Key.Signature)-1] ^= 1 }), "sig")
	require.Error(t, tamper(func(ev *tpmtoken.Evidence) { ev.Key.Public[len(ev.Key.Public)-1] ^= 1 }), "pubArea")
	require.Error(t, tamper(func(ev *tpmtoken.Evidence) { ev.AK.CreateAttestation[10] ^= 1 }), "AK creation")

	// A key imported from software gets no evidence, in any form.
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	imported, err := a.l.CreateObject(a.h, []tpmtoken.Attr{
		{Type: ck.CKA_CLASS, Value: ulong(ck.CKO_PRIVATE_KEY)}, {Type: ck.CKA_KEY_TYPE, Value: ulong(ck.CKK_EC)},
		{Type: ck.CKA_EC_PARAMS, Value: p256}, {Type: ck.CKA_VALUE, Value: sk.D.Bytes()}, {Type: ck.CKA_SIGN, Value: []byte{1}},
	})
	require.NoError(t, err)
	_, err = a.l.Attest(a.h, imported, tpmtoken.AttestOptions{Nonce: nonce})
	require.ErrorIs(t, err, tpmtoken.ErrNotMadeInTPM)
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, ck.ToRV(err))

	// The vendor attribute: the same evidence (no nonce) on each read.
	res, err := a.l.GetAttributeValue(a.h, a.key, []ck.AttributeType{tpmtoken.CKA_TPM11_ATTESTATION})
	require.NoError(t, err)
	res2, err := a.l.GetAttributeValue(a.h, a.key, []ck.AttributeType{tpmtoken.CKA_TPM11_ATTESTATION})
	require.NoError(t, err)
	require.Equal(t, res[0].Value, res2[0].Value)
	aev, err := tpmtoken.ParseEvidence(res[0].Value)
	require.NoError(t, err)
	_, err = attestation.VerifyEvidence(aev, attestation.VerifyOptions{EKRoots: ca.Roots(t), EKIntermediates: ca.Intermediates(t), Nonce: []byte{}, Activate: a.activate})
	require.NoError(t, err)
	res, err = a.l.GetAttributeValue(a.h, imported, []ck.AttributeType{tpmtoken.CKA_TPM11_ATTESTATION})
	require.NoError(t, err)
	require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, res[0].RV, "an imported key has nothing to prove")
}

// Enrollment with an attestation CA: after credential activation the CA
// issues an AK certificate; evidence then verifies with the CA's root
// alone, in the JSON and the WebAuthn form. Another TPM's key fails:
// under this TPM's AK certificate, or claiming this TPM's EK; and an EK
// certificate from a CA the verifier does not trust fails.
func TestKeyAttestationAKCertificateAndAnotherTPM(t *testing.T) {
	ca := swtpmtest.NewEKCA(t)
	a := newAttestedTPM(t, ca)
	attCA, attKey := newAttestationCA(t)
	ev, err := a.l.Attest(a.h, a.key, tpmtoken.AttestOptions{})
	require.NoError(t, err)

	_, err = attestation.IssueAKCertificate(ev, attestation.VerifyOptions{EKRoots: ca.Roots(t), EKIntermediates: ca.Intermediates(t)}, attCA, attKey, time.Hour)
	require.Error(t, err, "no certificate without activation")
	akCert, err := attestation.IssueAKCertificate(ev, attestation.VerifyOptions{EKRoots: ca.Roots(t), EKIntermediates: ca.Intermediates(t), Activate: a.activate}, attCA, attKey, time.Hour)
	require.NoError(t, err)
	require.Empty(t, akCert.Subject.String())
	require.NoError(t, a.l.SetAKCertificates(a.h, []*x509.Certificate{akCert, attCA}))

	nonce := []byte{1, 2, 3}
	ev, err = a.l.Attest(a.h, a.key, tpmtoken.AttestOptions{Nonce: nonce})
	require.NoError(t, err)
	akRoots := x509.NewCertPool()
	akRoots.AddCert(attCA)
	opts := attestation.VerifyOptions{AKRoots: akRoots, Nonce: nonce}
	v, err := attestation.VerifyEvidence(ev, opts)
	require.NoError(t, err)
	require.Equal(t, akCert.Raw, v.AKCertificate.Raw)

	attObj, err := attestation.ACME(ev)
	require.NoError(t, err)
	v, err = attestation.VerifyCBOR(attObj, opts)
	require.NoError(t, err)
	require.True(t, v.PublicKey.(*ecdsa.PublicKey).Equal(a.publicKey(t, a.key)))
	for _, i := range []int{len(attObj) - 1, len(attObj) / 2} {
		bad := append([]byte(nil), attObj...)
		bad[i] ^= 1
		_, err = attestation.VerifyCBOR(bad, opts)
		require.Error(t, err, "byte %d of the attestation object changed", i)
	}
	other := x509.NewCertPool()
	otherCA, _ := newAttestationCA(t)
	other.AddCert(otherCA)
	_, err = attestation.VerifyCBOR(attObj, attestation.VerifyOptions{AKRoots: other})
	require.Error(t, err, "an AK certificate from an untrusted CA")

	// Another TPM, whose EK certificate another CA issued.
	ca2 := swtpmtest.NewEKCA(t)
	b := newAttestedTPM(t, ca2)
	bev, err := b.l.Attest(b.h, b.key, tpmtoken.AttestOptions{Nonce: nonce})
	require.NoError(t, err)
	// B's key presented under A's AK certificate.
	forged := clone(t, bev)
	forged.AK.Certificates = ev.AK.Certificates
	_, err = attestation.VerifyEvidence(forged, opts)
	require.Error(t, err)
	forged = clone(t, bev)
	forged.AK = ev.AK
	_, err = attestation.VerifyEvidence(forged, opts)
	require.ErrorContains(t, err, "key certification")
	// B's key claiming A's EK: B cannot activate a credential for A's EK.
	forged = clone(t, bev)
	forged.EK = ev.EK
	_, err = attestation.VerifyEvidence(forged, attestation.VerifyOptions{EKRoots: ca.Roots(t), EKIntermediates: ca.Intermediates(t), Nonce: nonce, Activate: b.activate})
	require.ErrorContains(t, err, "activation")
	// B's own evidence, checked against A's EK CA only.
	_, err = attestation.VerifyEvidence(bev, attestation.VerifyOptions{EKRoots: ca.Roots(t), EKIntermediates: ca.Intermediates(t), Nonce: nonce, Activate: b.activate})
	require.ErrorContains(t, err, "EK certificate")
	// And against its own CA, B's key verifies as B's.
	_, err = attestation.VerifyEvidence(bev, attestation.VerifyOptions{EKRoots: ca2.Roots(t), EKIntermediates: ca2.Intermediates(t), Nonce: nonce, Activate: b.activate})
	require.NoError(t, err)
}

func clone(t *testing.T, ev *tpmtoken.Evidence) *tpmtoken.Evidence {
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	var c tpmtoken.Evidence
	require.NoError(t, json.Unmarshal(b, &c))
	return &c
}

// newAttestationCA makes a self-signed CA for AK certificates.
func newAttestationCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test attestation CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c, k
}
