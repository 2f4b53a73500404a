package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/interop/acmeca"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
	"golang.org/x/crypto/acme"
)

// order is one device-attest-01 challenge of a running step-ca, for the
// permanent identifier id, through golang.org/x/crypto/acme.
type order struct {
	t     *testing.T
	ctx   context.Context
	cl    *acme.Client
	chal  *acme.Challenge
	nonce []byte // SHA-256 of the key authorization
}

func newOrder(t *testing.T, ca *acmeca.CA, id string) *order {
	t.Helper()
	p, err := os.ReadFile(ca.Root)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(p))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // catches a hang only
	t.Cleanup(cancel)
	cl := &acme.Client{Key: key, DirectoryURL: ca.Directory,
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}}
	_, err = cl.Register(ctx, &acme.Account{}, acme.AcceptTOS)
	require.NoError(t, err)
	o, err := cl.AuthorizeOrder(ctx, []acme.AuthzID{{Type: "permanent-identifier", Value: id}})
	require.NoError(t, err)
	require.Len(t, o.AuthzURLs, 1)
	az, err := cl.GetAuthorization(ctx, o.AuthzURLs[0])
	require.NoError(t, err)
	require.Len(t, az.Challenges, 1)
	require.Equal(t, "device-attest-01", az.Challenges[0].Type)
	ka, err := cl.HTTP01ChallengeResponse(az.Challenges[0].Token)
	require.NoError(t, err)
	h := sha256.Sum256([]byte(ka))
	return &order{t, ctx, cl, az.Challenges[0], h[:]}
}

// answer posts attObj and returns step-ca's verdict on the challenge.
func (o *order) answer(attObj []byte) *acme.Challenge {
	o.t.Helper()
	var err error
	o.chal.Payload, err = json.Marshal(map[string]string{"attObj": base64.RawURLEncoding.EncodeToString(attObj)})
	require.NoError(o.t, err)
	got, err := o.cl.Accept(o.ctx, o.chal)
	require.NoError(o.t, err)
	return got
}

func (o *order) refused(attObj []byte, why string) {
	o.t.Helper()
	got := o.answer(attObj)
	require.Equal(o.t, acme.StatusInvalid, got.Status)
	require.ErrorContains(o.t, got.Error, why)
}

// Stock step-ca running as a server (acmeca: its ca.New + Run, ACME over
// HTTPS, its bbolt database) answers device-attest-01 through the ACME
// protocol (golang.org/x/crypto/acme, as tpm11 acme does): it accepts
// tpm11's evidence for a TPM key with the key authorization's nonce, and
// refuses with its own errors a wrong nonce, an AK its attestation roots
// did not enroll, and a key imported from software (certified by the
// real AK: only a test can make that). testdata/acme-test.sh runs the
// whole flow through the tpm11 command and openssl.
func TestStepCAServerDeviceAttest(t *testing.T) {
	d := newDevice(t, "")
	id := attestation.PermanentIdentifier(d.ak)
	ca, err := acmeca.Start(t.TempDir(), pemOf(d.attCA))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ca.Stop() })
	other, _ := newCA(t)
	rogue, err := acmeca.Start(t.TempDir(), pemOf(other))
	require.NoError(t, err)
	t.Cleanup(func() { _ = rogue.Stop() })

	evidence := func(nonce []byte) (*tpmtoken.Evidence, []byte) {
		ev, err := d.l.Attest(d.h, d.key, tpmtoken.AttestOptions{Nonce: nonce})
		require.NoError(t, err)
		obj, err := attestation.ACME(ev)
		require.NoError(t, err)
		return ev, obj
	}

	o := newOrder(t, ca, id)
	wrong := sha256.Sum256([]byte("not the key authorization"))
	_, obj := evidence(wrong[:])
	o.refused(obj, "key authorization invalid")

	o = newOrder(t, rogue, id)
	_, obj = evidence(o.nonce)
	o.refused(obj, "x5c is not valid")

	o = newOrder(t, ca, id)
	ev, obj := evidence(o.nonce)
	got := o.answer(obj)
	require.Equal(t, acme.StatusValid, got.Status, "step-ca refused: %v", got.Error)

	o = newOrder(t, ca, id)
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	obj, err = attestation.ACME(d.importedKeyEvidence(t, ev, tpm.AKRSA, sk, o.nonce))
	require.NoError(t, err)
	o.refused(obj, "invalid certification parameters")
}
