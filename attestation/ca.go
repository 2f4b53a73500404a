package attestation

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/tpm11/tpm11/tpmtoken"
)

// An attestation CA's side of enrollment: it checks a TPM's EK
// certificate, binds the TPM's AK to that EK by credential activation, and
// issues an AK certificate naming the device (PermanentIdentifier of the
// EK) and the TPM (manufacturer, model, version). On one host
// IssueAKCertificate does it all with the TPM at hand; with the CA
// elsewhere the steps are files: the device's request (the AK evidence,
// tpmtoken.Library.AKEvidence), the CA's Challenge, the device's Proof
// (tpmtoken.Library.ActivateCredential), the CA's certificate.

var oidPermanentIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 3} // id-on-permanentIdentifier (RFC 4043)

// EKIdentifier is the device identity derived from the TPM's EK:
// "urn:ek:sha256:" and the base64 of the SHA-256 of its
// SubjectPublicKeyInfo, the form smallstep's TPM tooling gives EKs. It is
// the PermanentIdentifier of the AK certificates this package issues, so
// the value an ACME order's permanent-identifier names.
func EKIdentifier(ek crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(ek)
	if err != nil {
		return "", err
	}
	return "urn:ek:sha256:" + base64.StdEncoding.EncodeToString(sha256Of(der)), nil
}

// IssueAKCertificate is the one-host enrollment: it checks the EK
// certificate and the AK (as VerifyEvidence does without an AK
// certificate: opts.EKRoots and opts.Activate are required), and issues
// the AK certificate (AKCertificate).
func IssueAKCertificate(ev *tpmtoken.Evidence, opts VerifyOptions, ca *x509.Certificate, caKey crypto.Signer, validity time.Duration) (*x509.Certificate, error) {
	if opts.Activate == nil {
		return nil, errors.New("an AK certificate needs credential activation")
	}
	ekCert, err := verifyActivation(ev, opts)
	if err != nil {
		return nil, err
	}
	return AKCertificate(ev, ekCert, ca, caKey, validity)
}

// AKCertificate issues the certificate of ev's AK, once the CA has bound
// it to ekCert (checked, and activated): the profile WebAuthn's "tpm"
// format asks of an AIK certificate — version 3, empty subject, a
// critical subjectAltName with the EK certificate's TCG directoryName
// (TPM manufacturer, model, version) and the PermanentIdentifier of the
// EK (EKIdentifier), extended key usage tcg-kp-AIKCertificate, not a CA —
// valid for validity but never outside the CA's own validity.
func AKCertificate(ev *tpmtoken.Evidence, ekCert, ca *x509.Certificate, caKey crypto.Signer, validity time.Duration) (*x509.Certificate, error) {
	akKey, err := akPublic(ev.AK.Public)
	if err != nil {
		return nil, err
	}
	var ekSAN []byte
	for _, e := range ekCert.Extensions {
		if e.Id.Equal(oidSAN) {
			ekSAN = e.Value
		}
	}
	if ekSAN == nil {
		return nil, errors.New("the EK certificate has no subjectAltName naming the TPM")
	}
	id, err := EKIdentifier(ekCert.PublicKey)
	if err != nil {
		return nil, err
	}
	san, err := akSAN(ekSAN, id)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notBefore, notAfter := now.Add(-time.Minute), now.Add(validity)
	if notBefore.Before(ca.NotBefore) {
		notBefore = ca.NotBefore
	}
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("the CA certificate expired on %s", ca.NotAfter.Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{oidTCGKpAIKCert},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidSAN, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, akKey, caKey)
	if err != nil {
		return nil, err
	}
	return parseCert(der)
}

// akSAN is the AK certificate's subjectAltName: the directoryName entries
// of the EK certificate's (the TCG's TPM manufacturer, model, version)
// and an otherName PermanentIdentifier {identifierValue: id}.
func akSAN(ekSAN []byte, id string) ([]byte, error) {
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(ekSAN, &names); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("the EK certificate's subjectAltName: %v", err)
	}
	var out []asn1.RawValue
	for _, n := range names {
		if n.Class == asn1.ClassContextSpecific && n.Tag == 4 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the EK certificate's subjectAltName has no directoryName naming the TPM")
	}
	pi, err := asn1.Marshal(struct {
		Value string `asn1:"utf8"`
	}{id})
	if err != nil {
		return nil, err
	}
	oid, err := asn1.Marshal(oidPermanentIdentifier)
	if err != nil {
		return nil, err
	}
	val, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: pi})
	if err != nil {
		return nil, err
	}
	out = append(out, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, val...)})
	return asn1.Marshal(out)
}

