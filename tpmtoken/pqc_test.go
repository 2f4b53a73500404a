package tpmtoken_test

import (
	"crypto/mlkem"
	"testing"

	"github.com/cloudflare/circl/pki"
	circlsign "github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// ML-DSA and ML-KEM through the token on the PQC test TPM (fwtpm_server):
// key pairs made in the TPM, signatures circl verifies, ciphertexts Go
// made decapsulating to Go's secret. On swtpm none of it is offered.

func TestPQCMechanismsOnlyWhereTheTPMHasThem(t *testing.T) {
	pqc := []ck.MechType{ck.CKM_ML_DSA_KEY_PAIR_GEN, ck.CKM_ML_DSA, ck.CKM_ML_KEM_KEY_PAIR_GEN, ck.CKM_ML_KEM}

	l := open(t, startSwtpm(t), t.TempDir())
	list, err := l.MechanismList(0)
	require.NoError(t, err)
	for _, m := range pqc {
		require.NotContains(t, list, m)
	}
	h := provision(t, l)
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_DSA_65)}}, nil)
	require.Equal(t, ck.CKR_MECHANISM_INVALID, rv(err))
	l.Close()

	f := swtpmtest.StartFwTPM(t)
	l = open(t, f.Spec, t.TempDir())
	defer l.Close()
	list, err = l.MechanismList(0)
	require.NoError(t, err)
	for _, m := range pqc {
		require.Contains(t, list, m)
	}
	info, err := l.MechanismInfo(0, ck.CKM_ML_DSA_KEY_PAIR_GEN)
	require.NoError(t, err)
	require.Equal(t, [2]uint64{1312, 2592}, [2]uint64{info.Min, info.Max}, "public key bytes of ML-DSA-44..87")
	info, err = l.MechanismInfo(0, ck.CKM_ML_KEM)
	require.NoError(t, err)
	require.Equal(t, [2]uint64{800, 1568}, [2]uint64{info.Min, info.Max})
	require.NotZero(t, info.Flags&ck.CKF_DECAPSULATE)
}

func TestMLDSAThroughToken(t *testing.T) {
	f := swtpmtest.StartFwTPM(t)
	l := open(t, f.Spec, t.TempDir())
	defer l.Close()
	h := provision(t, l)
	for _, ps := range []ck.ULong{ck.CKP_ML_DSA_44, ck.CKP_ML_DSA_65, ck.CKP_ML_DSA_87} {
		set := mech.MLDSASets[ps]
		t.Run(set.Name, func(t *testing.T) {
			pubH, privH, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
				[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_PARAMETER_SET, ulong(ps)}, {ck.CKA_LABEL, []byte("pq")}},
				[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_LABEL, []byte("pq")}})
			require.NoError(t, err)
			got, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_VALUE, ck.CKA_PARAMETER_SET, ck.CKA_PUBLIC_KEY_INFO, ck.CKA_KEY_TYPE})
			require.NoError(t, err)
			value, spki := got[0].Value, got[2].Value
			require.Len(t, value, set.PubLen)
			require.Equal(t, ulong(ps), got[1].Value)
			require.Equal(t, ulong(ck.CKK_ML_DSA), got[3].Value)
			// circl reads the SubjectPublicKeyInfo: the NIST OID, the key.
			pk, err := pki.UnmarshalPKIXPublicKey(spki)
			require.NoError(t, err)
			require.Equal(t, set.Name, pk.Scheme().Name())
			raw, _ := pk.MarshalBinary()
			require.Equal(t, value, raw)
			got, err = l.GetAttributeValue(h, privH, []ck.AttributeType{ck.CKA_PARAMETER_SET, ck.CKA_SIGN, ck.CKA_VALUE})
			require.NoError(t, err)
			require.Equal(t, ulong(ps), got[0].Value)
			require.Equal(t, []byte{1}, got[1].Value)
			require.Equal(t, ck.CKR_ATTRIBUTE_SENSITIVE, got[2].RV)

			msg, ctx := []byte("signed by an ML-DSA key in the TPM"), []byte("tpm11")
			m := tpmtoken.Mechanism{Type: ck.CKM_ML_DSA, Param: mech.SignContext{Context: ctx}}
			require.NoError(t, l.SignInit(h, m, privH))
			_, n, err := sign(l, h, msg, 0, true)
			require.NoError(t, err)
			require.Equal(t, set.SigLen, n)
			sig, _, err := sign(l, h, msg, n, false)
			require.NoError(t, err)
			require.True(t, pk.Scheme().Verify(pk, msg, sig, &circlsign.SignatureOpts{Context: string(ctx)}), "circl rejects the token's signature")
			require.False(t, pk.Scheme().Verify(pk, append(msg, '!'), sig, &circlsign.SignatureOpts{Context: string(ctx)}))

			// The token verifies in software; a tampered message fails.
			require.NoError(t, l.VerifyInit(h, m, pubH))
			require.NoError(t, l.Verify(h, msg, sig))
			require.NoError(t, l.VerifyInit(h, m, pubH))
			require.Equal(t, ck.CKR_SIGNATURE_INVALID, rv(l.Verify(h, append(msg, '!'), sig)))

			// Multi-part, no context.
			require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA}, privH))
			require.NoError(t, l.SignUpdate(h, msg[:10]))
			require.NoError(t, l.SignUpdate(h, msg[10:]))
			sig, _, err = signFinal(l, h, n, false)
			require.NoError(t, err)
			require.True(t, pk.Scheme().Verify(pk, msg, sig, nil))

			// More than the TPM takes in one sequence (fwTPM: 1024 bytes):
			// CKR_DATA_LEN_RANGE, nothing signed, the operation over.
			require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA}, privH))
			_, _, err = sign(l, h, make([]byte, 4096), n, false)
			require.Equal(t, ck.CKR_DATA_LEN_RANGE, rv(err))
			_, _, err = sign(l, h, msg, n, false)
			require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err))

			// A context longer than FIPS 204 allows, or a promise of
			// determinism, is refused at init.
			require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(l.SignInit(h,
				tpmtoken.Mechanism{Type: ck.CKM_ML_DSA, Param: mech.SignContext{Context: make([]byte, 256)}}, privH)))
			require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(l.SignInit(h,
				tpmtoken.Mechanism{Type: ck.CKM_ML_DSA, Param: mech.SignContext{Hedge: ck.CKH_DETERMINISTIC_REQUIRED}}, privH)))
		})
	}
	// A parameter set there is none of.
	_, _, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(9)}}, nil)
	require.Equal(t, ck.CKR_PARAMETER_SET_NOT_SUPPORTED, rv(err))
	_, _, err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN}, nil, nil)
	require.Equal(t, ck.CKR_TEMPLATE_INCOMPLETE, rv(err))
}

