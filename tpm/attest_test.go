package tpm_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"math/big"
	"testing"

	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/legacy/tpm2/credactivation"
	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// manufactured opens an Engine on a swtpm whose EK certificates a private
// CA issued.
func manufactured(t *testing.T, ca *swtpmtest.EKCA) *tpm.Engine {
	t.Helper()
	spec := swtpmtest.SocketOn(t, ca.Manufacture(t))
	d, err := tpm.Open(spec, "")
	require.NoError(t, err)
	e := tpm.NewEngine(d.TPM, d.ObjectSlots)
	t.Cleanup(func() { e.FlushAll(); _ = d.Close() })
	return e
}

// The EK certificate in NV chains to the CA and names the EK the
// engine uses; the AK certifies its own creation and a key; credential
// activation returns the verifier's secret only for this TPM's AK and EK.
func TestEKCertificateAKCertifyAndActivation(t *testing.T) {
	ca := swtpmtest.NewEKCA(t)
	e := manufactured(t, ca)

	der, err := e.ReadNV(tpm.EKCertRSA2048)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	cert.UnhandledCriticalExtensions = nil // the TCG subjectAltName (directoryName)
	inter := x509.NewCertPool()
	inter.AddCert(ca.Intermediate(t))
	_, err = cert.Verify(x509.VerifyOptions{Roots: ca.Roots(t), Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)
	_, err = e.ReadNV(0x01c0ffff)
	require.ErrorIs(t, err, tpm.ErrNoNV)

	ek := tpm.EKRSA()
	ekPub, err := e.Public(ek)
	require.NoError(t, err)
	rp, err := ekPub.Parameters.RSADetail()
	require.NoError(t, err)
	n, err := ekPub.Unique.RSA()
	require.NoError(t, err)
	ekKey, err := tpm2.RSAPub(rp, n)
	require.NoError(t, err)
	require.True(t, ekKey.Equal(cert.PublicKey.(*rsa.PublicKey)), "the EK is the certified key")

	ak := tpm.AK(tpm.AKECC)
	cr, err := e.CertifyAKCreation(ak)
	require.NoError(t, err)
	akPub, err := e.Public(ak)
	require.NoError(t, err)
	require.Equal(t, cr.Public, tpm2.Marshal(akPub), "the AK is the same primary each time")

	// A key, certified by the AK with a nonce.
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	pub, priv, err := e.Create(srk, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
	require.NoError(t, err)
	key := &tpm.Loadable{ID: "key", Parent: srk, Public: pub, Private: priv}
	attest, sig, err := e.Certify(key, ak, []byte("nonce"))
	require.NoError(t, err)
	info, err := tpm2.Unmarshal[tpm2.TPMSAttest](attest)
	require.NoError(t, err)
	require.Equal(t, []byte("nonce"), info.ExtraData.Buffer)
	s, err := tpm2.Unmarshal[tpm2.TPMTSignature](sig)
	require.NoError(t, err)
	es, err := s.Signature.ECDSA()
	require.NoError(t, err)
	ep, _ := akPub.Parameters.ECCDetail()
	pt, _ := akPub.Unique.ECC()
	akKey, err := tpm2.ECDSAPub(ep, pt)
	require.NoError(t, err)
	d := sha256.Sum256(attest)
	require.True(t, ecdsa.Verify(akKey, d[:], new(big.Int).SetBytes(es.SignatureR.Buffer), new(big.Int).SetBytes(es.SignatureS.Buffer)))

	// Credential activation, the verifier's side in software.
	name, err := tpm2.ObjectName(&akPub)
	require.NoError(t, err)
	secret := []byte("0123456789abcdef")
	hv := nameHash(*name)
	cred, encSecret, err := credactivation.Generate(hv, cert.PublicKey, 16, secret)
	require.NoError(t, err)
	got, err := e.ActivateCredential(ak, ek, cred[2:], encSecret[2:])
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// For another key's name, the TPM refuses.
	other, err := tpm2.ObjectName(mustContents(t, pub))
	require.NoError(t, err)
	hv2 := nameHash(*other)
	cred2, enc2, err := credactivation.Generate(hv2, cert.PublicKey, 16, secret)
	require.NoError(t, err)
	_, err = e.ActivateCredential(ak, ek, cred2[2:], enc2[2:])
	require.Error(t, err)
	var rc tpm2.TPMRC
	require.True(t, errors.As(err, &rc), "%v", err)
}

func mustContents(t *testing.T, p tpm2.TPM2BPublic) *tpm2.TPMTPublic {
	c, err := p.Contents()
	require.NoError(t, err)
	return c
}

// nameHash is a TPM name (nameAlg ‖ digest) as the legacy package has it.
func nameHash(n tpm2.TPM2BName) *legacy.HashValue {
	return &legacy.HashValue{Alg: legacy.Algorithm(binary.BigEndian.Uint16(n.Buffer)), Value: n.Buffer[2:]}
}
