package tpmtoken_test

import (
	"crypto/sha512"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// HashML-DSA through the token on the PQC test TPM: a key whose
// CKA_ALLOWED_MECHANISMS names one hash's HashML-DSA mechanisms is made as
// a HashML-DSA key in the TPM and keeps that after a restart; its
// signatures are checked by @noble/post-quantum (testdata/pqcverify: no Go
// library has HashML-DSA). On swtpm nothing of it is listed.

// hashVerifier is the HashML-DSA verifier (node + noble), installed once
// by testdata/pqcverify.sh; it fails the test (never skips) without it.
func hashVerifier(t *testing.T) func(pk []byte, hash string, msg, ctx, sig []byte) bool {
	out, err := exec.Command("../testdata/pqcverify.sh").Output()
	require.NoError(t, err, "testdata/pqcverify.sh (node, npm ci of @noble/post-quantum)")
	dir := t.TempDir()
	script, err := os.ReadFile("../testdata/pqcverify/verify.mjs")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "verify.mjs"), script, 0o644))
	require.NoError(t, os.Symlink(filepath.Join(strings.TrimSpace(string(out)), "node_modules"), filepath.Join(dir, "node_modules")))
	return func(pk []byte, hash string, msg, ctx, sig []byte) bool {
		for name, b := range map[string][]byte{"pk": pk, "msg": msg, "ctx": ctx, "sig": sig} {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
		}
		cmd := exec.Command("node", "verify.mjs", "pk", hash, "msg", "ctx", "sig")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if _, exit := err.(*exec.ExitError); err != nil && (!exit || cmd.ProcessState.ExitCode() != 1) {
			t.Fatalf("verify.mjs: %v: %s", err, out)
		}
		return err == nil
	}
}

func mechList(ms ...ck.MechType) []byte {
	var b []byte
	for _, m := range ms {
		b = binary.NativeEndian.AppendUint64(b, uint64(m))
	}
	return b
}

func TestHashMLDSAMechanismsOnlyWhereTheTPMHasThem(t *testing.T) {
	hashed := []ck.MechType{ck.CKM_HASH_ML_DSA, ck.CKM_HASH_ML_DSA_SHA256, ck.CKM_HASH_ML_DSA_SHA384}
	l := open(t, startSwtpm(t), t.TempDir())
	list, err := l.MechanismList(0)
	require.NoError(t, err)
	for _, m := range hashed {
		require.NotContains(t, list, m)
	}
	l.Close()

	f := swtpmtest.StartFwTPM(t)
	l = open(t, f.Spec, t.TempDir())
	defer l.Close()
	list, err = l.MechanismList(0)
	require.NoError(t, err)
	for _, m := range hashed {
		require.Contains(t, list, m)
		info, err := l.MechanismInfo(0, m)
		require.NoError(t, err)
		require.Equal(t, [2]uint64{1312, 2592}, [2]uint64{info.Min, info.Max})
		require.NotZero(t, info.Flags&ck.CKF_SIGN)
		require.Zero(t, info.Flags&ck.CKF_VERIFY, "nothing verifies HashML-DSA here")
	}
	// fwTPM has no SHA-512: no HashML-DSA with it.
	require.NotContains(t, list, ck.CKM_HASH_ML_DSA_SHA512)
}

func TestHashMLDSAThroughToken(t *testing.T) {
	verify := hashVerifier(t)
	f := swtpmtest.StartFwTPM(t)
	store := t.TempDir()
	l := open(t, f.Spec, store)
	h := provision(t, l)
	set := mech.MLDSASets[ck.CKP_ML_DSA_65]
	pubH, privH, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_DSA_65)}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte("h384")},
			{ck.CKA_ALLOWED_MECHANISMS, mechList(ck.CKM_HASH_ML_DSA_SHA384, ck.CKM_HASH_ML_DSA)}})
	require.NoError(t, err)
	got, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	pk := got[0].Value
	require.Len(t, pk, set.PubLen)

	msg, ctx := []byte("signed by a HashML-DSA key in the TPM"), []byte("tpm11")
	m := tpmtoken.Mechanism{Type: ck.CKM_HASH_ML_DSA_SHA384, Param: mech.SignContext{Context: ctx}}
	require.NoError(t, l.SignInit(h, m, privH))
	sig, _, err := sign(l, h, msg, set.SigLen, false)
	require.NoError(t, err)
	require.True(t, verify(pk, "sha384", msg, ctx, sig), "noble rejects the token's HashML-DSA signature")
	require.False(t, verify(pk, "sha384", append(msg, '!'), ctx, sig), "noble accepts a tampered message")
	require.False(t, verify(pk, "sha256", msg, ctx, sig), "noble accepts another pre-hash")

	// Over a digest the caller made.
	d := sha512.Sum384(msg)
	require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_HASH_ML_DSA,
		Param: mech.HashSignContext{Context: ctx, Hash: ck.CKM_SHA384}}, privH))
	sig, _, err = sign(l, h, d[:], set.SigLen, false)
	require.NoError(t, err)
	require.True(t, verify(pk, "sha384", msg, ctx, sig))

	// The key does nothing else; the token verifies none of it.
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, rv(l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA}, privH)))
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, rv(l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_HASH_ML_DSA_SHA256}, privH)))
	require.Equal(t, ck.CKR_MECHANISM_INVALID, rv(l.VerifyInit(h, m, pubH)))
	// Keys the TPM cannot make: both kinds at once, two hashes, no hash.
	for _, bad := range [][]ck.MechType{{ck.CKM_ML_DSA, ck.CKM_HASH_ML_DSA_SHA256}, {ck.CKM_HASH_ML_DSA_SHA256, ck.CKM_HASH_ML_DSA_SHA384}, {ck.CKM_HASH_ML_DSA}} {
		_, _, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_DSA_44)}}, []tpmtoken.Attr{{ck.CKA_ALLOWED_MECHANISMS, mechList(bad...)}})
		require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err), "%v", bad)
	}
	l.Close()

	// After a restart the key is still a HashML-DSA key bound to SHA-384
	// (its TPM public area says so): multi-part signing, verified.
	l2 := open(t, f.Spec, store)
	defer l2.Close()
	h2, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l2.Login(h2, ck.CKU_USER, []byte("userpin")))
	require.NoError(t, l2.FindObjectsInit(h2, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_ID, []byte("h384")}}))
	found, err := l2.FindObjects(h2, 10)
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.NoError(t, l2.FindObjectsFinal(h2))
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, rv(l2.SignInit(h2, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA}, found[0])))
	long := make([]byte, 2500)
	for i := range long {
		long[i] = byte(i)
	}
	require.NoError(t, l2.SignInit(h2, tpmtoken.Mechanism{Type: ck.CKM_HASH_ML_DSA_SHA384}, found[0]))
	require.NoError(t, l2.SignUpdate(h2, long[:1200]))
	require.NoError(t, l2.SignUpdate(h2, long[1200:]))
	sig, _, err = signFinal(l2, h2, set.SigLen, false)
	require.NoError(t, err)
	require.True(t, verify(pk, "sha384", long, nil, sig))
}
