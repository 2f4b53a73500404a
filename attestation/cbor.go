package attestation

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/tpmtoken"
)

// The CBOR forms: WebAuthn's "tpm" attestation statement (§8.3) in an
// attestation object, in the two shapes the two camps of verifiers read.
// ACME device-attest-01 (step-ca) reads sig as the TPMT_SIGNATURE the TPM
// made and ignores authData; WebAuthn libraries read sig as the bare
// signature (DER for ECDSA, as Windows Hello sends it), and check
// authData's key against pubArea and extraData against
// SHA-256(authData ‖ clientDataHash).

type attObject struct {
	Fmt      string  `cbor:"fmt"`
	AttStmt  tpmStmt `cbor:"attStmt"`
	AuthData []byte  `cbor:"authData"`
}

type tpmStmt struct {
	Ver      string   `cbor:"ver"`
	Alg      int64    `cbor:"alg"`
	X5c      [][]byte `cbor:"x5c"`
	Sig      []byte   `cbor:"sig"`
	CertInfo []byte   `cbor:"certInfo"`
	PubArea  []byte   `cbor:"pubArea"`
}

// COSE algorithms of the AK's signatures.
const (
	coseES256 = -7   // ECDSA P-256, SHA-256
	coseRS256 = -257 // RSASSA-PKCS1-v1_5, SHA-256
)

// ACME is the evidence as the attObj of ACME device-attest-01: {fmt:
// "tpm", attStmt: {ver: "2.0", alg: RS256 or ES256, x5c: [AK certificate,
// its chain without a self-signed root], sig: TPMT_SIGNATURE, certInfo,
// pubArea}, authData: empty}. The nonce (certInfo's extraData) is the
// challenge: SHA-256 of the key authorization. x5c is required: the AK
// needs a certificate (enrollment) first. step-ca verifies RSA AKs only.
func ACME(ev *tpmtoken.Evidence) ([]byte, error) {
	stmt, err := statement(ev)
	if err != nil {
		return nil, err
	}
	stmt.Sig = ev.Key.Signature
	return encode(attObject{Fmt: "tpm", AttStmt: *stmt, AuthData: []byte{}})
}

// WebAuthn is the evidence as a WebAuthn attestation object: the
// statement as in ACME but with the bare signature in sig, and authData
// (WebAuthnAuthData) whose hash with the client data's is the nonce the
// key was attested with: Attest with Nonce = WebAuthnNonce(authData,
// clientDataHash).
func WebAuthn(ev *tpmtoken.Evidence, authData []byte) ([]byte, error) {
	stmt, err := statement(ev)
	if err != nil {
		return nil, err
	}
	if stmt.Sig, err = bareSignature(ev.Key.Signature); err != nil {
		return nil, err
	}
	return encode(attObject{Fmt: "tpm", AttStmt: *stmt, AuthData: authData})
}

// WebAuthnNonce is the qualifying data of the WebAuthn form: SHA-256 of
// authData ‖ clientDataHash.
func WebAuthnNonce(authData, clientDataHash []byte) []byte { return sha256Of(authData, clientDataHash) }

// WebAuthnAuthData is the authenticator data of a key: SHA-256 of rpID,
// flags UP|AT, a zero signature counter, attested credential data with a
// zero AAGUID, credID and the key as a COSE key (ES256 for P-256, RS256
// for RSA).
func WebAuthnAuthData(rpID string, credID []byte, pub crypto.PublicKey) ([]byte, error) {
	var cose map[int]any
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize != 256 {
			return nil, errors.New("WebAuthn form: an EC key must be P-256 (ES256)")
		}
		b, err := k.Bytes() // 04 ‖ X ‖ Y
		if err != nil {
			return nil, err
		}
		cose = map[int]any{1: 2, 3: coseES256, -1: 1, -2: b[1:33], -3: b[33:]}
	case *rsa.PublicKey:
		cose = map[int]any{1: 3, 3: coseRS256, -1: k.N.Bytes(), -2: big.NewInt(int64(k.E)).Bytes()}
	default:
		return nil, fmt.Errorf("WebAuthn form: key type %T", pub)
	}
	ck, err := encode(cose)
	if err != nil {
		return nil, err
	}
	if len(credID) > 1023 {
		return nil, errors.New("WebAuthn form: credential ID too long")
	}
	out := append(sha256Of([]byte(rpID)), 0x41, 0, 0, 0, 0) // UP|AT, signCount 0
	out = append(out, make([]byte, 16)...)                  // AAGUID
	out = binary.BigEndian.AppendUint16(out, uint16(len(credID)))
	out = append(out, credID...)
	return append(out, ck...), nil
}

