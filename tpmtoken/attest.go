package tpmtoken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"weak"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// Key attestation, the token's side: evidence that a key was made in this
// TPM and cannot leave it. The TPM's attestation key (AK) certifies the
// key (TPM2_Certify: the key's name, so its public area and attributes —
// fixedTPM, fixedParent, sensitiveDataOrigin — signed by the AK, with the
// verifier's nonce). The AK is tied to the TPM's endorsement key (EK),
// whose certificate the manufacturer wrote into NV, by credential
// activation (ActivateCredential) or by an AK certificate an attestation
// CA issued after one. docs/attestation.md describes the formats;
// package attestation is the verifier's and the attestation CA's side
// (not linked into the PKCS#11 module).

// CKA_TPM11_ATTESTATION is a vendor-defined, read-only attribute of a
// private key generated in the TPM: the key's attestation evidence (the
// JSON form of Evidence, with no nonce), made on first read.
const CKA_TPM11_ATTESTATION = ck.AttributeType(0x80000000 | 0x54504D01)

// EvidenceFormat names the JSON form of Evidence.
const EvidenceFormat = "tpm11-key-attestation/1"

// Evidence is a key's attestation: everything a verifier needs besides
// its trust anchors (the EK certificates' root; for the AK certificate,
// the attestation CA's). Byte fields are TPM structures as the TPM
// marshals them (base64 in JSON); certificates are PEM.
type Evidence struct {
	Format string `json:"format"`
	// TPM is what the TPM says it is (informative: the EK certificate is
	// what a verifier trusts).
	TPM struct {
		Manufacturer string `json:"manufacturer"`
		Vendor       string `json:"vendor,omitempty"`
		Firmware     string `json:"firmware,omitempty"`
	} `json:"tpm"`
	// Key is the attested key; empty in an AK's evidence alone
	// (AKEvidence: an enrollment request).
	Key struct {
		// Public is the key's TPMT_PUBLIC (WebAuthn's pubArea).
		Public []byte `json:"public,omitempty"`
		// Attestation is the TPMS_ATTEST of TPM2_Certify (certInfo), and
		// Signature the AK's TPMT_SIGNATURE over it (sig).
		Attestation []byte `json:"attestation,omitempty"`
		Signature   []byte `json:"signature,omitempty"`
		// Nonce is the qualifying data (the TPMS_ATTEST's extraData).
		Nonce []byte `json:"nonce,omitempty"`
		// PublicKey is the key as PEM, for people.
		PublicKey string `json:"public_key,omitempty"`
	} `json:"key"`
	AK struct {
		// The AK's TPMT_PUBLIC, TPMS_CREATION_DATA, and its
		// TPM2_CertifyCreation of itself (TPMS_ATTEST, TPMT_SIGNATURE):
		// go-attestation's AttestationParameters.
		Public            []byte `json:"public"`
		CreateData        []byte `json:"create_data"`
		CreateAttestation []byte `json:"create_attestation"`
		CreateSignature   []byte `json:"create_signature"`
		// Certificates is the AK certificate and its chain, once an
		// attestation CA issued one (SetAKCertificates).
		Certificates []string `json:"certificates,omitempty"`
	} `json:"ak"`
	EK struct {
		// Public is the EK's TPMT_PUBLIC (RSA-2048 template L-1, ECC P-256
		// L-2, or the high range's ECC P-384).
		Public []byte `json:"public"`
		// Certificates is the EK certificate from NV, then any chain
		// the caller added (AttestOptions.EKChain).
		Certificates []string `json:"certificates"`
	} `json:"ek"`
}

// JSON is the evidence in its JSON form, indented for people.
func (ev *Evidence) JSON() ([]byte, error) { return json.MarshalIndent(ev, "", "  ") }

// ParseEvidence reads the JSON form.
func ParseEvidence(b []byte) (*Evidence, error) {
	var ev Evidence
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, fmt.Errorf("attestation evidence: %w", err)
	}
	if ev.Format != EvidenceFormat {
		return nil, fmt.Errorf("attestation evidence: format %q, want %q", ev.Format, EvidenceFormat)
	}
	return &ev, nil
}

