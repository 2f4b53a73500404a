package tpmtoken_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// captureStderr redirects the process's stderr (where a library made
// after it logs) until the returned function, which gives what was written.
func captureStderr(t *testing.T) func() string {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	return func() string {
		os.Stderr = old
		w.Close()
		return <-done
	}
}

func genBound(t *testing.T, l *tpmtoken.Library, h uint64, id byte, extra ...tpmtoken.Attr) uint64 {
	t.Helper()
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}, {ck.CKA_ID, []byte{id}}},
		append([]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte{id}}, {ck.CKA_LABEL, []byte("bound")},
			{tpmtoken.CKA_TPM11_PCR_POLICY, []byte("16")}}, extra...))
	require.NoError(t, err)
	return priv
}

func trySign(l *tpmtoken.Library, h, key uint64) error {
	if err := l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, key); err != nil {
		return err
	}
	_, _, err := sign(l, h, []byte("boot state"), 64, false)
	return err
}

// A key bound to PCR 16 signs until PCR 16 is extended, then gets
// CKR_KEY_FUNCTION_NOT_PERMITTED with a log line saying why, in this
// library and in another one on the same store; its attributes show the
// policy.
func TestPCRBoundKeySignsOnlyInItsState(t *testing.T) {
	spec, store := startSwtpm(t), t.TempDir()
	var l *tpmtoken.Library
	var h, key uint64
	var err error
	stop := captureStderr(t)
	l, err = tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: store, Log: "warn"})
	require.NoError(t, err)
	defer func() { l.Close() }()
	h = provision(t, l)
	key = genBound(t, l, h, 1)
	require.NoError(t, trySign(l, h, key))

	res, err := l.GetAttributeValue(h, key, []ck.AttributeType{tpmtoken.CKA_TPM11_PCR_POLICY, tpmtoken.CKA_TPM11_POLICY})
	require.NoError(t, err)
	require.Equal(t, "16", string(res[0].Value))
	var shown struct {
		PCRs       []int  `json:"pcrs"`
		Bank       string `json:"bank"`
		AuthPolicy []byte `json:"auth_policy"`
	}
	require.NoError(t, json.Unmarshal(res[1].Value, &shown))
	require.Equal(t, []int{16}, shown.PCRs)
	require.Len(t, shown.AuthPolicy, 32)

	// A key that derives cannot be bound; nor can a policy name PCR 99.
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{tpmtoken.CKA_TPM11_PCR_POLICY, []byte("99")}})
	require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(err))
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{tpmtoken.CKA_TPM11_PCR_POLICY, []byte("16")}, {ck.CKA_DERIVE, []byte{1}}})
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{tpmtoken.CKA_TPM11_POLICY, []byte("{}")}})
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(err), "the policy itself is read-only")

	require.NoError(t, l.ExtendPCR(h, 16, []byte("another kernel")))
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(trySign(l, h, key)))
	log := stop()
	require.Contains(t, log, "key bound to platform state refused")
	// The log line says, once, what PCR 16 holds and what the key was
	// bound to: the values, not the policy digest.
	now, err := l.PCRValues(h, []int{16})
	require.NoError(t, err)
	var policy struct {
		Values [][]byte `json:"pcr_values"`
		Digest []byte   `json:"pcr_digest"`
	}
	require.NoError(t, json.Unmarshal(res[1].Value, &policy))
	require.Len(t, policy.Values, 1)
	require.Contains(t, log, fmt.Sprintf("PCR 16 hold 16=%x; the key was bound to 16=%x", now[0], policy.Values[0]))
	require.Equal(t, 1, strings.Count(log, fmt.Sprintf("%x", policy.Values[0])))
	require.NotContains(t, log, fmt.Sprintf("%x", policy.Digest))

	// The attestation of a bound key still works (the admin role).
	_, err = l.Attest(h, key, tpmtoken.AttestOptions{})
	if err != nil {
		require.Equal(t, ck.CKR_FUNCTION_NOT_SUPPORTED, rv(err), "this swtpm has no EK certificate: %v", err)
		// Then the key has no attestation attribute, and asking is no error.
		res, err := l.GetAttributeValue(h, key, []ck.AttributeType{tpmtoken.CKA_TPM11_ATTESTATION, ck.CKA_SIGN})
		require.NoError(t, err)
		require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, res[0].RV)
		require.Equal(t, []byte{1}, res[1].Value)
	}
	l.Close()

	// Another library (another process) reads the policy from the store.
	l = open(t, spec, store)
	h2, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h2, ck.CKU_USER, []byte("userpin")))
	found := findID(t, l, h2, []byte{1})
	var priv uint64
	for _, o := range found {
		r, _ := l.GetAttributeValue(h2, o, []ck.AttributeType{ck.CKA_CLASS})
		if string(r[0].Value) == string(ulong(ck.CKO_PRIVATE_KEY)) {
			priv = o
		}
	}
	require.NotZero(t, priv)
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(trySign(l, h2, priv)))
}

