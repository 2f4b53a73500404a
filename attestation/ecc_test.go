package attestation_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
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

// withP256EK gives the TPM at spec what a platform with a low-range ECC
// P-256 EK certificate has, and nothing else: the EK of template L-2
// certified by a CA of the test's (with the TCG subjectAltName of the
// swtpm's RSA EK certificate) at NV 0x01c0000a, written with platform
// authorization; the RSA and P-384 certificates removed. Returns the
// CA's root pool.
func withP256EK(t *testing.T, spec string) *x509.CertPool {
	d, err := tpm.Open(spec, "")
	require.NoError(t, err)
	defer d.Close()
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tpm2.ECCEKTemplate)}.Execute(d)
	require.NoError(t, err)
	_, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(d)
	pub, err := rsp.OutPublic.Contents()
	require.NoError(t, err)
	parms, err := pub.Parameters.ECCDetail()
	require.NoError(t, err)
	pt, err := pub.Unique.ECC()
	require.NoError(t, err)
	ek, err := tpm2.ECDSAPub(parms, pt)
	require.NoError(t, err)

	// The TPM's identity, as its RSA EK certificate names it.
	rsaPub, err := tpm2.NVReadPublic{NVIndex: tpm.EKCertRSA2048}.Execute(d)
	require.NoError(t, err)
	rsaNV, err := rsaPub.NVPublic.Contents()
	require.NoError(t, err)
	var rsaDER []byte
	for off := 0; off < int(rsaNV.DataSize); {
		n := min(int(rsaNV.DataSize)-off, 512)
		r, err := tpm2.NVRead{AuthHandle: tpm2.TPMRHPlatform, NVIndex: tpm2.NamedHandle{Handle: tpm.EKCertRSA2048, Name: rsaPub.NVName},
			Size: uint16(n), Offset: uint16(off)}.Execute(d)
		require.NoError(t, err)
		rsaDER = append(rsaDER, r.Data.Buffer...)
		off += n
	}
	rsaCert, err := x509.ParseCertificate(rsaDER)
	require.NoError(t, err)
	var san pkix.Extension
	for _, e := range rsaCert.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			san = e
		}
	}
	require.NotNil(t, san.Value)

	ca, caKey := newAttestationCA(t)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageKeyAgreement, ExtraExtensions: []pkix.Extension{san},
	}, ca, ek, caKey)
	require.NoError(t, err)
	nvPub := tpm2.TPMSNVPublic{NVIndex: tpm.EKCertECCP256, NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true, NoDA: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary},
		DataSize:   uint16(len(der))}
	_, err = tpm2.NVDefineSpace{AuthHandle: tpm2.TPMRHPlatform, PublicInfo: tpm2.New2B(nvPub)}.Execute(d)
	require.NoError(t, err)
	np, err := tpm2.NVReadPublic{NVIndex: tpm.EKCertECCP256}.Execute(d)
	require.NoError(t, err)
	for off := 0; off < len(der); off += 512 {
		chunk := der[off:min(off+512, len(der))]
		_, err = tpm2.NVWrite{AuthHandle: tpm2.TPMRHPlatform, NVIndex: tpm2.NamedHandle{Handle: tpm.EKCertECCP256, Name: np.NVName},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: chunk}, Offset: uint16(off)}.Execute(d)
		require.NoError(t, err)
		np, err = tpm2.NVReadPublic{NVIndex: tpm.EKCertECCP256}.Execute(d) // written: its name changed
		require.NoError(t, err)
	}
	d.Close()
	withoutNV(t, spec, tpm.EKCertRSA2048, tpm.EKCertECCP384)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return roots
}

// A TPM whose only EK certificate is the low-range ECC P-256 one: the EK
// of template L-2 (its user role by PolicySecret of the endorsement
// hierarchy, SHA-256) activates credentials, and the evidence verifies.
func TestP256EndorsementKey(t *testing.T) {
	ca := swtpmtest.NewEKCA(t)
	spec := swtpmtest.SocketOn(t, ca.Manufacture(t))
	roots := withP256EK(t, spec)
	a := newAttestedTPMOn(t, spec)
	for _, typ := range []string{tpm.AKRSA, tpm.AKECC} {
		ev, err := a.l.Attest(a.h, a.key, tpmtoken.AttestOptions{Nonce: []byte{1}, AKType: typ})
		require.NoError(t, err)
		v, err := attestation.VerifyEvidence(ev, attestation.VerifyOptions{EKRoots: roots, Nonce: []byte{1}, Activate: a.activate})
		require.NoError(t, err, typ)
		ek, ok := v.EKCertificate.PublicKey.(*ecdsa.PublicKey)
		require.True(t, ok)
		require.Equal(t, elliptic.P256(), ek.Curve)
	}
}