// AttestOptions are the inputs of Attest.
type AttestOptions struct {
	// Nonce is the verifier's challenge, signed as the TPMS_ATTEST's
	// extraData (for ACME device-attest-01: SHA-256 of the key
	// authorization). At most 64 bytes (the TPM's TPM2B_DATA).
	Nonce []byte
	// EKChain is appended to the EK certificate (intermediates, which
	// the TPM does not hold).
	EKChain []*x509.Certificate
	// AKType is the attestation key's type, tpm.AKRSA or tpm.AKECC. Empty:
	// the type of the enrolled AK (SetAKCertificates), else RSA where the
	// TPM has RSA-2048. Another type than the enrolled AK's gets evidence
	// without the AK certificate.
	AKType string
}

// ActivationChallenge is a credential activation challenge: a secret
// encrypted to the EK for the AK's name (TPM2B_ID_OBJECT and
// TPM2B_ENCRYPTED_SECRET, size prefixes included), and the type of the
// AK it names (tpm.AKRSA or tpm.AKECC; empty: ECC).
type ActivationChallenge struct {
	Credential []byte `json:"credential"`
	Secret     []byte `json:"secret"`
	AKType     string `json:"ak_type,omitempty"`
}

// akType is the AK type to use when asked for want (empty: the enrolled
// one, else RSA where the TPM has RSA-2048, else ECC).
func (l *Library) akType(s *Session, want string) (string, error) {
	switch want {
	case tpm.AKRSA, tpm.AKECC:
		return want, nil
	case "":
	default:
		return "", ck.Errorf(ck.CKR_ARGUMENTS_BAD, "AK type %q: rsa or ecc", want)
	}
	if rec := s.tok.record(); len(rec.AKCertificates) > 0 {
		if rec.AKType == "" {
			return tpm.AKECC, nil
		}
		return rec.AKType, nil
	}
	if slices.Contains(l.caps().RSABits, 2048) {
		return tpm.AKRSA, nil
	}
	return tpm.AKECC, nil
}

// enrolled is the token's AK certificate chain if it certifies an AK of
// type typ.
func enrolled(rec *store.Token, typ string) []string {
	have := rec.AKType
	if have == "" {
		have = tpm.AKECC
	}
	if have != typ {
		return nil
	}
	return rec.AKCertificates
}

// Attest makes attestation evidence for private key obj (session h; a
// private key needs the user logged in). Only a key made in the TPM and
// fixed to it gets evidence (ErrNotMadeInTPM otherwise): TPM2_Certify
// would sign an imported key's name as well, and a verifier that does not
// read the attributes in its public area (WebAuthn libraries do not)
// would take it for a TPM key.
func (l *Library) Attest(h, obj uint64, opts AttestOptions) (*Evidence, error) {
	s, o, err := l.sessionObject(h, obj)
	if err != nil {
		return nil, err
	}
	if o.class() != ck.CKO_PRIVATE_KEY || o.key == nil {
		return nil, ck.Errorf(ck.CKR_KEY_TYPE_INCONSISTENT, "only a private key in the TPM can be attested")
	}
	if len(opts.Nonce) > 64 {
		return nil, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "the nonce is at most 64 bytes")
	}
	if err := s.tok.usable(o); err != nil {
		return nil, err
	}
	key := o.key
	if err := madeInTPM(key); err != nil {
		return nil, err
	}
	typ, err := l.akType(s, opts.AKType)
	if err != nil {
		return nil, err
	}
	ev, err := do(l, s.Handle, func(e *tpm.Engine) (*Evidence, error) { return attestKey(e, key, opts.Nonce, typ) })
	if err != nil {
		return nil, keyAuthError(err)
	}
	for _, c := range opts.EKChain {
		ev.EK.Certificates = append(ev.EK.Certificates, pemCert(c.Raw))
	}
	ev.AK.Certificates = enrolled(s.tok.record(), typ)
	info := l.tpmInfo()
	ev.TPM.Manufacturer, ev.TPM.Vendor = info.Manufacturer, info.VendorString
	ev.TPM.Firmware = fmt.Sprintf("%d.%d", info.FirmwareMajor, info.FirmwareMinor)
	return ev, nil
}

// ErrNotMadeInTPM is Attest's error for a key that was not generated in
// the TPM or can leave it (imported from software, a linked key file of
// such a key): there is nothing to prove about it.
var ErrNotMadeInTPM = ck.Errorf(ck.CKR_KEY_FUNCTION_NOT_PERMITTED,
	"the key was not generated in the TPM or can leave it (not fixedTPM, fixedParent and sensitiveDataOrigin): no attestation for it")

