package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/smallstep/certificates/acme"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/keyutil"
)

// stepCA is step-ca's ACME provisioner with device-attest-01 and the
// "tpm" format, trusting root's AK certificates, and the ACME account
// key of a client.
type stepCA struct {
	t   *testing.T
	ctx context.Context
	jwk *jose.JSONWebKey
}

func newStepCA(t *testing.T, roots []byte) *stepCA {
	prov := &provisioner.ACME{
		Type: "ACME", Name: "acme",
		Challenges:         []provisioner.ACMEChallenge{provisioner.DEVICE_ATTEST_01},
		AttestationFormats: []provisioner.ACMEAttestationFormat{provisioner.TPM},
		AttestationRoots:   roots,
	}
	require.NoError(t, prov.Init(provisioner.Config{Claims: config.GlobalProvisionerClaims}))
	jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	require.NoError(t, err)
	return &stepCA{t, acme.NewProvisionerContext(context.Background(), prov), jwk}
}

// nonce is what device-attest-01 has the TPM sign for token: SHA-256 of
// the key authorization.
func (s *stepCA) nonce(token string) []byte {
	ka, err := acme.KeyAuthorization(token, s.jwk)
	require.NoError(s.t, err)
	h := sha256.Sum256([]byte(ka))
	return h[:]
}

// validate runs step-ca's own validation of a device-attest-01 challenge
// (acme.Challenge.Validate) for token and identifier value with attObj
// as the client's payload, and returns the challenge as step-ca stored
// it and the authorization's key fingerprint.
func (s *stepCA) validate(token, value string, attObj []byte) (*acme.Challenge, string) {
	ch := &acme.Challenge{ID: "ch", AuthorizationID: "az", Token: token, Type: acme.DEVICEATTEST01,
		Status: acme.StatusPending, Value: value}
	az := &acme.Authorization{ID: "az"}
	var stored *acme.Challenge
	db := &acme.MockDB{
		MockGetAuthorization:    func(context.Context, string) (*acme.Authorization, error) { return az, nil },
		MockUpdateAuthorization: func(_ context.Context, a *acme.Authorization) error { az = a; return nil },
		MockUpdateChallenge:     func(_ context.Context, c *acme.Challenge) error { stored = c; return nil },
	}
	payload, err := json.Marshal(map[string]string{"attObj": base64.RawURLEncoding.EncodeToString(attObj)})
	require.NoError(s.t, err)
	require.NoError(s.t, ch.Validate(s.ctx, db, s.jwk, payload))
	require.NotNil(s.t, stored, "step-ca stored no verdict")
	return stored, az.Fingerprint
}

func (s *stepCA) refused(token, value string, attObj []byte, why string) {
	s.t.Helper()
	ch, _ := s.validate(token, value, attObj)
	require.Equal(s.t, acme.StatusInvalid, ch.Status)
	require.NotNil(s.t, ch.Error)
	require.Contains(s.t, ch.Error.Error()+" "+ch.Error.Detail, why)
}

// Stock step-ca accepts tpm11 attest --format acme (RSA AK, the default)
// for EC and RSA keys made in the TPM, binds the key (its fingerprint)
// and the device (the AK certificate's PermanentIdentifier is the
// order's permanent-identifier); it refuses a wrong nonce, another
// device's identifier, an untrusted attestation CA, a tampered
// certInfo/pubArea/sig and a key imported from software.
func TestStepCAAcceptsACMEForm(t *testing.T) {
	d := newDevice(t, "")
	id := attestation.PermanentIdentifier(d.ak)
	require.Regexp(t, `^urn:ek:sha256:`, id)
	s := newStepCA(t, pemOf(d.attCA))

	for _, key := range []uint64{d.key, d.rsaKey} {
		ev, err := d.l.Attest(d.h, key, tpmtoken.AttestOptions{Nonce: s.nonce("tok1")})
		require.NoError(t, err)
		obj, err := attestation.ACME(ev)
		require.NoError(t, err)
		ch, fp := s.validate("tok1", id, obj)
		require.Equal(t, acme.StatusValid, ch.Status, "step-ca refused: %v", ch.Error)
		pk, _ := d.publicKey(t, key)
		want, err := keyutil.Fingerprint(pk)
		require.NoError(t, err)
		require.Equal(t, want, fp, "step-ca bound another key")
	}

	ev, err := d.l.Attest(d.h, d.key, tpmtoken.AttestOptions{Nonce: s.nonce("tok2")})
	require.NoError(t, err)
	obj, err := attestation.ACME(ev)
	require.NoError(t, err)
	s.refused("tok3", id, obj, "key authorization invalid")
	s.refused("tok2", "urn:ek:sha256:another-device", obj, "permanent identifier does not match")
	other, _ := newCA(t)
	newStepCA(t, pemOf(other)).refused("tok2", id, obj, "x5c is not valid")

	for name, field := range map[string]func(*tpmtoken.Evidence) []byte{
		"certInfo": func(e *tpmtoken.Evidence) []byte { return e.Key.Attestation },
		"pubArea":  func(e *tpmtoken.Evidence) []byte { return e.Key.Public },
		"sig":      func(e *tpmtoken.Evidence) []byte { return e.Key.Signature },
	} {
		c := *ev
		c.Key.Attestation = append([]byte(nil), ev.Key.Attestation...)
		c.Key.Public = append([]byte(nil), ev.Key.Public...)
		c.Key.Signature = append([]byte(nil), ev.Key.Signature...)
		b := field(&c)
		b[len(b)-1] ^= 1
		obj, err := attestation.ACME(&c)
		require.NoError(t, err, name)
		s.refused("tok2", id, obj, "invalid certification parameters")
	}

	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	forged := d.importedKeyEvidence(t, ev, tpm.AKRSA, sk, s.nonce("tok4"))
	obj, err = attestation.ACME(forged)
	require.NoError(t, err)
	s.refused("tok4", id, obj, "invalid certification parameters")
}
