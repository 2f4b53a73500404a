package attestation

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

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
	// Nonce, if not nil, must be the attestation's qualifying data. For
	// the WebAuthn form, give ClientDataHash instead: the qualifying data
	// is then SHA-256(authData ‖ ClientDataHash).
	Nonce, ClientDataHash []byte
	// Activate, if set, answers a credential activation challenge (the
	// TPM's side: Library.ActivateCredential, directly or over a network).
	// Evidence whose AK has no trusted certificate is then checked by
	// activation against its EK certificate.
	Activate func(*tpmtoken.ActivationChallenge) ([]byte, error)
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
	// PermanentIdentifier is the device identity the AK certificate names
	// (RFC 4043; PermanentIdentifier of the EK), or, by activation, the
	// one derived from the EK certificate.
	PermanentIdentifier string
}

// ErrAKNotBound says the evidence's AK is tied neither to a trusted AK
// certificate nor, by activation, to a trusted EK certificate.
var ErrAKNotBound = errors.New("the attestation key is not bound to a trusted TPM: give an attestation CA root (AK certificate) or activate a credential against the EK certificate")

// VerifyEvidence checks evidence: the key is a TPM key that cannot leave
// the TPM (go-attestation's CertificationParameters.Verify), the AK signed
// that with the expected nonce, and the AK is trusted — by an AK
// certificate chaining to opts.AKRoots, else by credential activation
// (opts.Activate) against the EK certificate chaining to opts.EKRoots.
// Every field the verdict reports is checked: the evidence's public_key
// (the PEM for people) must be the certified key.
func VerifyEvidence(ev *tpmtoken.Evidence, opts VerifyOptions) (*Verified, error) {
	if ev == nil || ev.Format != tpmtoken.EvidenceFormat {
		return nil, errors.New("not tpm11 attestation evidence")
	}
	if len(ev.Key.Attestation) == 0 {
		return nil, errors.New("the evidence attests no key (an attestation key's enrollment request?)")
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
		v.PermanentIdentifier = permanentIdentifier(chain[0])
	} else {
		if opts.Activate == nil {
			return nil, ErrAKNotBound
		}
		ekCert, err := verifyActivation(ev, opts)
		if err != nil {
			return nil, err
		}
		v.EKCertificate = ekCert
		if v.PermanentIdentifier, err = EKIdentifier(ekCert.PublicKey); err != nil {
			return nil, err
		}
		if akKey, err = akPublic(ev.AK.Public); err != nil {
			return nil, err
		}
	}
	if err := verifyCertify(v, ev.Key.Public, ev.Key.Attestation, ev.Key.Signature, akKey, opts.Nonce); err != nil {
		return nil, err
	}
	if ev.Key.Nonce != nil && !bytes.Equal(ev.Key.Nonce, v.Nonce) {
		return nil, errors.New("the evidence's nonce is not the one the AK signed")
	}
	if ev.Key.PublicKey != "" {
		b, _ := pem.Decode([]byte(ev.Key.PublicKey))
		if b == nil {
			return nil, errors.New("the evidence's public_key is not PEM")
		}
		pk, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil || !publicEqual(pk, v.PublicKey) {
			return nil, errors.New("the evidence's public_key is not the key the AK certified")
		}
	}
	return v, nil
}

// verifyCertify checks TPM2_Certify of key public pub by AK akKey: the
// signature, the key's name, and that the key was made in and is fixed
// to the TPM (go-attestation); then the nonce.
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
	if v.PublicKey, err = tpm.PublicKey(p); err != nil {
		return err
	}
	v.Nonce = a.ExtraData.Buffer
	return nil
}

