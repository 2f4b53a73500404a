package attestation_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// Remote enrollment, two machines (two swtpms, two stores) and a CA with
// no TPM: the request, the challenge, the proof and the certificate are
// bytes that travel. The AK certificate names the device (the
// PermanentIdentifier of its EK), is valid no longer than the CA, and the
// device's evidence then verifies with the CA's root alone. A proof made
// by another TPM, a proof for another request, a replayed proof (the CA
// drops the pending challenge on use) and an expired challenge fail.
func TestRemoteEnrollment(t *testing.T) {
	ekCA := swtpmtest.NewEKCA(t)
	a := newAttestedTPM(t, ekCA)
	b := newAttestedTPM(t, ekCA)
	attCA, attKey := newAttestationCA(t)
	opts := attestation.VerifyOptions{EKRoots: ekCA.Roots(t), EKIntermediates: ekCA.Intermediates(t)}

	request := func(d *attestedTPM, typ string) []byte {
		ev, err := d.l.AKEvidence(d.h, typ, nil)
		require.NoError(t, err)
		req, err := ev.JSON()
		require.NoError(t, err)
		return req
	}
	answer := func(d *attestedTPM, ch *attestation.Challenge) (*attestation.Proof, error) {
		secret, err := d.l.ActivateCredential(d.h, &ch.ActivationChallenge)
		if err != nil {
			return nil, err
		}
		return &attestation.Proof{Format: attestation.ProofFormat, RequestID: ch.RequestID, Secret: secret}, nil
	}

	for _, typ := range []string{tpm.AKRSA, tpm.AKECC} {
		req := request(a, typ)
		ch, pending, err := attestation.NewChallenge(req, opts, time.Hour)
		require.NoError(t, err)
		require.Equal(t, typ, ch.AKType)
		_, err = answer(b, ch)
		require.ErrorIs(t, err, tpm.ErrNotOurCredential, "another TPM answered the challenge")
		require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, ck.ToRV(err))
		// Bytes that are no challenge: refused, never a device error.
		for _, bad := range []tpmtoken.ActivationChallenge{
			{Credential: ch.Credential, Secret: append([]byte{ch.Secret[0], ch.Secret[1]}, make([]byte, len(ch.Secret)-2)...), AKType: typ},
			{Credential: []byte{0, 4, 1, 2, 3, 4}, Secret: ch.Secret, AKType: typ},
			{Credential: ch.Credential, Secret: []byte{0, 1, 7}, AKType: typ},
		} {
			_, err = a.l.ActivateCredential(a.h, &bad)
			require.Error(t, err)
			require.NotEqual(t, ck.CKR_DEVICE_ERROR, ck.ToRV(err), "%v", err)
		}
		proof, err := answer(a, ch)
		require.NoError(t, err)

		// B's own request and proof do not pass for A's request.
		breq := request(b, typ)
		bch, bpending, err := attestation.NewChallenge(breq, opts, time.Hour)
		require.NoError(t, err)
		bproof, err := answer(b, bch)
		require.NoError(t, err)
		_, err = attestation.IssueFromProof(req, bproof, pending, attCA, attKey, time.Hour)
		require.Error(t, err, "B's proof for A's request")
		_, err = attestation.IssueFromProof(req, proof, bpending, attCA, attKey, time.Hour)
		require.Error(t, err, "A's proof against B's pending challenge")
		wrong := *proof
		wrong.Secret = append([]byte(nil), proof.Secret...)
		wrong.Secret[0] ^= 1
		_, err = attestation.IssueFromProof(req, &wrong, pending, attCA, attKey, time.Hour)
		require.ErrorContains(t, err, "wrong proof")
		expired := *pending
		expired.Expires = time.Now().Add(-time.Second)
		_, err = attestation.IssueFromProof(req, proof, &expired, attCA, attKey, time.Hour)
		require.ErrorContains(t, err, "expired")

		akCert, err := attestation.IssueFromProof(req, proof, pending, attCA, attKey, 1000*time.Hour)
		require.NoError(t, err)
		require.False(t, akCert.NotAfter.After(attCA.NotAfter), "the AK certificate outlives its CA")
		require.False(t, akCert.NotBefore.Before(attCA.NotBefore))
		ekCert, err := attestation.VerifyEKCertificate(mustEvidence(t, req), opts)
		require.NoError(t, err)
		id, err := attestation.EKIdentifier(ekCert.PublicKey)
		require.NoError(t, err)
		require.Equal(t, id, attestation.PermanentIdentifier(akCert))

		require.NoError(t, a.l.SetAKCertificates(a.h, []*x509.Certificate{akCert, attCA}))
		ev, err := a.l.Attest(a.h, a.key, tpmtoken.AttestOptions{Nonce: []byte{7}})
		require.NoError(t, err)
		require.Len(t, ev.AK.Certificates, 1, "the self-signed root is not kept")
		roots := x509.NewCertPool()
		roots.AddCert(attCA)
		v, err := attestation.VerifyEvidence(ev, attestation.VerifyOptions{AKRoots: roots, Nonce: []byte{7}})
		require.NoError(t, err)
		require.Equal(t, id, v.PermanentIdentifier)
	}
}

func mustEvidence(t *testing.T, b []byte) *tpmtoken.Evidence {
	ev, err := tpmtoken.ParseEvidence(b)
	require.NoError(t, err)
	return ev
}
