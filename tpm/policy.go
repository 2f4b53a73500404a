package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Keys bound to platform state. A key made with a policy has authPolicy
// set and userWithAuth clear: the TPM lets it sign (or decrypt) only in a
// policy session whose digest equals authPolicy, and its authValue alone
// no longer does. Two policies:
//
//   - PCRs: TPM2_PolicyPCR over chosen PCRs of the SHA-256 bank with the
//     digest of the values they held when the key was made. Extending any
//     of them ends the key's use until the PCRs are back (a reboot into the
//     same state).
//   - Authorized: TPM2_PolicyAuthorize by an authority key. The key is
//     usable under any PCR values the authority signed an approval for,
//     so an update (new firmware, new kernel) moves the policy by a new
//     signed approval, not a new key.

// ErrPolicy is wrapped by every error that says a key's policy was not
// met: the PCRs hold other values, or no approval matches them.
var ErrPolicy = errors.New("the key's policy is not satisfied")

// ErrPolicyUnsupported is wrapped by the refusal of an operation that
// authorizes its key by authValue alone (the symmetric and PQC commands)
// when the key has a policy: the token never makes such keys (it binds
// only RSA and EC key pairs to PCRs), so this is a caller's mistake,
// refused before any TPM command.
var ErrPolicyUnsupported = errors.New("the operation does not take a key with a policy")

// refusePolicy is op's refusal of key if it has a policy.
func refusePolicy(key *Loadable, op string) error {
	if key.Policy != nil {
		return fmt.Errorf("%s: %w", op, ErrPolicyUnsupported)
	}
	return nil
}

// Policy says how a key's authPolicy is satisfied. Its fields are plain
// data so the token can keep them with the key.
type Policy struct {
	// PCRs (SHA-256 bank) the policy reads.
	PCRs []int
	// Digest is SHA-256 of those PCRs' values, concatenated in index
	// order, that the key is bound to (PCR policy only), and Values those
	// values in index order (for people: the TPM compares Digest; empty
	// for keys made before they were kept).
	Digest []byte
	Values [][]byte
	// Authority, for an authorized policy, is the TPMT_PUBLIC of the key
	// whose signatures approve PCR values, and Ref its policyRef.
	Authority []byte
	Ref       []byte
	// Approvals are the authority's signed approvals (authorized policy
	// only); the one matching the PCRs' current values is used.
	Approvals []Approval
}

// Approval is an authority's signature (a TPMT_SIGNATURE) over
// SHA-256(PolicyPCR digest for PCRs = Digest ‖ Ref). PCRs and Values say
// what it approves, for people and for CheckApproval: the PCRs and their
// values in index order, whose SHA-256 is Digest (absent in approvals
// made before they were recorded).
type Approval struct {
	Digest    []byte
	Signature []byte
	PCRs      []int    `json:",omitempty"`
	Values    [][]byte `json:",omitempty"`
}

// CheckApproval checks, in software, an approval before it is kept with
// a key of authorized policy p: it is for p's PCRs, its values (if named)
// make its digest, and the authority's key signed it. The TPM checks the
// signature again at each use; this catches an approval signed by another
// key when it is added, not at the first signature.
func (p *Policy) CheckApproval(a Approval) error {
	if p.Authority == nil {
		return errors.New("the key has no authorized policy")
	}
	if a.PCRs != nil && PCRList(sortedPCRs(a.PCRs)) != PCRList(sortedPCRs(p.PCRs)) {
		return fmt.Errorf("the approval is for PCR %s, the key is bound to PCR %s", PCRList(a.PCRs), PCRList(p.PCRs))
	}
	if a.Values != nil {
		if len(a.Values) != len(p.PCRs) {
			return fmt.Errorf("the approval names %d values for %d PCRs", len(a.Values), len(p.PCRs))
		}
		h := sha256.New()
		for _, v := range a.Values {
			h.Write(v)
		}
		if !bytes.Equal(h.Sum(nil), a.Digest) {
			return errors.New("the approval's values do not make its digest")
		}
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](p.Authority)
	if err != nil {
		return err
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](a.Signature)
	if err != nil {
		return fmt.Errorf("the approval's signature: %w", err)
	}
	digest, err := ApprovalDigest(p.PCRs, a.Digest, p.Ref)
	if err != nil {
		return err
	}
	bad := errors.New("the approval is not signed by the key's policy authority")
	key, err := PublicKey(pub)
	if err != nil {
		return bad
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		rs, err := sig.Signature.RSASSA()
		if err != nil || sig.SigAlg != tpm2.TPMAlgRSASSA || rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, rs.Sig.Buffer) != nil {
			return bad
		}
	case *ecdsa.PublicKey:
		es, err := sig.Signature.ECDSA()
		if err != nil || sig.SigAlg != tpm2.TPMAlgECDSA ||
			!ecdsa.Verify(k, digest, new(big.Int).SetBytes(es.SignatureR.Buffer), new(big.Int).SetBytes(es.SignatureS.Buffer)) {
			return bad
		}
	default:
		return bad
	}
	return nil
}