func statement(ev *tpmtoken.Evidence) (*tpmStmt, error) {
	if len(ev.Key.Attestation) == 0 {
		return nil, errors.New("the evidence attests no key")
	}
	if len(ev.AK.Certificates) == 0 {
		return nil, errors.New("this form needs an AK certificate (x5c): enroll the AK with an attestation CA first (tpm11 enroll-ak)")
	}
	chain, err := parsePEMs(ev.AK.Certificates)
	if err != nil {
		return nil, err
	}
	ak, err := akPublic(ev.AK.Public)
	if err != nil {
		return nil, err
	}
	if !publicEqual(ak, chain[0].PublicKey) {
		return nil, errors.New("the AK certificate kept with the token is for another attestation key than the one used")
	}
	stmt := &tpmStmt{Ver: "2.0", CertInfo: ev.Key.Attestation, PubArea: ev.Key.Public}
	switch ak.(type) {
	case *rsa.PublicKey:
		stmt.Alg = coseRS256
	case *ecdsa.PublicKey:
		stmt.Alg = coseES256
	}
	for _, c := range chain {
		if len(stmt.X5c) > 0 && SelfSigned(c) {
			continue // a verifier has its roots; x5c carries none
		}
		stmt.X5c = append(stmt.X5c, c.Raw)
	}
	return stmt, nil
}

func encode(v any) ([]byte, error) {
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		return nil, err
	}
	return em.Marshal(v)
}

// bareSignature is the signature inside a TPMT_SIGNATURE: the RSASSA
// bytes, or ECDSA's (r, s) as DER.
func bareSignature(tpmtSig []byte) ([]byte, error) {
	s, err := tpm2.Unmarshal[tpm2.TPMTSignature](tpmtSig)
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	switch s.SigAlg {
	case tpm2.TPMAlgRSASSA:
		r, err := s.Signature.RSASSA()
		if err != nil {
			return nil, err
		}
		return r.Sig.Buffer, nil
	case tpm2.TPMAlgECDSA:
		e, err := s.Signature.ECDSA()
		if err != nil {
			return nil, err
		}
		return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)})
	}
	return nil, fmt.Errorf("signature algorithm %#x", s.SigAlg)
}

// tpmtSignature turns a bare signature (WebAuthn form) back into the
// TPMT_SIGNATURE the TPM made, for the one verification path.
func tpmtSignature(alg int64, sig []byte) ([]byte, error) {
	switch alg {
	case coseRS256:
		return tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA,
			&tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig}})}), nil
	case coseES256:
		var rs struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) > 0 || rs.R == nil || rs.S == nil || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
			return nil, errors.New("sig: not a DER ECDSA signature")
		}
		return tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA,
			&tpm2.TPMSSignatureECC{Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: rs.R.FillBytes(make([]byte, 32))},
				SignatureS: tpm2.TPM2BECCParameter{Buffer: rs.S.FillBytes(make([]byte, 32))}})}), nil
	}
	return nil, fmt.Errorf("COSE algorithm %d not supported", alg)
}

// VerifyCBOR checks an attestation object of the "tpm" format in either
// form: x5c's AK certificate against opts.AKRoots, then the key's
// certification by that AK, as VerifyEvidence does. With authData (the
// WebAuthn form), its key must be the certified one, and the nonce is
// SHA-256(authData ‖ opts.ClientDataHash).
func VerifyCBOR(attObj []byte, opts VerifyOptions) (*Verified, error) {
	var o attObject
	if err := cbor.Unmarshal(attObj, &o); err != nil {
		return nil, fmt.Errorf("attestation object: %w", err)
	}
	if o.Fmt != "tpm" || o.AttStmt.Ver != "2.0" {
		return nil, fmt.Errorf("attestation object: format %q version %q, want tpm 2.0", o.Fmt, o.AttStmt.Ver)
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
	want := coseES256
	if _, ok := chain[0].PublicKey.(*rsa.PublicKey); ok {
		want = coseRS256
	}
	if o.AttStmt.Alg != int64(want) {
		return nil, fmt.Errorf("attestation object: COSE algorithm %d, but the AK certificate's key signs with %d", o.AttStmt.Alg, want)
	}
	sig := o.AttStmt.Sig
	nonce := opts.Nonce
	if len(o.AuthData) > 0 {
		if sig, err = tpmtSignature(o.AttStmt.Alg, sig); err != nil {
			return nil, err
		}
		if opts.ClientDataHash != nil {
			nonce = WebAuthnNonce(o.AuthData, opts.ClientDataHash)
		}
	}
	v := &Verified{AKCertificate: chain[0], PermanentIdentifier: permanentIdentifier(chain[0])}
	if err := verifyCertify(v, o.AttStmt.PubArea, o.AttStmt.CertInfo, sig, chain[0].PublicKey, nonce); err != nil {
		return nil, err
	}
	if len(o.AuthData) > 0 {
		if err := checkAuthDataKey(o.AuthData, v.PublicKey); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// checkAuthDataKey checks that authData's credential public key is pub.
func checkAuthDataKey(authData []byte, pub crypto.PublicKey) error {
	if len(authData) < 37+16+2 || authData[32]&0x40 == 0 {
		return errors.New("authData: no attested credential data")
	}
	n := int(binary.BigEndian.Uint16(authData[53:55]))
	if len(authData) < 55+n {
		return errors.New("authData: truncated")
	}
	rest := authData[55+n:]
	want, err := WebAuthnAuthData("", authData[55:55+n], pub)
	if err != nil {
		return err
	}
	var raw cbor.RawMessage
	if err := cbor.NewDecoder(bytes.NewReader(rest)).Decode(&raw); err != nil {
		return fmt.Errorf("authData: credential public key: %w", err)
	}
	if string(raw) != string(want[55+n:]) {
		return errors.New("authData: the credential public key is not the key the AK certified")
	}
	return nil
}