// ErrNoEKCertificate: the TPM holds no EK certificate (RSA-2048 at NV
// 0x01c00002, ECC P-256 at 0x01c0000a, ECC P-384 at 0x01c00016), so no
// manufacturer vouches for it and its evidence could not be checked.
var ErrNoEKCertificate = ck.Errorf(ck.CKR_FUNCTION_NOT_SUPPORTED,
	"this TPM holds no EK certificate (NV 0x01c00002, 0x01c0000a or 0x01c00016): no manufacturer vouches for it, so it has no attestation to give")

// madeInTPM is the one check of whether a key may get evidence: its
// public area says fixedTPM, fixedParent and sensitiveDataOrigin.
func madeInTPM(key *tpm.Loadable) error {
	pub, err := key.Public.Contents()
	if err != nil {
		return ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	if a := pub.ObjectAttributes; !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return ErrNotMadeInTPM
	}
	return nil
}

// AKEvidence is the evidence of the TPM's attestation key of type akType
// alone (no key part; akType as AttestOptions.AKType): what an
// attestation CA needs to enroll the AK (attestation.IssueAKCertificate).
// Any session of the token; no login needed.
func (l *Library) AKEvidence(h uint64, akType string, ekChain []*x509.Certificate) (*Evidence, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, err
	}
	typ, err := l.akType(s, akType)
	if err != nil {
		return nil, err
	}
	ev, err := do(l, s.Handle, func(e *tpm.Engine) (*Evidence, error) { return attestKey(e, nil, nil, typ) })
	if err != nil {
		return nil, err
	}
	for _, c := range ekChain {
		ev.EK.Certificates = append(ev.EK.Certificates, pemCert(c.Raw))
	}
	info := l.tpmInfo()
	ev.TPM.Manufacturer, ev.TPM.Vendor = info.Manufacturer, info.VendorString
	ev.TPM.Firmware = fmt.Sprintf("%d.%d", info.FirmwareMajor, info.FirmwareMinor)
	return ev, nil
}

// attestKey runs on the TPM worker: EK certificate and public area, the AK's
// creation certificate, and TPM2_Certify of key (if not nil).
func attestKey(e *tpm.Engine, key *tpm.Loadable, nonce []byte, akType string) (*Evidence, error) {
	ek, ekCert, err := e.EndorsementKey()
	if errors.Is(err, tpm.ErrNoNV) {
		return nil, ErrNoEKCertificate
	}
	if err != nil {
		return nil, err
	}
	ekCert = stripNVHeader(ekCert)
	ekPub, err := e.Public(ek)
	if err != nil {
		return nil, fmt.Errorf("endorsement key: %w", err)
	}
	ak := tpm.AK(akType)
	cr, err := e.CertifyAKCreation(ak)
	if err != nil {
		return nil, err
	}
	ev := &Evidence{Format: EvidenceFormat}
	if key != nil {
		att, sig, err := e.Certify(key, ak, nonce)
		if err != nil {
			return nil, err
		}
		pub, err := key.Public.Contents()
		if err != nil {
			return nil, err
		}
		ev.Key.Public, ev.Key.Attestation, ev.Key.Signature, ev.Key.Nonce = tpm2.Marshal(pub), att, sig, nonce
		if pk, err := tpm.PublicKey(pub); err == nil {
			if der, err := x509.MarshalPKIXPublicKey(pk); err == nil {
				ev.Key.PublicKey = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
			}
		}
	}
	ev.AK.Public, ev.AK.CreateData, ev.AK.CreateAttestation, ev.AK.CreateSignature =
		cr.Public, cr.CreateData, cr.CreateAttestation, cr.CreateSignature
	ev.EK.Public = tpm2.Marshal(ekPub)
	ev.EK.Certificates = []string{pemCert(ekCert)}
	return ev, nil
}