func sortedPCRs(pcrs []int) []int {
	s := append([]int(nil), pcrs...)
	slices.Sort(s)
	return s
}

// String describes p for log lines and the key's attributes: the PCRs
// (the values expected and found are in ErrPolicy's message).
func (p *Policy) String() string {
	s := "PCR " + PCRList(p.PCRs) + " (sha256)"
	if p.Authority != nil {
		return s + " as approved by an authority key"
	}
	return s
}

// pcrValues prints values of pcrs (index order) as "16=ab12…ef90, 23=…".
func pcrValues(pcrs []int, values [][]byte) string {
	s := sortedPCRs(pcrs)
	out := make([]string, 0, len(values))
	for i, v := range values {
		if i < len(s) {
			out = append(out, fmt.Sprintf("%d=%x", s[i], v))
		}
	}
	return strings.Join(out, ", ")
}

// PCRList prints pcrs as "0,7,16".
func PCRList(pcrs []int) string {
	s := make([]string, len(pcrs))
	for i, p := range pcrs {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// PCRSelection selects pcrs in the SHA-256 bank.
func PCRSelection(pcrs []int) tpm2.TPMLPCRSelection {
	bitmap := make([]byte, 3)
	for _, p := range pcrs {
		for len(bitmap) <= p/8 {
			bitmap = append(bitmap, 0)
		}
		bitmap[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: bitmap}}}
}

// PCRPolicyDigest is the policy digest of TPM2_PolicyPCR over pcrs with
// their values' digest.
func PCRPolicyDigest(pcrs []int, digest []byte) ([]byte, error) {
	pc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: digest}, Pcrs: PCRSelection(pcrs)}).Update(pc); err != nil {
		return nil, err
	}
	return pc.Hash().Digest, nil
}

// AuthorizedPolicyDigest is the policy digest of TPM2_PolicyAuthorize by
// the key with public area authority (a TPMT_PUBLIC) and ref.
func AuthorizedPolicyDigest(authority, ref []byte) ([]byte, error) {
	name, err := publicName(authority)
	if err != nil {
		return nil, err
	}
	pc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyAuthorize{PolicyRef: tpm2.TPM2BDigest{Buffer: ref}, KeySign: name}).Update(pc); err != nil {
		return nil, err
	}
	return pc.Hash().Digest, nil
}

// ApprovalDigest is what an authority signs (SHA-256) to approve PCR
// values with digest for ref: aHash = SHA-256(approvedPolicy ‖ policyRef).
func ApprovalDigest(pcrs []int, digest, ref []byte) ([]byte, error) {
	approved, err := PCRPolicyDigest(pcrs, digest)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(append(approved, ref...))
	return h[:], nil
}

func publicName(pub []byte) (tpm2.TPM2BName, error) {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](pub)
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("authority public area: %w", err)
	}
	n, err := tpm2.ObjectName(p)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	return *n, nil
}

// AuthPolicy is the authPolicy of a key made with p.
func (p *Policy) AuthPolicy() ([]byte, error) {
	if p.Authority != nil {
		return AuthorizedPolicyDigest(p.Authority, p.Ref)
	}
	return PCRPolicyDigest(p.PCRs, p.Digest)
}

// Bind makes template a key usable only under policy p: its authPolicy
// is p's and its authValue no longer authorizes use (userWithAuth clear).
// The admin role (TPM2_Certify, ObjectChangeAuth) still takes the
// authValue: adminWithPolicy stays clear.
func Bind(template tpm2.TPMTPublic, p *Policy) (tpm2.TPMTPublic, error) {
	d, err := p.AuthPolicy()
	if err != nil {
		return tpm2.TPMTPublic{}, err
	}
	template.AuthPolicy = tpm2.TPM2BDigest{Buffer: d}
	template.ObjectAttributes.UserWithAuth = false
	return template, nil
}

