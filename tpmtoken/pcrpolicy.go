package tpmtoken

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// Keys bound to platform state (opt-in per key, at generation): the
// private key's template names PCRs (CKA_TPM11_PCR_POLICY) and, for a
// policy an update can move, the authority whose signed approvals count
// (CKA_TPM11_POLICY_AUTHORITY). The key then signs only while those PCRs
// hold the values they had at generation (TPM2_PolicyPCR), or values the
// authority approved (TPM2_PolicyAuthorize); otherwise signing returns
// CKR_KEY_FUNCTION_NOT_PERMITTED and the log says which PCRs moved.
// docs/attestation.md has the attributes.

const (
	// CKA_TPM11_PCR_POLICY: the PCRs (SHA-256 bank) a key is bound to, as
	// ASCII "0,7,16"; given in the private key's template at generation,
	// read back from the key.
	CKA_TPM11_PCR_POLICY = ck.AttributeType(0x80000000 | 0x54504D02)
	// CKA_TPM11_POLICY_AUTHORITY: a SubjectPublicKeyInfo (DER, ECDSA P-256
	// or RSA) whose signed approvals of PCR values authorize the key
	// (TPM2_PolicyAuthorize), instead of the values at generation.
	CKA_TPM11_POLICY_AUTHORITY = ck.AttributeType(0x80000000 | 0x54504D03)
	// CKA_TPM11_POLICY: read-only, the key's policy as JSON (PCRs, bound
	// digest or authority, approvals, and the TPM authPolicy).
	CKA_TPM11_POLICY = ck.AttributeType(0x80000000 | 0x54504D04)
)

// PolicyRef is the policyRef of every authorized policy the token makes:
// an authority's approvals are for tpm11 keys.
var PolicyRef = []byte("tpm11")

// policyJSON is CKA_TPM11_POLICY.
type policyJSON struct {
	PCRs       []int          `json:"pcrs"`
	Bank       string         `json:"bank"`
	Digest     []byte         `json:"pcr_digest,omitempty"`
	Values     [][]byte       `json:"pcr_values,omitempty"`
	Authority  []byte         `json:"authority,omitempty"`
	Ref        []byte         `json:"policy_ref,omitempty"`
	Approvals  []tpm.Approval `json:"approvals,omitempty"`
	AuthPolicy []byte         `json:"auth_policy"`
}

// ParsePCRList reads "0,7,16" (or "sha256:0,7,16").
func ParsePCRList(s string) ([]int, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "sha256:")
	var out []int
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > 23 {
			return nil, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "PCR list %q: PCRs are 0 to 23", s)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// applyPolicy reads the policy attributes of a private key's template
// (vt) and, if there are any, binds template to the policy and records it
// in priv. No policy attribute: nil, template unchanged.
func (t *Token) applyPolicy(owner uint64, vt Template, priv Attrs, template tpm2.TPMTPublic) (tpm2.TPMTPublic, *tpm.Policy, error) {
	list, ok := vt[CKA_TPM11_PCR_POLICY]
	if !ok {
		if _, ok := vt[CKA_TPM11_POLICY_AUTHORITY]; ok {
			return template, nil, ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "CKA_TPM11_POLICY_AUTHORITY needs CKA_TPM11_PCR_POLICY")
		}
		return template, nil, nil
	}
	pcrs, err := ParsePCRList(string(list))
	if err != nil {
		return template, nil, err
	}
	if priv.Bool(ck.CKA_DERIVE) {
		return template, nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "a key bound to PCRs signs or decrypts; it cannot derive")
	}
	p := &tpm.Policy{PCRs: pcrs}
	if spki, ok := vt[CKA_TPM11_POLICY_AUTHORITY]; ok {
		pk, err := x509.ParsePKIXPublicKey(spki)
		if err != nil {
			return template, nil, ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
		}
		if p.Authority, err = tpm.AuthorityPublic(pk); err != nil {
			return template, nil, ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
		}
		p.Ref = PolicyRef
		priv[CKA_TPM11_POLICY_AUTHORITY] = spki
	} else {
		r, err := do(t.lib, owner, func(e *tpm.Engine) (pcrRead, error) {
			v, d, err := e.ReadPCRs(pcrs)
			return pcrRead{v, d}, err
		})
		if err != nil {
			return template, nil, err
		}
		p.Digest, p.Values = r.digest, r.values
	}
	bound, err := tpm.Bind(template, p)
	if err != nil {
		return template, nil, ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	priv[CKA_TPM11_PCR_POLICY] = []byte(tpm.PCRList(pcrs))
	if err := setPolicyAttr(priv, p); err != nil {
		return template, nil, err
	}
	return bound, p, nil
}

type pcrRead struct {
	values [][]byte
	digest []byte
}

