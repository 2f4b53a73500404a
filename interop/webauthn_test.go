package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

const (
	rpID   = "example.org"
	origin = "https://example.org"
)

var b64 = base64.RawURLEncoding.EncodeToString

// ceremony is one WebAuthn registration: the relying party's challenge
// and the client data the browser would make of it.
type ceremony struct {
	challenge  string
	clientData []byte
	hash       []byte
}

func newCeremony(t *testing.T) ceremony {
	c := make([]byte, 32)
	_, err := rand.Read(c)
	require.NoError(t, err)
	cd := fmt.Appendf(nil, `{"type":"webauthn.create","challenge":%q,"origin":%q,"crossOrigin":false}`, b64(c), origin)
	h := sha256.Sum256(cd)
	return ceremony{b64(c), cd, h[:]}
}

// register has go-webauthn, unmodified, run the relying party's side of
// a registration (ParseCredentialCreationResponseBytes, then
// ParsedCredentialCreationData.Verify: client data, authData, the "tpm"
// statement) on attObj, and returns the parsed credential.
func (c ceremony) register(credID, attObj []byte) (*protocol.ParsedCredentialCreationData, error) {
	body, err := json.Marshal(map[string]any{
		"id": b64(credID), "rawId": b64(credID), "type": "public-key",
		"response": map[string]string{"clientDataJSON": b64(c.clientData), "attestationObject": b64(attObj)},
	})
	if err != nil {
		return nil, err
	}
	pcc, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return nil, err
	}
	params := []protocol.CredentialParameter{
		{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
		{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgRS256},
	}
	_, err = pcc.Verify(c.challenge, rpID, []string{origin}, nil, nil, protocol.TopOriginImplicitVerificationMode,
		false, false, true, nil, params, protocol.AttestationPolicy{}, protocol.SignaturePolicy{})
	return pcc, err
}

// webAuthnForm is tpm11 attest --format webauthn for key, for c.
func webAuthnForm(t *testing.T, d *device, key uint64, c ceremony) (ev *tpmtoken.Evidence, authData, credID, attObj []byte) {
	pk, spki := d.publicKey(t, key)
	id := sha256.Sum256(spki)
	authData, err := attestation.WebAuthnAuthData(rpID, id[:], pk)
	require.NoError(t, err)
	ev, err = d.l.Attest(d.h, key, tpmtoken.AttestOptions{Nonce: attestation.WebAuthnNonce(authData, c.hash)})
	require.NoError(t, err)
	attObj, err = attestation.WebAuthn(ev, authData)
	require.NoError(t, err)
	return ev, authData, id[:], attObj
}

// go-webauthn accepts tpm11 attest --format webauthn, with an RSA and an
// ECC AK, for EC and RSA keys, as an AttCA attestation whose x5c chains
// to the attestation CA; it refuses another ceremony's object (nonce),
// and a tampered certInfo, pubArea or sig. A key imported from software
// gets no evidence from tpm11; the TPM-signed statement for one that a
// tool could make (WebAuthn does not read pubArea's attributes) is
// refused by tpm11's verifier.
func TestGoWebAuthnAcceptsWebAuthnForm(t *testing.T) {
	for _, akType := range []string{tpm.AKRSA, tpm.AKECC} {
		t.Run(akType, func(t *testing.T) {
			d := newDevice(t, akType)
			for _, key := range []uint64{d.key, d.rsaKey} {
				c := newCeremony(t)
				_, _, credID, obj := webAuthnForm(t, d, key, c)
				pcc, err := c.register(credID, obj)
				require.NoError(t, err, "go-webauthn refused")
				ao := pcc.Response.AttestationObject
				require.Equal(t, "attca", ao.Type)
				// The relying party's trust decision: x5c chains to the CA.
				x5c := ao.AttStatement["x5c"].([]any)
				leaf, err := x509.ParseCertificate(x5c[0].([]byte))
				require.NoError(t, err)
				leaf.UnhandledCriticalExtensions = nil // the TCG subjectAltName
				_, err = leaf.Verify(x509.VerifyOptions{Roots: d.akRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
				require.NoError(t, err)
				for _, raw := range x5c {
					c, err := x509.ParseCertificate(raw.([]byte))
					require.NoError(t, err)
					require.False(t, attestation.SelfSigned(c), "x5c carries a self-signed root")
				}
				// Our verifier agrees.
				_, err = attestation.VerifyCBOR(obj, attestation.VerifyOptions{AKRoots: d.akRoots, ClientDataHash: c.hash})
				require.NoError(t, err)
			}

			c := newCeremony(t)
			ev, authData, credID, obj := webAuthnForm(t, d, d.key, c)
			_, err := newCeremony(t).register(credID, obj)
			require.Error(t, err, "another ceremony's attestation object accepted")
			for name, field := range map[string]func(*tpmtoken.Evidence) []byte{
				"certInfo": func(e *tpmtoken.Evidence) []byte { return e.Key.Attestation },
				"pubArea":  func(e *tpmtoken.Evidence) []byte { return e.Key.Public },
				"sig":      func(e *tpmtoken.Evidence) []byte { return e.Key.Signature },
			} {
				tc := *ev
				tc.Key.Attestation = append([]byte(nil), ev.Key.Attestation...)
				tc.Key.Public = append([]byte(nil), ev.Key.Public...)
				tc.Key.Signature = append([]byte(nil), ev.Key.Signature...)
				b := field(&tc)
				b[len(b)-1] ^= 1
				tobj, err := attestation.WebAuthn(&tc, authData)
				require.NoError(t, err, name)
				_, err = c.register(credID, tobj)
				require.Error(t, err, "tampered %s accepted", name)
			}

			_, err = d.l.Attest(d.h, d.key, tpmtoken.AttestOptions{}) // still fine
			require.NoError(t, err)
			// The statement a tool could make for an imported key, with
			// authData naming that key: tpm11's verifier refuses it;
			// go-webauthn does not read pubArea's attributes (logged, not
			// asserted: it is their choice), which is why tpm11 makes no
			// evidence for such keys at all.
			sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			fAuth, err := attestation.WebAuthnAuthData(rpID, credID, &sk.PublicKey)
			require.NoError(t, err)
			forged := d.importedKeyEvidence(t, ev, akType, sk, attestation.WebAuthnNonce(fAuth, c.hash))
			fobj, err := attestation.WebAuthn(forged, fAuth)
			require.NoError(t, err)
			_, err = attestation.VerifyCBOR(fobj, attestation.VerifyOptions{AKRoots: d.akRoots, ClientDataHash: c.hash})
			require.ErrorContains(t, err, "key certification")
			_, err = c.register(credID, fobj)
			t.Logf("go-webauthn on a TPM-signed statement about an imported key: %v", err)
		})
	}
}
