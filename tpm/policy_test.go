package tpm_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

var ecdsaSHA256 = tpm.SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256}

func resetPCR16(t *testing.T, tr interface {
	Send([]byte) ([]byte, error)
}) {
	_, err := tpm2.PCRReset{PCRHandle: tpm2.AuthHandle{Handle: 16, Auth: tpm2.PasswordAuth(nil)}}.Execute(tr)
	require.NoError(t, err)
}

// A key bound to PCR 16 signs while PCR 16 holds the value it had, fails
// with ErrPolicy once PCR 16 is extended, and signs again after a reset.
func TestPCRBoundKey(t *testing.T) {
	tr := swtpmtest.Start(t)
	e := tpm.NewEngine(tr, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	_, digest, err := e.ReadPCRs([]int{16})
	require.NoError(t, err)
	p := &tpm.Policy{PCRs: []int{16}, Digest: digest}
	tmpl, err := tpm.Bind(tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), p)
	require.NoError(t, err)
	pub, priv, err := e.Create(srk, tmpl, nil, nil)
	require.NoError(t, err)
	key := &tpm.Loadable{ID: "k", Parent: srk, Public: pub, Private: priv, Policy: p}
	d := sha256.Sum256([]byte("x"))
	_, err = e.Sign(key, d[:], ecdsaSHA256)
	require.NoError(t, err)

	require.NoError(t, e.ExtendPCR(16, []byte("new kernel")))
	_, err = e.Sign(key, d[:], ecdsaSHA256)
	require.ErrorIs(t, err, tpm.ErrPolicy)
	require.Contains(t, err.Error(), "PCR 16")

	// Without the policy (authValue only) the TPM refuses too.
	noPolicy := *key
	noPolicy.Policy = nil
	noPolicy.ID = "k2"
	_, err = e.Sign(&noPolicy, d[:], ecdsaSHA256)
	require.Error(t, err)

	resetPCR16(t, tr)
	_, err = e.Sign(key, d[:], ecdsaSHA256)
	require.NoError(t, err)
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}

// A key under an authorized policy signs for any PCR values its
// authority approved, and for no others; a forged approval fails.
func TestAuthorizedPolicyKey(t *testing.T) {
	tr := swtpmtest.Start(t)
	e := tpm.NewEngine(tr, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	authority, key := authorizedECCKey(t, e, srk)
	p, pcrs, ok1 := key.Policy, key.Policy.PCRs, key.Policy.Approvals[0]
	d := sha256.Sum256([]byte("x"))
	var err error
	_, err = e.Sign(key, d[:], ecdsaSHA256)
	require.NoError(t, err)

	// An update: PCR 16 moves; not approved yet.
	require.NoError(t, e.ExtendPCR(16, []byte("update")))
	_, err = e.Sign(key, d[:], ecdsaSHA256)
	require.ErrorIs(t, err, tpm.ErrPolicy)

	// A forged approval (another key) for the new values fails.
	_, after, err := e.ReadPCRs(pcrs)
	require.NoError(t, err)
	mallory, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, err := tpm.SignApproval(mallory, pcrs, after, []byte("tpm11"))
	require.NoError(t, err)
	p.Approvals = append(p.Approvals, forged)
	_, err = e.Sign(key, d[:], ecdsaSHA256)
	require.ErrorIs(t, err, tpm.ErrPolicy)

	// The authority approves the new values: the same key signs again.
	ok2, err := tpm.SignApproval(authority, pcrs, after, []byte("tpm11"))
	require.NoError(t, err)
	p.Approvals = []tpm.Approval{ok1, ok2}
	_, err = e.Sign(key, d[:], ecdsaSHA256)
	require.NoError(t, err)
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}

// authorizedECCKey makes a P-256 key under srk whose policy is PCR 16 as
// approved by a fresh authority (TPM2_PolicyAuthorize), with one approval
// of PCR 16's present value.
func authorizedECCKey(t *testing.T, e *tpm.Engine, srk *tpm.Loadable) (*ecdsa.PrivateKey, *tpm.Loadable) {
	t.Helper()
	authority, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	authPub, err := tpm.AuthorityPublic(authority.Public())
	require.NoError(t, err)
	pcrs := []int{16}
	_, before, err := e.ReadPCRs(pcrs)
	require.NoError(t, err)
	ok, err := tpm.SignApproval(authority, pcrs, before, []byte("tpm11"))
	require.NoError(t, err)
	p := &tpm.Policy{PCRs: pcrs, Authority: authPub, Ref: []byte("tpm11"), Approvals: []tpm.Approval{ok}}
	tmpl, err := tpm.Bind(tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), p)
	require.NoError(t, err)
	pub, priv, err := e.Create(srk, tmpl, nil, nil)
	require.NoError(t, err)
	return authority, &tpm.Loadable{ID: "k", Parent: srk, Public: pub, Private: priv, Policy: p}
}
