package tpmtoken

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
)

// Key attestation, the verifier's side. It needs no TPM: the checks of
// the TPM structures are go-attestation's (the library step-ca uses for
// ACME device-attest-01), the certificate chains Go's crypto/x509.

var (
	oidSAN          = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTCGKpAIKCert = asn1.ObjectIdentifier{2, 23, 133, 8, 3} // tcg-kp-AIKCertificate
)

// VerifyOptions are a verifier's trust anchors and expectations.
type VerifyOptions struct {
	// EKRoots are the TPM manufacturers' roots (for swtpm: swtpm_localca's
	// root certificate); EKIntermediates may add to the chain the
	// evidence carries.
	EKRoots, EKIntermediates *x509.CertPool
	// AKRoots are the attestation CAs whose AK certificates are trusted.
	AKRoots *x509.CertPool
	// Nonce, if not nil, must be the attestation's qualifying data.
	Nonce []byte
	// Activate, if set, answers a credential activation challenge (the
	// TPM's side: Library.ActivateCredential, directly or over a network).
	// Evidence whose AK has no trusted certificate is then checked by
	// activation against its EK certificate.
	Activate func(*ActivationChallenge) ([]byte, error)
	// Now is the time certificates must be valid at (zero: now).
	Now time.Time
}

// Verified is what verified evidence proves.
type Verified struct {
	// PublicKey is the attested key, in the TPM, not exportable, made
	// there (fixedTPM, fixedParent, sensitiveDataOrigin).
	PublicKey crypto.PublicKey
	// Nonce is the qualifying data the AK signed with the key's name.
	Nonce []byte
	// EKCertificate is the TPM's EK certificate, when the AK was bound to
	// it by credential activation; AKCertificate the AK certificate, when
	// an attestation CA vouched for the AK.
	EKCertificate, AKCertificate *x509.Certificate
}

// ActivationChallenge is a credential activation challenge: a secret
// encrypted to the EK for the AK's name (TPM2B_ID_OBJECT and
// TPM2B_ENCRYPTED_SECRET, size prefixes included, as go-attestation makes
// them).
type ActivationChallenge struct {
	Credential []byte `json:"credential"`
	Secret     []byte `json:"secret"`
}

// ErrAKNotBound says the evidence's AK is tied neither to a trusted AK
// certificate nor, by activation, to a trusted EK certificate.
var ErrAKNotBound = errors.New("the attestation key is not bound to a trusted TPM: give an attestation CA root (AK certificate) or activate a credential against the EK certificate")

// VerifyEvidence checks evidence: the key is a TPM key that cannot leave
// the TPM (go-attestation's CertificationParameters.Verify), the AK signed
// that with the expected nonce, and the AK is trusted — by an AK
// certificate chaining to opts.AKRoots, else by credential activation
// (opts.Activate) against the EK certificate chaining to opts.EKRoots.
func VerifyEvidence(ev *Evidence, opts VerifyOptions) (*Verified, error) {
	if ev == nil || ev.Format != EvidenceFormat {
		return nil, errors.New("not tpm11 attestation evidence")
	}
	v := &Verified{}
	var akKey crypto.PublicKey
	if len(ev.AK.Certificates) > 0 && opts.AKRoots != nil {
		chain, err := parsePEMs(ev.AK.Certificates)
		if err != nil {
			return nil, fmt.Errorf("AK certificates: %w", err)
		}
		if err := verifyAKCert(chain, opts); err != nil {
			return nil, err
		}
		pub, err := akPublic(ev.AK.Public)
		if err != nil {
			return nil, err
		}
		if !publicEqual(pub, chain[0].PublicKey) {
			return nil, errors.New("the AK certificate is for another key than the evidence's AK")
		}
		v.AKCertificate, akKey = chain[0], pub
	} else {
		if opts.Activate == nil {
			return nil, ErrAKNotBound
		}
		ekCert, err := verifyActivation(ev, opts)
		if err != nil {
			return nil, err
		}
		v.EKCertificate = ekCert
		if akKey, err = akPublic(ev.AK.Public); err != nil {
			return nil, err
		}
	}
	return v, verifyCertify(v, ev.Key.Public, ev.Key.Attestation, ev.Key.Signature, akKey, opts.Nonce)
}

// verifyCertify checks TPM2_Certify of key public pub by AK akKey.
func verifyCertify(v *Verified, pub, att, sig []byte, akKey crypto.PublicKey, nonce []byte) error {
	cp := attest.CertificationParameters{Public: pub, CreateAttestation: att, CreateSignature: sig}
	if err := cp.Verify(attest.VerifyOpts{Public: akKey, Hash: crypto.SHA256}); err != nil {
		return fmt.Errorf("key certification: %w", err)
	}
	a, err := tpm2.Unmarshal[tpm2.TPMSAttest](att)
	if err != nil {
		return fmt.Errorf("key certification: %w", err)
	}
	if nonce != nil && subtle.ConstantTimeCompare(a.ExtraData.Buffer, nonce) != 1 {
		return errors.New("the attestation is not for this nonce")
	}
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](pub)
	if err != nil {
		return err
	}
	if v.PublicKey, err = tpmPublicKey(p); err != nil {
		return err
	}
	v.Nonce = a.ExtraData.Buffer
	return nil
}