// ReadPCRs returns the SHA-256 bank's values of pcrs, in order, and
// SHA-256 of their concatenation (what TPM2_PolicyPCR compares).
func (e *Engine) ReadPCRs(pcrs []int) ([][]byte, []byte, error) {
	want := slices.Clone(pcrs)
	slices.Sort(want)
	want = slices.Compact(want)
	var vals [][]byte
	for len(vals) < len(want) {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: PCRSelection(want[len(vals):])}.Execute(e.tr())
		if err != nil {
			return nil, nil, fmt.Errorf("read PCRs: %w", err)
		}
		if len(rsp.PCRValues.Digests) == 0 {
			return nil, nil, fmt.Errorf("the TPM has no SHA-256 value for PCR %s", PCRList(want[len(vals):]))
		}
		for _, d := range rsp.PCRValues.Digests {
			vals = append(vals, d.Buffer)
		}
	}
	h := sha256.New()
	for _, v := range vals {
		h.Write(v)
	}
	return vals, h.Sum(nil), nil
}

// ExtendPCR extends PCR pcr's SHA-256 bank with SHA-256(data)
// (TPM2_PCR_Extend with the platform's empty authValue: PCRs 16 and 23
// are the debug and application PCRs anyone may extend).
func (e *Engine) ExtendPCR(pcr int, data []byte) error {
	d := sha256.Sum256(data)
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256, Digest: d[:]}}},
	}.Execute(e.tr())
	return err
}

// keyAuth authorizes the use of key (the USER role: sign, decrypt):
// its authValue, or a policy session that meets key.Policy.
func (e *Engine) keyAuth(h tpm2.NamedHandle, key *Loadable, keep map[string]bool) tpm2.AuthHandle {
	if key.Policy == nil {
		return auth(h, key.Auth)
	}
	p := key.Policy
	return tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16,
		func(t transport.TPM, s tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
			err := e.satisfy(t, s, p, keep)
			if err != nil {
				// go-tpm v0.9.8 leaves a session whose policy callback
				// failed in the TPM: flush it here.
				_, _ = tpm2.FlushContext{FlushHandle: s}.Execute(t)
			}
			return err
		})}
}

// satisfy runs the policy commands of p in session s.
func (e *Engine) satisfy(t transport.TPM, s tpm2.TPMISHPolicy, p *Policy, keep map[string]bool) error {
	if p.Authority == nil {
		_, err := tpm2.PolicyPCR{PolicySession: s, PcrDigest: tpm2.TPM2BDigest{Buffer: p.Digest}, Pcrs: PCRSelection(p.PCRs)}.Execute(t)
		if errors.Is(err, tpm2.TPMRCValue) {
			want := "the values of digest " + fmt.Sprintf("%x", p.Digest)
			if len(p.Values) > 0 {
				want = pcrValues(p.PCRs, p.Values)
			}
			if values, _, rerr := e.ReadPCRs(p.PCRs); rerr == nil {
				return fmt.Errorf("%w: PCR %s hold %s; the key was bound to %s", ErrPolicy, PCRList(p.PCRs), pcrValues(p.PCRs, values), want)
			}
			return fmt.Errorf("%w: PCR %s no longer hold the values the key was bound to (%s)", ErrPolicy, PCRList(p.PCRs), want)
		}
		return err
	}
	// Authorized: the current PCR values must be among the approved.
	_, now, err := e.ReadPCRs(p.PCRs)
	if err != nil {
		return err
	}
	var ap *Approval
	for i := range p.Approvals {
		if bytes.Equal(p.Approvals[i].Digest, now) {
			ap = &p.Approvals[i]
		}
	}
	if ap == nil {
		return fmt.Errorf("%w: no approval by the key's authority for the current values of PCR %s", ErrPolicy, PCRList(p.PCRs))
	}
	ticket, err := e.verifyApproval(p, ap, keep)
	if err != nil {
		return err
	}
	if _, err := (tpm2.PolicyPCR{PolicySession: s, PcrDigest: tpm2.TPM2BDigest{Buffer: ap.Digest}, Pcrs: PCRSelection(p.PCRs)}).Execute(t); err != nil {
		if errors.Is(err, tpm2.TPMRCValue) {
			return fmt.Errorf("%w: PCR %s changed", ErrPolicy, PCRList(p.PCRs))
		}
		return err
	}
	approved, err := PCRPolicyDigest(p.PCRs, ap.Digest)
	if err != nil {
		return err
	}
	name, err := publicName(p.Authority)
	if err != nil {
		return err
	}
	_, err = tpm2.PolicyAuthorize{
		PolicySession:  s,
		ApprovedPolicy: tpm2.TPM2BDigest{Buffer: approved},
		PolicyRef:      tpm2.TPM2BDigest{Buffer: p.Ref},
		KeySign:        name,
		CheckTicket:    *ticket,
	}.Execute(t)
	return err
}

