package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
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

// device is a token on a swtpm whose EK certificates a private CA issued,
// its AK enrolled with an attestation CA, and a key generated in the TPM.
type device struct {
	spec    string
	l       *tpmtoken.Library
	h       uint64
	key     uint64 // EC P-256, generated in the TPM
	rsaKey  uint64 // RSA-2048, generated in the TPM
	attCA   *x509.Certificate
	ak      *x509.Certificate
	akRoots *x509.CertPool
}

var p256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

func attr(t ck.AttributeType, v []byte) tpmtoken.Attr { return tpmtoken.Attr{Type: t, Value: v} }

func ulong(v uint64) []byte {
	b := make([]byte, 8)
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

// newDevice manufactures a swtpm, makes a token, enrolls its AK of type
// akType (by credential activation, as tpm11 enroll-ak does on one host)
// and generates the keys.
func newDevice(t *testing.T, akType string) *device {
	t.Helper()
	ca := swtpmtest.NewEKCA(t)
	d := &device{spec: swtpmtest.SocketOn(t, ca.Manufacture(t))}
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: d.spec, Store: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(l.Close)
	d.l = l
	require.NoError(t, l.InitToken(0, []byte("sopin1"), []byte("interop")))
	h, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_SO, []byte("sopin1")))
	require.NoError(t, l.InitPIN(h, []byte("userpin")))
	require.NoError(t, l.Logout(h))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	d.h = h
	_, d.key, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{attr(ck.CKA_TOKEN, []byte{1}), attr(ck.CKA_EC_PARAMS, p256)},
		[]tpmtoken.Attr{attr(ck.CKA_TOKEN, []byte{1}), attr(ck.CKA_ID, []byte{1}), attr(ck.CKA_SIGN, []byte{1})})
	require.NoError(t, err)
	_, d.rsaKey, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{attr(ck.CKA_TOKEN, []byte{1}), attr(ck.CKA_MODULUS_BITS, ulong(2048))},
		[]tpmtoken.Attr{attr(ck.CKA_TOKEN, []byte{1}), attr(ck.CKA_ID, []byte{2}), attr(ck.CKA_SIGN, []byte{1})})
	require.NoError(t, err)

	var caKey *ecdsa.PrivateKey
	d.attCA, caKey = newCA(t)
	d.akRoots = x509.NewCertPool()
	d.akRoots.AddCert(d.attCA)
	ev, err := l.AKEvidence(h, akType, nil)
	require.NoError(t, err)
	d.ak, err = attestation.IssueAKCertificate(ev, attestation.VerifyOptions{
		EKRoots: ca.Roots(t), EKIntermediates: ca.Intermediates(t),
		Activate: func(ch *tpmtoken.ActivationChallenge) ([]byte, error) { return l.ActivateCredential(h, ch) },
	}, d.attCA, caKey, time.Hour)
	require.NoError(t, err)
	require.NoError(t, l.SetAKCertificates(h, []*x509.Certificate{d.ak, d.attCA}))
	return d
}

func (d *device) publicKey(t *testing.T, obj uint64) (any, []byte) {
	res, err := d.l.GetAttributeValue(d.h, obj, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(res[0].Value)
	require.NoError(t, err)
	return pk, res[0].Value
}

// newCA makes a self-signed attestation CA.
func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "interop attestation CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(2 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c, k
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// importedKeyEvidence is what no tpm11 command makes: the TPM's own AK
// (of type akType, the enrolled one) certifying a key that came from
// software (TPM2_LoadExternal: neither fixedTPM, fixedParent nor
// sensitiveDataOrigin), with nonce. It closes the device's library (one
// connection to the swtpm at a time) and talks to the TPM directly: the
// only way to have a real TPM sign such a statement, for the verifiers to
// refuse. ev's AK part and certificates are kept; the key part replaced.
func (d *device) importedKeyEvidence(t *testing.T, ev *tpmtoken.Evidence, akType string, sk *ecdsa.PrivateKey, nonce []byte) *tpmtoken.Evidence {
	t.Helper()
	d.l.Close()
	dev, err := tpm.Open(d.spec, "")
	require.NoError(t, err)
	defer dev.Close()
	ak, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tpm.AKTemplate(akType))}.Execute(dev)
	require.NoError(t, err)
	defer tpm2.FlushContext{FlushHandle: ak.ObjectHandle}.Execute(dev)
	pub := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			CurveID: tpm2.TPMECCNistP256,
			Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: sk.X.FillBytes(make([]byte, 32))},
			Y: tpm2.TPM2BECCParameter{Buffer: sk.Y.FillBytes(make([]byte, 32))},
		}),
	}
	sens := tpm2.TPMTSensitive{SensitiveType: tpm2.TPMAlgECC,
		Sensitive: tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgECC, &tpm2.TPM2BECCParameter{Buffer: sk.D.FillBytes(make([]byte, 32))})}
	le, err := tpm2.LoadExternal{InPrivate: tpm2.New2B(sens), InPublic: tpm2.New2B(pub), Hierarchy: tpm2.TPMRHNull}.Execute(dev)
	require.NoError(t, err)
	defer tpm2.FlushContext{FlushHandle: le.ObjectHandle}.Execute(dev)
	cert, err := tpm2.Certify{
		ObjectHandle:   tpm2.AuthHandle{Handle: le.ObjectHandle, Name: le.Name, Auth: tpm2.PasswordAuth(nil)},
		SignHandle:     tpm2.AuthHandle{Handle: ak.ObjectHandle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
	}.Execute(dev)
	require.NoError(t, err)
	forged := *ev
	forged.Key.Public, forged.Key.Attestation, forged.Key.Signature = tpm2.Marshal(pub), cert.CertifyInfo.Bytes(), tpm2.Marshal(cert.Signature)
	forged.Key.Nonce, forged.Key.PublicKey = nonce, ""
	return &forged
}