func TestMLKEMThroughToken(t *testing.T) {
	f := swtpmtest.StartFwTPM(t)
	l := open(t, f.Spec, t.TempDir())
	defer l.Close()
	h := provision(t, l)
	secretTmpl := []tpmtoken.Attr{
		{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
		{ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, []byte{1}},
	}
	value := func(k uint64) []byte {
		got, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
		require.NoError(t, err)
		return got[0].Value
	}
	for _, ps := range []ck.ULong{ck.CKP_ML_KEM_512, ck.CKP_ML_KEM_768, ck.CKP_ML_KEM_1024} {
		set := mech.MLKEMSets[ps]
		t.Run(set.Name, func(t *testing.T) {
			pubH, privH, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM_KEY_PAIR_GEN},
				[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ps)}}, nil)
			require.NoError(t, err)
			got, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_VALUE, ck.CKA_ENCAPSULATE})
			require.NoError(t, err)
			ek := got[0].Value
			require.Len(t, ek, set.PubLen)
			require.Equal(t, []byte{1}, got[1].Value)

			if ps == ck.CKP_ML_KEM_768 {
				// A ciphertext Go's crypto/mlkem made decapsulates, in the
				// TPM, to the secret Go computed.
				k, err := mlkem.NewEncapsulationKey768(ek)
				require.NoError(t, err)
				ss, ct := k.Encapsulate()
				key, err := l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, privH, secretTmpl, ct)
				require.NoError(t, err)
				require.Equal(t, ss, value(key))
			}
			// C_EncapsulateKey against the token's public key (software),
			// then C_DecapsulateKey in the TPM: the same secret.
			n, err := l.EncapsulateKeyLen(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, pubH)
			require.NoError(t, err)
			require.Equal(t, set.CtLen, n)
			ct, k1, err := l.EncapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, pubH, secretTmpl, tpmtoken.Dest{Cap: n})
			require.NoError(t, err)
			k2, err := l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, privH, secretTmpl, ct)
			require.NoError(t, err)
			require.Len(t, value(k1), 32)
			require.Equal(t, value(k1), value(k2))

			_, err = l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, privH, secretTmpl, ct[1:])
			require.Equal(t, ck.CKR_WRAPPED_KEY_LEN_RANGE, rv(err))
			_, err = l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, privH,
				append(secretTmpl, tpmtoken.Attr{Type: ck.CKA_VALUE_LEN, Value: ulong(16)}), ct)
			require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))
		})
	}
}