// verifyActivation checks the EK certificate chain, that the evidence's EK
// is the certified key, the AK's parameters (a restricted TPM key,
// certified by its own creation), and has the TPM activate a credential
// for the AK's name, encrypted to the EK.
func verifyActivation(ev *Evidence, opts VerifyOptions) (*x509.Certificate, error) {
	ekCert, err := VerifyEKCertificate(ev, opts)
	if err != nil {
		return nil, err
	}
	ap := attest.ActivationParameters{
		EK: ekCert.PublicKey,
		AK: attest.AttestationParameters{Public: ev.AK.Public, CreateData: ev.AK.CreateData,
			CreateAttestation: ev.AK.CreateAttestation, CreateSignature: ev.AK.CreateSignature},
	}
	secret, ec, err := ap.Generate()
	if err != nil {
		return nil, fmt.Errorf("attestation key: %w", err)
	}
	got, err := opts.Activate(&ActivationChallenge{Credential: ec.Credential, Secret: ec.Secret})
	if err != nil {
		return nil, fmt.Errorf("credential activation: %w", err)
	}
	if subtle.ConstantTimeCompare(got, secret) != 1 {
		return nil, errors.New("credential activation: wrong secret (the AK is not in the TPM of this EK)")
	}
	return ekCert, nil
}

// VerifyEKCertificate checks the evidence's EK certificate against
// opts.EKRoots and that it certifies the evidence's EK.
func VerifyEKCertificate(ev *Evidence, opts VerifyOptions) (*x509.Certificate, error) {
	if opts.EKRoots == nil {
		return nil, errors.New("no EK roots to check the EK certificate against")
	}
	certs, err := parsePEMs(ev.EK.Certificates)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("EK certificate: %v", err)
	}
	inter := x509.NewCertPool()
	if opts.EKIntermediates != nil {
		inter = opts.EKIntermediates.Clone()
	}
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: opts.EKRoots, Intermediates: inter, CurrentTime: opts.Now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("EK certificate: %w", err)
	}
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.EK.Public)
	if err != nil {
		return nil, fmt.Errorf("EK public area: %w", err)
	}
	ek, err := tpmPublicKey(p)
	if err != nil {
		return nil, err
	}
	if !publicEqual(ek, certs[0].PublicKey) {
		return nil, errors.New("the EK certificate is for another key than the evidence's EK")
	}
	return certs[0], nil
}

func verifyAKCert(chain []*x509.Certificate, opts VerifyOptions) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: opts.AKRoots, Intermediates: inter, CurrentTime: opts.Now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("AK certificate: %w", err)
	}
	for _, u := range chain[0].UnknownExtKeyUsage {
		if u.Equal(oidTCGKpAIKCert) {
			return nil
		}
	}
	return errors.New("AK certificate: not for an attestation key (no tcg-kp-AIKCertificate usage)")
}