// verifyApproval has the TPM check the authority's signature of ap
// (TPM2_LoadExternal of the authority's public key, TPM2_VerifySignature)
// and returns the ticket TPM2_PolicyAuthorize asks for.
func (e *Engine) verifyApproval(p *Policy, ap *Approval, keep map[string]bool) (*tpm2.TPMTTKVerified, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](p.Authority)
	if err != nil {
		return nil, err
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](ap.Signature)
	if err != nil {
		return nil, fmt.Errorf("%w: approval signature: %v", ErrPolicy, err)
	}
	digest, err := ApprovalDigest(p.PCRs, ap.Digest, p.Ref)
	if err != nil {
		return nil, err
	}
	var h tpm2.TPMHandle
	err = e.withRoom(keep, func() error {
		rsp, err := tpm2.LoadExternal{InPublic: tpm2.New2B(*pub), Hierarchy: tpm2.TPMRHOwner}.Execute(e.tr())
		if err != nil {
			return err
		}
		h = rsp.ObjectHandle
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load the policy authority's key: %w", err)
	}
	defer func() { _, _ = tpm2.FlushContext{FlushHandle: h}.Execute(e.tr()) }()
	rsp, err := tpm2.VerifySignature{KeyHandle: h, Digest: tpm2.TPM2BDigest{Buffer: digest}, Signature: *sig}.Execute(e.tr())
	if err != nil {
		if errors.Is(err, tpm2.TPMRCSignature) {
			return nil, fmt.Errorf("%w: the approval's signature is not the authority's", ErrPolicy)
		}
		return nil, err
	}
	return &rsp.Validation, nil
}

// AuthorityPublic is the TPMT_PUBLIC of a policy authority's public key
// (ECDSA P-256 with SHA-256, or RSA PKCS#1 v1.5 with SHA-256), as
// TPM2_LoadExternal loads it and PolicyAuthorize names it.
func AuthorityPublic(pub crypto.PublicKey) ([]byte, error) {
	a := tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("policy authority: ECDSA keys must be P-256")
		}
		ek, err := k.ECDH()
		if err != nil {
			return nil, err
		}
		raw := ek.Bytes()[1:]
		return tpm2.Marshal(tpm2.TPMTPublic{
			Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: a,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				CurveID: tpm2.TPMECCNistP256,
				Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
				KDF: tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
				X: tpm2.TPM2BECCParameter{Buffer: raw[:32]}, Y: tpm2.TPM2BECCParameter{Buffer: raw[32:]}}),
		}), nil
	case *rsa.PublicKey:
		if k.E != 65537 {
			return nil, errors.New("policy authority: RSA keys must have exponent 65537")
		}
		return tpm2.Marshal(tpm2.TPMTPublic{
			Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: a,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Scheme: tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgRSASSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})},
				KeyBits: tpm2.TPMKeyBits(k.N.BitLen()),
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()}),
		}), nil
	}
	return nil, fmt.Errorf("policy authority: unsupported key %T", pub)
}

// SignApproval has the authority's signer approve PCR values with digest
// (the SHA-256 of pcrs' values) for policyRef ref: done in software, by
// whoever holds the authority key (a vendor's release process, an admin).
func SignApproval(signer crypto.Signer, pcrs []int, digest, ref []byte) (Approval, error) {
	a, err := ApprovalDigest(pcrs, digest, ref)
	if err != nil {
		return Approval{}, err
	}
	sig, err := signer.Sign(rand.Reader, a, crypto.SHA256)
	if err != nil {
		return Approval{}, err
	}
	var t tpm2.TPMTSignature
	switch signer.Public().(type) {
	case *ecdsa.PublicKey:
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(sig, &rs); err != nil {
			return Approval{}, err
		}
		t = tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: rs.R.FillBytes(make([]byte, 32))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: rs.S.FillBytes(make([]byte, 32))},
		})}
	case *rsa.PublicKey:
		t = tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
			Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig}})}
	default:
		return Approval{}, fmt.Errorf("policy authority: unsupported key %T", signer.Public())
	}
	return Approval{Digest: digest, Signature: tpm2.Marshal(t)}, nil
}