// Public keys made elsewhere (circl, Go's crypto/mlkem) enter by
// C_CreateObject: an ML-DSA one verifies circl's signatures in software,
// an ML-KEM one takes C_EncapsulateKey whose ciphertext Go decapsulates to
// the new key's value. Neither needs the TPM.
func TestPQCPublicKeyImport(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	pk, sk, err := mldsa65.GenerateKey(nil)
	require.NoError(t, err)
	value, _ := pk.MarshalBinary()
	pubT := func(kt ck.KeyType, ps ck.ULong, v []byte) []tpmtoken.Attr {
		return []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)}, {ck.CKA_KEY_TYPE, ulong(kt)},
			{ck.CKA_PARAMETER_SET, ulong(ps)}, {ck.CKA_VALUE, v}}
	}
	obj, err := l.CreateObject(h, pubT(ck.CKK_ML_DSA, ck.CKP_ML_DSA_65, value))
	require.NoError(t, err)
	got, err := l.GetAttributeValue(h, obj, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	theirs, _ := pki.MarshalPKIXPublicKey(pk)
	require.Equal(t, theirs, got[0].Value)
	msg, ctx := []byte("made by circl"), []byte("c")
	sig := make([]byte, mldsa65.SignatureSize)
	require.NoError(t, mldsa65.SignTo(sk, msg, ctx, true, sig))
	m := tpmtoken.Mechanism{Type: ck.CKM_ML_DSA, Param: mech.SignContext{Context: ctx}}
	require.NoError(t, l.VerifyInit(h, m, obj))
	require.NoError(t, l.Verify(h, msg, sig))
	require.NoError(t, l.VerifyInit(h, m, obj))
	require.Equal(t, ck.CKR_SIGNATURE_INVALID, rv(l.Verify(h, msg[1:], sig)))
	// The wrong size for the parameter set, or no such set.
	_, err = l.CreateObject(h, pubT(ck.CKK_ML_DSA, ck.CKP_ML_DSA_44, value))
	require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(err))
	_, err = l.CreateObject(h, pubT(ck.CKK_ML_DSA, 7, value))
	require.Equal(t, ck.CKR_PARAMETER_SET_NOT_SUPPORTED, rv(err))

	dk, err := mlkem.GenerateKey768()
	require.NoError(t, err)
	kobj, err := l.CreateObject(h, pubT(ck.CKK_ML_KEM, ck.CKP_ML_KEM_768, dk.EncapsulationKey().Bytes()))
	require.NoError(t, err)
	tmpl := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
		{ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, []byte{1}}}
	ct, k, err := l.EncapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, kobj, tmpl, tpmtoken.Dest{Cap: 2000})
	require.NoError(t, err)
	ss, err := dk.Decapsulate(ct)
	require.NoError(t, err)
	got, err = l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	require.Equal(t, ss, got[0].Value)
}

// Async sessions serve ML-DSA like every TPM-bound operation: on a slow
// TPM the signature pends, completes, and circl verifies it.
func TestMLDSAAsync(t *testing.T) {
	f := swtpmtest.StartFwTPM(t)
	l := open(t, swtpmtest.Slow(t, f.Spec, slowTPM), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	pubH, privH, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_DSA_44)}}, nil)
	require.NoError(t, err)
	got, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := pki.UnmarshalPKIXPublicKey(got[0].Value)
	require.NoError(t, err)
	a := openAsync(t, l)
	msg := []byte("signed while the caller did other work")
	require.NoError(t, l.SignInit(a, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA}, privH))
	_, err = l.Sign(a, msg, tpmtoken.Dest{Cap: mech.MLDSASets[ck.CKP_ML_DSA_44].SigLen})
	require.Equal(t, ck.CKR_PENDING, rv(err))
	res, err := complete(t, l, a, "C_Sign")
	require.NoError(t, err)
	require.True(t, pk.Scheme().Verify(pk, msg, res.Data, nil))
}

// An ML-DSA token key outlives the library: another one (a new process,
// or after C_Finalize) finds it in the store, loads it into the TPM again
// and signs; circl verifies.
func TestMLDSATokenKeyAcrossLibraries(t *testing.T) {
	f := swtpmtest.StartFwTPM(t)
	store := t.TempDir()
	l := open(t, f.Spec, store)
	h := provision(t, l)
	pubH, _, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_DSA_87)}, {ck.CKA_ID, []byte{0x87}}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_ID, []byte{0x87}}})
	require.NoError(t, err)
	got, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := pki.UnmarshalPKIXPublicKey(got[0].Value)
	require.NoError(t, err)
	l.Close()

	l2 := open(t, f.Spec, store)
	defer l2.Close()
	h2, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l2.Login(h2, ck.CKU_USER, []byte("userpin")))
	require.NoError(t, l2.FindObjectsInit(h2, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}, {ck.CKA_ID, []byte{0x87}}}))
	found, err := l2.FindObjects(h2, 10)
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.NoError(t, l2.FindObjectsFinal(h2))
	msg := []byte("after a restart")
	require.NoError(t, l2.SignInit(h2, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA}, found[0]))
	sig, _, err := sign(l2, h2, msg, mech.MLDSASets[ck.CKP_ML_DSA_87].SigLen, false)
	require.NoError(t, err)
	require.True(t, pk.Scheme().Verify(pk, msg, sig, nil))
}