// parsePEMs parses certificates; the TCG's subjectAltName (a
// directoryName, critical when the subject is empty, as on EK and AK
// certificates) is understood here, so Go's verifier is told it is handled.
func parsePEMs(pems []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, s := range pems {
		rest := []byte(s)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			c, err := attest.ParseEKCertificate(b.Bytes)
			if err != nil {
				return nil, err
			}
			handled(c)
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

func handled(c *x509.Certificate) {
	var keep []asn1.ObjectIdentifier
	for _, oid := range c.UnhandledCriticalExtensions {
		if !oid.Equal(oidSAN) {
			keep = append(keep, oid)
		}
	}
	c.UnhandledCriticalExtensions = keep
}

func akPublic(pub []byte) (crypto.PublicKey, error) {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](pub)
	if err != nil {
		return nil, fmt.Errorf("AK public area: %w", err)
	}
	a := p.ObjectAttributes
	if !a.Restricted || !a.SignEncrypt || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return nil, errors.New("the AK is not a restricted signing key made in and fixed to a TPM")
	}
	return tpmPublicKey(p)
}

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// IssueAKCertificate is an attestation CA's side of enrollment: it checks
// the EK certificate and the AK (as VerifyEvidence does without an AK
// certificate: opts.EKRoots and opts.Activate are required), and issues
// a certificate for the AK in the profile WebAuthn's "tpm" format asks of
// an AIK certificate: version 3, empty subject, the EK certificate's TCG
// subjectAltName (TPM manufacturer, model, version), extended key usage
// tcg-kp-AIKCertificate, not a CA.
func IssueAKCertificate(ev *Evidence, opts VerifyOptions, ca *x509.Certificate, caKey crypto.Signer, validity time.Duration) (*x509.Certificate, error) {
	if opts.Activate == nil {
		return nil, errors.New("an AK certificate needs credential activation")
	}
	ekCert, err := verifyActivation(ev, opts)
	if err != nil {
		return nil, err
	}
	akKey, err := akPublic(ev.AK.Public)
	if err != nil {
		return nil, err
	}
	var san []byte
	for _, e := range ekCert.Extensions {
		if e.Id.Equal(oidSAN) {
			san = e.Value
		}
	}
	if san == nil {
		return nil, errors.New("the EK certificate has no subjectAltName naming the TPM")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{oidTCGKpAIKCert},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidSAN, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, akKey, caKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// WebAuthn attestation: the statement of WebAuthn's "tpm" format (§8.3)
// in an attestation object, the form ACME device-attest-01 (attObj) and
// step-ca take.
type webAuthnObject struct {
	Fmt      string          `cbor:"fmt"`
	AttStmt  webAuthnTPMStmt `cbor:"attStmt"`
	AuthData []byte          `cbor:"authData"`
}

type webAuthnTPMStmt struct {
	Ver      string   `cbor:"ver"`
	Alg      int64    `cbor:"alg"`
	X5c      [][]byte `cbor:"x5c"`
	Sig      []byte   `cbor:"sig"`
	CertInfo []byte   `cbor:"certInfo"`
	PubArea  []byte   `cbor:"pubArea"`
}

// COSE algorithm of the AK's signatures: ES256 (ECDSA P-256, SHA-256).
const coseES256 = -7

// WebAuthn is the evidence as a CBOR attestation object {fmt: "tpm",
// attStmt: {ver: "2.0", alg: -7, x5c: [AK certificate, its chain...],
// sig, certInfo, pubArea}, authData: empty}. x5c is required by the
// format: the AK needs a certificate from an attestation CA first
// (IssueAKCertificate, SetAKCertificates). The EK certificate and the
// AK's creation data are not in this form; authData is empty (there is
// no WebAuthn relying party; the nonce is certInfo's extraData).
func (ev *Evidence) WebAuthn() ([]byte, error) {
	if len(ev.AK.Certificates) == 0 {
		return nil, errors.New("the WebAuthn form needs an AK certificate (x5c): enroll the AK with an attestation CA first")
	}
	chain, err := parsePEMs(ev.AK.Certificates)
	if err != nil {
		return nil, err
	}
	if _, ok := chain[0].PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, errors.New("the AK certificate is not for an ECDSA key")
	}
	stmt := webAuthnTPMStmt{Ver: "2.0", Alg: coseES256, Sig: ev.Key.Signature, CertInfo: ev.Key.Attestation, PubArea: ev.Key.Public}
	for _, c := range chain {
		stmt.X5c = append(stmt.X5c, c.Raw)
	}
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		return nil, err
	}
	return em.Marshal(webAuthnObject{Fmt: "tpm", AttStmt: stmt, AuthData: []byte{}})
}

// VerifyWebAuthn checks an attestation object of the "tpm" format made by
// WebAuthn: x5c's AK certificate against opts.AKRoots, then the key's
// certification by that AK, as VerifyEvidence does.
func VerifyWebAuthn(attObj []byte, opts VerifyOptions) (*Verified, error) {
	var o webAuthnObject
	if err := cbor.Unmarshal(attObj, &o); err != nil {
		return nil, fmt.Errorf("attestation object: %w", err)
	}
	if o.Fmt != "tpm" || o.AttStmt.Ver != "2.0" {
		return nil, fmt.Errorf("attestation object: format %q version %q, want tpm 2.0", o.Fmt, o.AttStmt.Ver)
	}
	if o.AttStmt.Alg != coseES256 {
		return nil, fmt.Errorf("attestation object: COSE algorithm %d not supported", o.AttStmt.Alg)
	}
	if len(o.AttStmt.X5c) == 0 || opts.AKRoots == nil {
		return nil, ErrAKNotBound
	}
	var pems []string
	for _, der := range o.AttStmt.X5c {
		pems = append(pems, pemCert(der))
	}
	chain, err := parsePEMs(pems)
	if err != nil {
		return nil, err
	}
	if err := verifyAKCert(chain, opts); err != nil {
		return nil, err
	}
	v := &Verified{AKCertificate: chain[0]}
	return v, verifyCertify(v, o.AttStmt.PubArea, o.AttStmt.CertInfo, o.AttStmt.Sig, chain[0].PublicKey, opts.Nonce)
}

// PEM wraps the JSON form for mail and paste: a "TPM11 KEY ATTESTATION"
// block.
func (ev *Evidence) PEM() ([]byte, error) {
	j, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "TPM11 KEY ATTESTATION", Bytes: j}), nil
}

// ReadEvidence reads evidence in its JSON or PEM form.
func ReadEvidence(b []byte) (*Evidence, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && strings.HasPrefix(string(t), "-----BEGIN") {
		blk, _ := pem.Decode(t)
		if blk == nil || blk.Type != "TPM11 KEY ATTESTATION" {
			return nil, errors.New("not a TPM11 KEY ATTESTATION PEM block")
		}
		b = blk.Bytes
	}
	return ParseEvidence(b)
}