// stripNVHeader removes the TCG PC Client header (0x10 0x01 0x00, then a
// 16-bit length) some TPMs put before the certificate in NV.
func stripNVHeader(b []byte) []byte {
	if len(b) > 5 && b[0] == 0x10 && b[1] == 0x01 && b[2] == 0x00 {
		n := int(b[3])<<8 | int(b[4])
		if 5+n <= len(b) {
			return b[5 : 5+n]
		}
	}
	// A certificate padded to the NV index's size: cut after its DER.
	if len(b) > 4 && b[0] == 0x30 && b[1] == 0x82 {
		n := int(b[2])<<8 | int(b[3]) + 4
		if n <= len(b) {
			return b[:n]
		}
	}
	return b
}

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// ActivateCredential answers a verifier's credential activation challenge
// (ActivationChallenge, made by NewActivationChallenge from this TPM's
// evidence): the TPM decrypts the secret only if it holds both the EK the
// challenge was encrypted to and the AK it names. Any session of the
// token will do; no login is needed (neither key is the user's).
func (l *Library) ActivateCredential(h uint64, ch *ActivationChallenge) ([]byte, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, err
	}
	if ch == nil || len(ch.Credential) < 2 || len(ch.Secret) < 2 {
		return nil, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "empty activation challenge")
	}
	if len(ch.Credential) > 1024 || len(ch.Secret) > 1024 {
		return nil, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "not an activation challenge: too long")
	}
	return do(l, s.Handle, func(e *tpm.Engine) ([]byte, error) {
		typ := ch.AKType
		if typ == "" {
			typ = tpm.AKECC
		}
		ek, _, err := e.EndorsementKey()
		if errors.Is(err, tpm.ErrNoNV) {
			return nil, ErrNoEKCertificate
		}
		if err != nil {
			return nil, err
		}
		secret, err := e.ActivateCredential(tpm.AK(typ), ek, ch.Credential[2:], ch.Secret[2:])
		if errors.Is(err, tpm.ErrNotOurCredential) {
			return nil, ck.Wrap(ck.CKR_ENCRYPTED_DATA_INVALID, err)
		}
		return secret, err
	})
}

// SetAKCertificates keeps, with the token (session h, the SO or user
// logged in), the certificate an attestation CA issued for the TPM's AK
// and its chain (AK certificate first; self-signed roots are left out:
// a verifier has its own, and x5c must not carry one): Attest includes
// them, and they make the x5c of the CBOR forms. The AK's type is the
// certificate's key's.
func (l *Library) SetAKCertificates(h uint64, chain []*x509.Certificate) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	if _, ok := s.tok.loginState(); !ok {
		return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	if !s.rw() {
		return ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	if len(chain) == 0 {
		return ck.Errorf(ck.CKR_ARGUMENTS_BAD, "no AK certificate")
	}
	rec := *s.tok.record()
	rec.AKCertificates = nil
	switch chain[0].PublicKey.(type) {
	case *rsa.PublicKey:
		rec.AKType = tpm.AKRSA
	case *ecdsa.PublicKey:
		rec.AKType = tpm.AKECC
	default:
		return ck.Errorf(ck.CKR_ARGUMENTS_BAD, "the AK certificate is for neither an RSA nor an ECDSA key")
	}
	for i, c := range chain {
		if i > 0 && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			continue
		}
		rec.AKCertificates = append(rec.AKCertificates, pemCert(c.Raw))
	}
	return s.tok.putRecord(&rec)
}

// evidenceCache keeps each object's CKA_TPM11_ATTESTATION, made once per
// object and process, so the length an application asks for first is the
// length it then gets; an entry goes with its object.
var evidenceCache sync.Map // weak.Pointer[Object] → []byte

// attestationAttr fills CKA_TPM11_ATTESTATION for a private key generated
// in the TPM.
func (t *Token) attestationAttr(h uint64, o *Object, types []ck.AttributeType, res []AttrResult) error {
	for i, typ := range types {
		if typ != CKA_TPM11_ATTESTATION || o.class() != ck.CKO_PRIVATE_KEY || o.key == nil {
			continue
		}
		if madeInTPM(o.key) != nil {
			continue // an imported key: nothing to prove
		}
		wp := weak.Make(o)
		v, ok := evidenceCache.Load(wp)
		if !ok {
			ev, err := t.lib.Attest(h, o.Handle, AttestOptions{})
			if ck.ToRV(err) == ck.CKR_FUNCTION_NOT_SUPPORTED {
				continue // a TPM without an EK certificate: nothing to show
			}
			if err != nil {
				return err
			}
			b, err := ev.JSON()
			if err != nil {
				return ck.Wrap(ck.CKR_GENERAL_ERROR, err)
			}
			var loaded bool
			if v, loaded = evidenceCache.LoadOrStore(wp, b); !loaded {
				runtime.AddCleanup(o, func(wp weak.Pointer[Object]) { evidenceCache.Delete(wp) }, wp)
			}
		}
		res[i] = AttrResult{Value: v.([]byte)}
	}
	return nil
}