func setPolicyAttr(a Attrs, p *tpm.Policy) error {
	ap, err := p.AuthPolicy()
	if err != nil {
		return ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	j, err := json.Marshal(policyJSON{PCRs: p.PCRs, Bank: "sha256", Digest: p.Digest, Values: p.Values, Authority: p.Authority,
		Ref: p.Ref, Approvals: p.Approvals, AuthPolicy: ap})
	if err != nil {
		return ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	a[CKA_TPM11_POLICY] = j
	return nil
}

// policyOf is the policy recorded with a key, nil if it has none.
func policyOf(a Attrs) *tpm.Policy {
	j, ok := a[CKA_TPM11_POLICY]
	if !ok {
		return nil
	}
	var p policyJSON
	if json.Unmarshal(j, &p) != nil {
		return nil
	}
	return &tpm.Policy{PCRs: p.PCRs, Digest: p.Digest, Values: p.Values, Authority: p.Authority, Ref: p.Ref, Approvals: p.Approvals}
}

// explainPolicy turns a policy failure of key o into the token's answer,
// CKR_KEY_FUNCTION_NOT_PERMITTED, and says why in the log.
func (l *Library) explainPolicy(o *Object, err error) error {
	if err == nil || !errors.Is(err, tpm.ErrPolicy) {
		return err
	}
	p := policyOf(o.Attrs)
	desc := ""
	if p != nil {
		desc = p.String()
	}
	l.log.Warn("key bound to platform state refused", "label", string(o.Attrs[ck.CKA_LABEL]),
		"id", strings.ToUpper(strconvHex(o.Attrs[ck.CKA_ID])), "policy", desc, "why", err)
	return ck.Wrap(ck.CKR_KEY_FUNCTION_NOT_PERMITTED, err)
}

func strconvHex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// PCRValues reads the SHA-256 bank's values of pcrs (session h; no login
// needed), in the order asked: what an authority approves for an update
// is computed from them.
func (l *Library) PCRValues(h uint64, pcrs []int) ([][]byte, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, err
	}
	r, err := do(l, s.Handle, func(e *tpm.Engine) (pcrRead, error) {
		v, d, err := e.ReadPCRs(pcrs)
		return pcrRead{v, d}, err
	})
	if err != nil {
		return nil, err
	}
	// ReadPCRs answers in index order: give them back in the caller's.
	sorted := slices.Clone(pcrs)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	out := make([][]byte, len(pcrs))
	for i, p := range pcrs {
		out[i] = r.values[slices.Index(sorted, p)]
	}
	return out, nil
}

// ExtendPCR extends PCR pcr with SHA-256(data) (session h): PCR 16 (debug)
// and 23 (application) are open to anyone; for demonstrations and tests
// of keys bound to PCRs.
func (l *Library) ExtendPCR(h uint64, pcr int, data []byte) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	_, err = do(l, s.Handle, func(e *tpm.Engine) (struct{}, error) { return struct{}{}, e.ExtendPCR(pcr, data) })
	return err
}

// SignPolicyApproval is an authority's approval (JSON) of PCR values for
// keys bound to pcrs under CKA_TPM11_POLICY_AUTHORITY: signed in software
// by whoever holds the authority's key, e.g. for the values a new kernel
// will give. values are the PCRs' SHA-256 values in the order of pcrs.
func SignPolicyApproval(signer crypto.Signer, pcrs []int, values [][]byte) ([]byte, error) {
	if len(values) != len(pcrs) {
		return nil, errors.New("one value per PCR")
	}
	// The digest PolicyPCR compares: the values in PCR index order.
	idx := make([]int, len(pcrs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return pcrs[idx[a]] < pcrs[idx[b]] })
	h := sha256.New()
	for _, i := range idx {
		h.Write(values[i])
	}
	a, err := tpm.SignApproval(signer, pcrs, h.Sum(nil), PolicyRef)
	if err != nil {
		return nil, err
	}
	a.PCRs = slices.Sorted(slices.Values(pcrs))
	for _, i := range idx {
		a.Values = append(a.Values, values[i])
	}
	return json.Marshal(a)
}

// AddPolicyApproval adds an authority's approval to key obj (session h,
// R/W for a token key): from now on the key also signs under the PCR
// values approved. The approval is checked first (tpm.Policy.
// CheckApproval: the key's PCRs, its values, the authority's signature:
// CKR_SIGNATURE_INVALID if another key signed it); the TPM checks the
// signature again at each use.
func (l *Library) AddPolicyApproval(h, obj uint64, approval []byte) error {
	s, o, err := l.changeableObject(h, obj, ck.CKA_MODIFIABLE)
	if err != nil {
		return err
	}
	var a tpm.Approval
	if err := json.Unmarshal(approval, &a); err != nil {
		return ck.Wrap(ck.CKR_ARGUMENTS_BAD, err)
	}
	p := policyOf(o.Attrs)
	if o.key == nil || p == nil || p.Authority == nil {
		return ck.Errorf(ck.CKR_KEY_TYPE_INCONSISTENT, "the key has no authorized policy")
	}
	if err := p.CheckApproval(a); err != nil {
		return ck.Wrap(ck.CKR_SIGNATURE_INVALID, err)
	}
	p.Approvals = append(p.Approvals, a)
	next := Attrs{}
	for k, v := range o.Attrs {
		next[k] = v
	}
	if err := setPolicyAttr(next, p); err != nil {
		return err
	}
	n := *o
	n.Attrs = next
	if o.session == 0 {
		if err := s.tok.objs.Put(n.record()); err != nil {
			return storeErr(ck.CKR_DEVICE_ERROR, err)
		}
	}
	s.tok.mu.Lock()
	s.tok.invalidate()
	o.Attrs = next
	s.tok.mu.Unlock()
	// The worker alone reads a key's Policy.
	key := o.key
	_, err = do(l, s.Handle, func(*tpm.Engine) (struct{}, error) { key.Policy = p; return struct{}{}, nil })
	return err
}