// permanentIdentifier is the identifierValue of c's PermanentIdentifier
// subjectAltName, or "".
func permanentIdentifier(c *x509.Certificate) string {
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidSAN) {
			continue
		}
		var names []asn1.RawValue
		if _, err := asn1.Unmarshal(e.Value, &names); err != nil {
			return ""
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
				continue
			}
			var oid asn1.ObjectIdentifier
			rest, err := asn1.Unmarshal(n.Bytes, &oid)
			if err != nil || !oid.Equal(oidPermanentIdentifier) {
				continue
			}
			var val asn1.RawValue
			if _, err := asn1.Unmarshal(rest, &val); err != nil {
				continue
			}
			var pi struct {
				Value string `asn1:"utf8,optional"`
			}
			if _, err := asn1.Unmarshal(val.Bytes, &pi); err == nil {
				return pi.Value
			}
		}
	}
	return ""
}

// Formats of the files of remote enrollment.
const (
	ChallengeFormat = "tpm11-ak-challenge/1"
	ProofFormat     = "tpm11-ak-proof/1"
)

// Challenge is the CA's answer to an enrollment request: a credential
// activation challenge for the request's AK and EK, and which request it
// answers (RequestID).
type Challenge struct {
	Format    string `json:"format"`
	RequestID string `json:"request"`
	tpmtoken.ActivationChallenge
}

// Proof is the device's answer to a Challenge: the secret its TPM
// recovered.
type Proof struct {
	Format    string `json:"format"`
	RequestID string `json:"request"`
	Secret    []byte `json:"secret"`
}

// Pending is what the CA keeps between the challenge and the proof:
// SHA-256 of the secret, never the secret, and until when it is good.
type Pending struct {
	RequestID  string    `json:"request"`
	SecretHash []byte    `json:"secret_sha256"`
	Expires    time.Time `json:"expires"`
}

// RequestID names an enrollment request: hex SHA-256 of its bytes.
func RequestID(req []byte) string { return hex.EncodeToString(sha256Of(req)) }

// NewChallenge is the CA's first step: req is the device's AK evidence
// (JSON); its EK certificate is checked against opts.EKRoots and a
// challenge made (NewActivationChallenge). The Pending is for CheckProof,
// valid for ttl.
func NewChallenge(req []byte, opts VerifyOptions, ttl time.Duration) (*Challenge, *Pending, error) {
	ev, err := tpmtoken.ParseEvidence(req)
	if err != nil {
		return nil, nil, err
	}
	ch, secret, _, err := NewActivationChallenge(ev, opts)
	if err != nil {
		return nil, nil, err
	}
	id := RequestID(req)
	return &Challenge{Format: ChallengeFormat, RequestID: id, ActivationChallenge: *ch},
		&Pending{RequestID: id, SecretHash: sha256Of(secret), Expires: time.Now().Add(ttl)}, nil
}

// ParseChallenge reads a Challenge.
func ParseChallenge(b []byte) (*Challenge, error) {
	var c Challenge
	if err := json.Unmarshal(b, &c); err != nil || c.Format != ChallengeFormat {
		return nil, fmt.Errorf("not a %s challenge (%v)", ChallengeFormat, err)
	}
	return &c, nil
}

// ParseProof reads a Proof.
func ParseProof(b []byte) (*Proof, error) {
	var p Proof
	if err := json.Unmarshal(b, &p); err != nil || p.Format != ProofFormat {
		return nil, fmt.Errorf("not a %s proof (%v)", ProofFormat, err)
	}
	return &p, nil
}

// IssueFromProof is the CA's last step: the proof must answer the
// challenge made for req (pending, then discarded by the caller: a proof
// is good once), in time; the AK certificate is then issued
// (AKCertificate). The EK certificate was checked by NewChallenge for
// these very bytes (pending names their hash).
func IssueFromProof(req []byte, proof *Proof, pending *Pending, ca *x509.Certificate, caKey crypto.Signer, validity time.Duration) (*x509.Certificate, error) {
	id := RequestID(req)
	if pending == nil || pending.RequestID != id || proof.RequestID != id {
		return nil, errors.New("the proof does not answer a challenge made for this request")
	}
	if time.Now().After(pending.Expires) {
		return nil, errors.New("the challenge expired: make a new one")
	}
	if subtle.ConstantTimeCompare(sha256Of(proof.Secret), pending.SecretHash) != 1 {
		return nil, errors.New("wrong proof: the secret was not recovered by the TPM of this request's EK and AK")
	}
	ev, err := tpmtoken.ParseEvidence(req)
	if err != nil {
		return nil, err
	}
	certs, err := parsePEMs(ev.EK.Certificates)
	if err != nil {
		return nil, fmt.Errorf("EK certificate: %w", err)
	}
	return AKCertificate(ev, certs[0], ca, caKey, validity)
}

// SelfSigned reports whether c is a self-signed (root) certificate.
func SelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}