// A key bound to PCRs by an authority signs under the PCR values the
// authority approved: an update moves the policy with a new approval,
// not a new key.
func TestAuthorizedPCRPolicy(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	authority, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	spki, err := x509.MarshalPKIXPublicKey(authority.Public())
	require.NoError(t, err)
	key := genBound(t, l, h, 2, tpmtoken.Attr{Type: tpmtoken.CKA_TPM11_POLICY_AUTHORITY, Value: spki})
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(trySign(l, h, key)), "nothing approved yet")

	vals, err := l.PCRValues(h, []int{16})
	require.NoError(t, err)
	ap, err := tpmtoken.SignPolicyApproval(authority, []int{16}, vals)
	require.NoError(t, err)
	require.NoError(t, l.AddPolicyApproval(h, key, ap))
	require.NoError(t, trySign(l, h, key))

	// The update: PCR 16 will hold H(old ‖ H("update")); the authority
	// approves that value before the machine gets there.
	d := sha256.Sum256([]byte("update"))
	next := sha256.Sum256(append(vals[0], d[:]...))
	ap2, err := tpmtoken.SignPolicyApproval(authority, []int{16}, [][]byte{next[:]})
	require.NoError(t, err)
	require.NoError(t, l.AddPolicyApproval(h, key, ap2))
	require.NoError(t, l.ExtendPCR(h, 16, []byte("update")))
	require.NoError(t, trySign(l, h, key), "the same key under the approved new values")

	require.NoError(t, l.ExtendPCR(h, 16, []byte("unapproved")))
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(trySign(l, h, key)))

	// An approval names what it approves.
	var named struct {
		PCRs   []int
		Values [][]byte
	}
	require.NoError(t, json.Unmarshal(ap2, &named))
	require.Equal(t, []int{16}, named.PCRs)
	require.Equal(t, [][]byte{next[:]}, named.Values)

	// An approval by someone else, for other PCRs, or whose values are
	// not what was signed, is refused when it is added.
	mallory, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	vals, err = l.PCRValues(h, []int{16})
	require.NoError(t, err)
	forged, err := tpmtoken.SignPolicyApproval(mallory, []int{16}, vals)
	require.NoError(t, err)
	err = l.AddPolicyApproval(h, key, forged)
	require.Equal(t, ck.CKR_SIGNATURE_INVALID, rv(err))
	require.ErrorContains(t, err, "not signed by the key's policy authority")
	other, err := tpmtoken.SignPolicyApproval(authority, []int{16, 23}, append(vals, make([]byte, 32)))
	require.NoError(t, err)
	require.ErrorContains(t, l.AddPolicyApproval(h, key, other), "the approval is for PCR 16,23")
	var relabelled map[string]any
	good, err := tpmtoken.SignPolicyApproval(authority, []int{16}, vals)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(good, &relabelled))
	relabelled["Values"] = [][]byte{next[:]}
	rb, err := json.Marshal(relabelled)
	require.NoError(t, err)
	require.ErrorContains(t, l.AddPolicyApproval(h, key, rb), "values do not make its digest")
	require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(trySign(l, h, key)))
	require.NoError(t, l.AddPolicyApproval(h, key, good))
	require.NoError(t, trySign(l, h, key))
}