// NewActivationChallenge checks the evidence's EK certificate (against
// opts.EKRoots) and AK (a restricted key made in the TPM, certified by
// its own creation: go-attestation's CheckAKParameters), and encrypts a
// fresh secret to the EK for the AK's name (TPM2_MakeCredential in
// software, go-tpm's CreateCredential: RSA and ECC EKs, each with its own
// name algorithm and symmetric key). Only the TPM holding both keys
// recovers the secret.
func NewActivationChallenge(ev *tpmtoken.Evidence, opts VerifyOptions) (ch *tpmtoken.ActivationChallenge, secret []byte, ekCert *x509.Certificate, err error) {
	if ekCert, err = VerifyEKCertificate(ev, opts); err != nil {
		return nil, nil, nil, err
	}
	ap := attest.ActivationParameters{
		EK: ekCert.PublicKey,
		AK: attest.AttestationParameters{Public: ev.AK.Public, CreateData: ev.AK.CreateData,
			CreateAttestation: ev.AK.CreateAttestation, CreateSignature: ev.AK.CreateSignature},
	}
	if err := ap.CheckAKParameters(); err != nil {
		return nil, nil, nil, fmt.Errorf("attestation key: %w", err)
	}
	akPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AK.Public)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("AK public area: %w", err)
	}
	name, err := tpm2.ObjectName(akPub)
	if err != nil {
		return nil, nil, nil, err
	}
	ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.EK.Public)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("EK public area: %w", err)
	}
	kem, err := tpm2.ImportEncapsulationKey(ekPub)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("EK: %w", err)
	}
	secret = make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, nil, err
	}
	cred, enc, err := tpm2.CreateCredential(rand.Reader, kem, name.Buffer, secret)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("make credential: %w", err)
	}
	ch = &tpmtoken.ActivationChallenge{
		Credential: tpm2.Marshal(tpm2.TPM2BIDObject{Buffer: cred}),
		Secret:     tpm2.Marshal(tpm2.TPM2BEncryptedSecret{Buffer: enc}),
		AKType:     tpm.AKECC,
	}
	if akPub.Type == tpm2.TPMAlgRSA {
		ch.AKType = tpm.AKRSA
	}
	return ch, secret, ekCert, nil
}

// verifyActivation makes a challenge and has the TPM answer it
// (opts.Activate).
func verifyActivation(ev *tpmtoken.Evidence, opts VerifyOptions) (*x509.Certificate, error) {
	ch, secret, ekCert, err := NewActivationChallenge(ev, opts)
	if err != nil {
		return nil, err
	}
	got, err := opts.Activate(ch)
	if err != nil {
		return nil, fmt.Errorf("credential activation failed: the TPM does not hold both this evidence's AK and EK "+
			"(forged evidence, or another TPM's): %w", err)
	}
	if subtle.ConstantTimeCompare(got, secret) != 1 {
		return nil, errors.New("credential activation: wrong secret (the AK is not in the TPM of this EK)")
	}
	return ekCert, nil
}

// VerifyEKCertificate checks the evidence's EK certificate against
// opts.EKRoots and that it certifies the evidence's EK.
func VerifyEKCertificate(ev *tpmtoken.Evidence, opts VerifyOptions) (*x509.Certificate, error) {
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
	ek, err := tpm.PublicKey(p)
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
			c, err := parseCert(b.Bytes)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

func parseCert(der []byte) (*x509.Certificate, error) {
	c, err := attest.ParseEKCertificate(der)
	if err != nil {
		return nil, err
	}
	var keep []asn1.ObjectIdentifier
	for _, oid := range c.UnhandledCriticalExtensions {
		if !oid.Equal(oidSAN) {
			keep = append(keep, oid)
		}
	}
	c.UnhandledCriticalExtensions = keep
	return c, nil
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
	return tpm.PublicKey(p)
}

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// sha256Of is SHA-256 of the concatenation of parts.
func sha256Of(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// AKPublicKey is the evidence's attestation key, checked to be a
// restricted signing key made in and fixed to a TPM.
func AKPublicKey(ev *tpmtoken.Evidence) (crypto.PublicKey, error) { return akPublic(ev.AK.Public) }

// PublicEqual reports whether a and b are the same public key.
func PublicEqual(a, b crypto.PublicKey) bool { return publicEqual(a, b) }

// PermanentIdentifier is the PermanentIdentifier (RFC 4043) value of c's
// subjectAltName, or "".
func PermanentIdentifier(c *x509.Certificate) string { return permanentIdentifier(c) }
