package attestation_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// withoutNV removes NV indices from the TPM at spec (platform
// authorization: empty after every TPM2_Startup), as a platform whose
// manufacturer wrote fewer EK certificates would have it.
func withoutNV(t *testing.T, spec string, indices ...tpm2.TPMHandle) {
	d, err := tpm.Open(spec, "")
	require.NoError(t, err)
	defer d.Close()
	for _, idx := range indices {
		pub, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(d)
		require.NoError(t, err)
		_, err = tpm2.NVUndefineSpace{AuthHandle: tpm2.TPMRHPlatform, NVIndex: tpm2.NamedHandle{Handle: idx, Name: pub.NVName}}.Execute(d)
		require.NoError(t, err)
	}
}

// A TPM whose only EK certificate is swtpm's high-range ECC P-384 one
// (EK at 0x81010016, certificate at 0x01c00016) attests: the EK in the
// evidence is the certified P-384 key, credential activation against it
// works (its user role is its empty authValue), remote enrollment
// issues an AK certificate naming the device, and a TPM with no EK
// certificate at all says so.
func TestECCOnlyEndorsementKey(t *testing.T) {
	ca := swtpmtest.NewEKCA(t)
	spec := swtpmtest.SocketOn(t, ca.Manufacture(t))
	withoutNV(t, spec, tpm.EKCertRSA2048)
	a := newAttestedTPMOn(t, spec)
	nonce := []byte("ecc")
	ev, err := a.l.Attest(a.h, a.key, tpmtoken.AttestOptions{Nonce: nonce})
	require.NoError(t, err)
	opts := attestation.VerifyOptions{EKRoots: ca.Roots(t), EKIntermediates: ca.Intermediates(t), Nonce: nonce, Activate: a.activate}
	v, err := attestation.VerifyEvidence(ev, opts)
	require.NoError(t, err)
	ek, ok := v.EKCertificate.PublicKey.(*ecdsa.PublicKey)
	require.True(t, ok, "the EK certificate used is not the ECC one")
	require.Equal(t, elliptic.P384(), ek.Curve)

	attCA, attKey := newAttestationCA(t)
	req, err := a.l.AKEvidence(a.h, "", nil)
	require.NoError(t, err)
	rb, err := req.JSON()
	require.NoError(t, err)
	ch, pending, err := attestation.NewChallenge(rb, opts, time.Hour)
	require.NoError(t, err)
	secret, err := a.l.ActivateCredential(a.h, &ch.ActivationChallenge)
	require.NoError(t, err)
	ak, err := attestation.IssueFromProof(rb, &attestation.Proof{Format: attestation.ProofFormat, RequestID: ch.RequestID, Secret: secret},
		pending, attCA, attKey, time.Hour)
	require.NoError(t, err)
	id, err := attestation.EKIdentifier(ek)
	require.NoError(t, err)
	require.Equal(t, id, attestation.PermanentIdentifier(ak))

	// No EK certificate at all: a plain refusal.
	spec2 := swtpmtest.SocketOn(t, ca.Manufacture(t))
	withoutNV(t, spec2, tpm.EKCertRSA2048, tpm.EKCertECCP384)
	b := newAttestedTPMOn(t, spec2)
	_, err = b.l.Attest(b.h, b.key, tpmtoken.AttestOptions{})
	require.ErrorIs(t, err, tpmtoken.ErrNoEKCertificate)
	require.Equal(t, ck.CKR_FUNCTION_NOT_SUPPORTED, ck.ToRV(err))
}
