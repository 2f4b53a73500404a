package tpm_test

import (
	"bytes"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// The v1.85 commands end to end against wolfTPM's fwtpm_server (the PQC
// test TPM, testdata/fwtpm.sh): keys made in the TPM under a storage key
// with a secret authValue (so its loads, and the ML-KEM shared secret,
// travel in salted, parameter-encrypted sessions), signatures verified by
// cloudflare/circl, ciphertexts made by Go's crypto/mlkem and circl.

// pqcEngine starts a fwtpm_server and returns an Engine on it and a
// storage key to make keys under.
func pqcEngine(t *testing.T) (*tpm.Engine, *tpm.Loadable) {
	t.Helper()
	f := swtpmtest.StartFwTPM(t)
	tr := f.Transport(t)
	e := tpm.NewEngine(tr, 8)
	t.Cleanup(e.FlushAll) // before the connection closes and the leak check
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	e.Salt = srk
	storageAuth := []byte("0123456789abcdef0123456789abcdef")
	pub, priv, err := e.Create(srk, tpm.StorageTemplate(), storageAuth, nil)
	require.NoError(t, err)
	return e, &tpm.Loadable{ID: "storage", Parent: srk, Public: pub, Private: priv, Auth: storageAuth}
}

func circlScheme(ps tpm.MLDSAParams) sign.Scheme {
	return map[tpm.MLDSAParams]sign.Scheme{
		tpm.MLDSA_44: mldsa44.Scheme(), tpm.MLDSA_65: mldsa65.Scheme(), tpm.MLDSA_87: mldsa87.Scheme(),
	}[ps]
}

func TestPQCProbe(t *testing.T) {
	e, _ := pqcEngine(t)
	c, err := e.ProbePQC()
	require.NoError(t, err)
	require.True(t, c.MLDSA && c.HashMLDSA && c.MLKEM, "%+v", c)
	for _, ps := range []tpm.MLDSAParams{tpm.MLDSA_44, tpm.MLDSA_65, tpm.MLDSA_87} {
		require.True(t, c.HasMLDSA(ps), ps)
		require.True(t, c.HasHashMLDSA(ps, tpm2.TPMAlgSHA256), ps)
		require.True(t, c.HasHashMLDSA(ps, tpm2.TPMAlgSHA384), ps)
		require.False(t, c.HasHashMLDSA(ps, tpm2.TPMAlgSHA512), "fwTPM has no SHA-512")
	}
	for _, ps := range []tpm.MLKEMParams{tpm.MLKEM_512, tpm.MLKEM_768, tpm.MLKEM_1024} {
		require.True(t, c.HasMLKEM(ps), ps)
	}
	t.Logf("fwTPM: TPM_PT_ML_PARAMETER_SETS %#x, commands %v", uint32(c.Sets), c.Commands)

	// swtpm has none of it, and says so without an error.
	s, err := tpm.NewEngine(swtpmtest.Start(t), 3).ProbePQC()
	require.NoError(t, err)
	require.False(t, s.MLDSA || s.HashMLDSA || s.MLKEM || s.Sets != 0, "%+v", s)
}

func TestMLDSASignInTPMVerifiesWithCircl(t *testing.T) {
	e, parent := pqcEngine(t)
	for _, ps := range []tpm.MLDSAParams{tpm.MLDSA_44, tpm.MLDSA_65, tpm.MLDSA_87} {
		t.Run(ps.String(), func(t *testing.T) {
			pub, priv, err := e.CreatePQC(parent, tpm.MLDSAKeyTemplate(ps), nil)
			require.NoError(t, err)
			key := &tpm.Loadable{ID: ps.String(), Parent: parent, Public: pub, Private: priv}
			defer e.Forget(key.ID)
			p, err := tpm.PublicOf(pub)
			require.NoError(t, err)
			require.Equal(t, tpm.AlgMLDSA, p.Type)
			require.Len(t, p.Unique, ps.PublicKeySize())
			pk, err := circlScheme(ps).UnmarshalBinaryPublicKey(p.Unique)
			require.NoError(t, err)

			long := make([]byte, 1024) // what fwTPM takes in one pure sequence
			_, _ = rand.Read(long)
			for _, c := range []struct {
				name     string
				msg, ctx []byte
			}{
				{"empty", nil, nil},
				{"short", []byte("hello, post-quantum TPM"), nil},
				{"context", []byte("hello"), []byte("tpm11 test context")},
				{"1024 bytes, max context", long, bytes.Repeat([]byte{7}, tpm.MaxSignatureContext)},
			} {
				sig, err := e.SignMessage(key, c.ctx, c.msg)
				require.NoError(t, err, c.name)
				require.Equal(t, tpm.AlgMLDSA, sig.Alg)
				require.Len(t, sig.Sig, ps.SignatureSize())
				require.True(t, circlScheme(ps).Verify(pk, c.msg, sig.Sig, &sign.SignatureOpts{Context: string(c.ctx)}), "%s: circl rejects the TPM's signature", c.name)
				tampered := append([]byte{0}, c.msg...)
				require.False(t, circlScheme(ps).Verify(pk, tampered, sig.Sig, &sign.SignatureOpts{Context: string(c.ctx)}), c.name)
				require.False(t, circlScheme(ps).Verify(pk, c.msg, sig.Sig, &sign.SignatureOpts{Context: "other"}), c.name)
			}
			// Hedged (FIPS 204's default): the same message signed again
			// gives another signature, which verifies too.
			again, err := e.SignMessage(key, nil, []byte("hello"))
			require.NoError(t, err)
			again2, err := e.SignMessage(key, nil, []byte("hello"))
			require.NoError(t, err)
			require.NotEqual(t, again.Sig, again2.Sig, "fwTPM's ML-DSA signatures are hedged")
			require.True(t, circlScheme(ps).Verify(pk, []byte("hello"), again2.Sig, nil))
			// The message across several TPM2_SequenceUpdate: the same
			// signature check.
			msg := []byte("split message")
			s, err := e.SignSequenceStart(key, nil)
			require.NoError(t, err)
			require.NoError(t, e.SequenceUpdate(s, msg[:5]))
			require.NoError(t, e.SequenceUpdate(s, msg[5:9]))
			sig, err := e.SignSequenceComplete(s, msg[9:])
			require.NoError(t, err)
			require.True(t, circlScheme(ps).Verify(pk, msg, sig.Sig, nil))
		})
	}
}

// TestMLDSASequenceLimit finds the most message bytes a pure ML-DSA
// sequence takes by asking the TPM, and checks that going past it fails
// and leaves nothing signed and nothing loaded.
func TestMLDSASequenceLimit(t *testing.T) {
	e, parent := pqcEngine(t)
	pub, priv, err := e.CreatePQC(parent, tpm.MLDSAKeyTemplate(tpm.MLDSA_44), nil)
	require.NoError(t, err)
	key := &tpm.Loadable{ID: "k", Parent: parent, Public: pub, Private: priv}
	defer e.Forget(key.ID)
	limit := 0
	for _, n := range []int{1024, 1025, 2048, 4096, 16384} {
		_, err := e.SignMessage(key, nil, make([]byte, n))
		if err != nil {
			var rc tpm2.TPMRC
			require.True(t, errors.As(err, &rc), "%d bytes: %v", n, err)
			t.Logf("a %d-byte message: %v", n, err)
			break
		}
		limit = n
	}
	t.Logf("fwTPM signs pure ML-DSA messages of up to %d bytes in one sequence (more: TPM_RC_MEMORY)", limit)
	require.GreaterOrEqual(t, limit, 1024)
}

// TestMLDSAVerifyInTPM: the TPM verifies what circl signed (a key made
// outside, loaded as a public key alone), and rejects a tampered message.
func TestMLDSAVerifyInTPM(t *testing.T) {
	e, _ := pqcEngine(t)
	pk, sk, err := mldsa65.GenerateKey(rand.Reader)
	require.NoError(t, err)
	pkb, _ := pk.MarshalBinary()
	msg, ctx := []byte("signed by circl"), []byte("c")
	sig := make([]byte, mldsa65.SignatureSize)
	require.NoError(t, mldsa65.SignTo(sk, msg, ctx, true, sig))

	p := tpm.MLDSAKeyTemplate(tpm.MLDSA_65)
	p.Attributes = tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true}
	p.Unique = pkb
	h, err := e.LoadExternalPQC(p)
	require.NoError(t, err)
	defer e.FlushHandle(h.Handle)
	for _, c := range []struct {
		msg []byte
		ok  bool
	}{{msg, true}, {[]byte("signed by circL"), false}} {
		s, err := e.VerifySequenceStart(h, ctx)
		require.NoError(t, err)
		require.NoError(t, e.SequenceUpdate(s, c.msg))
		v, err := e.VerifySequenceComplete(s, h, &tpm.PQCSignature{Alg: tpm.AlgMLDSA, Sig: sig})
		if c.ok {
			require.NoError(t, err)
			require.Equal(t, uint16(0x8026), v.Tag) // TPM_ST_MESSAGE_VERIFIED
		} else {
			require.ErrorIs(t, err, tpm2.TPMRCSignature)
			e.FlushSequence(s) // a failed complete may leave the sequence
		}
	}
}

// TestHashMLDSA: a HashML-DSA key signs a digest (TPM2_SignDigest) and a
// message the TPM hashes (a sign sequence); the TPM's own verification
// accepts both and rejects a tampered digest. (No independent HashML-DSA
// verifier is at hand: circl implements pure ML-DSA only.)
func TestHashMLDSA(t *testing.T) {
	e, parent := pqcEngine(t)
	for _, ps := range []tpm.MLDSAParams{tpm.MLDSA_44, tpm.MLDSA_65, tpm.MLDSA_87} {
		t.Run(ps.String(), func(t *testing.T) {
			tmpl := tpm.HashMLDSAKeyTemplate(ps, tpm2.TPMAlgSHA256)
			pub, priv, err := e.CreatePQC(parent, tmpl, nil)
			require.NoError(t, err)
			key := &tpm.Loadable{ID: ps.String(), Parent: parent, Public: pub, Private: priv}
			defer e.Forget(key.ID)
			p, err := tpm.PublicOf(pub)
			require.NoError(t, err)
			msg := []byte("pre-hashed")
			d := sha256.Sum256(msg)
			sig1, err := e.SignDigest(key, []byte("ctx"), d[:])
			require.NoError(t, err)
			require.Equal(t, tpm.AlgHashMLDSA, sig1.Alg)
			require.Equal(t, tpm2.TPMAlgSHA256, sig1.Hash)
			require.Len(t, sig1.Sig, ps.SignatureSize())
			sig2, err := e.SignMessage(key, []byte("ctx"), msg)
			require.NoError(t, err)

			// Verified with the public key alone (the NULL hierarchy: a
			// NULL ticket) and with the key itself (a ticket of the owner
			// hierarchy, naming the hash).
			ext := *p
			ext.Attributes = tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true}
			xh, err := e.LoadExternalPQC(&ext)
			require.NoError(t, err)
			defer e.FlushHandle(xh.Handle)
			kh, err := e.Handle(key)
			require.NoError(t, err)
			for i, sig := range []*tpm.PQCSignature{sig1, sig2} {
				for _, h := range []tpm2.NamedHandle{xh, kh} {
					v, err := e.VerifyDigestSignature(h, []byte("ctx"), d[:], sig)
					require.NoError(t, err, "signature %d", i)
					require.Equal(t, uint16(0x8027), v.Tag) // TPM_ST_DIGEST_VERIFIED
					if h.Handle == kh.Handle {
						require.Equal(t, tpm2.TPMRHOwner, v.Hierarchy)
						require.Equal(t, tpm2.TPMAlgSHA256, v.Meta)
						require.NotEmpty(t, v.HMAC)
					}
					bad := d
					bad[0] ^= 1
					_, err = e.VerifyDigestSignature(h, []byte("ctx"), bad[:], sig)
					require.ErrorIs(t, err, tpm2.TPMRCSignature)
				}
			}
		})
	}
}

// encapsulator encapsulates to an ML-KEM public key in software: Go's
// crypto/mlkem for 768 and 1024, circl for 512 (which Go does not have).
func encapsulate(t *testing.T, ps tpm.MLKEMParams, ek []byte) (secret, ct []byte) {
	t.Helper()
	switch ps {
	case tpm.MLKEM_512:
		pk, err := mlkem512.Scheme().UnmarshalBinaryPublicKey(ek)
		require.NoError(t, err)
		ct, ss, err := mlkem512.Scheme().Encapsulate(pk)
		require.NoError(t, err)
		return ss, ct
	case tpm.MLKEM_768:
		k, err := mlkem.NewEncapsulationKey768(ek)
		require.NoError(t, err)
		ss, ct := k.Encapsulate()
		return ss, ct
	case tpm.MLKEM_1024:
		k, err := mlkem.NewEncapsulationKey1024(ek)
		require.NoError(t, err)
		ss, ct := k.Encapsulate()
		return ss, ct
	}
	t.Fatalf("no parameter set %v", ps)
	return nil, nil
}

func TestMLKEMDecapsulateInTPM(t *testing.T) {
	e, parent := pqcEngine(t)
	for _, ps := range []tpm.MLKEMParams{tpm.MLKEM_512, tpm.MLKEM_768, tpm.MLKEM_1024} {
		t.Run(ps.String(), func(t *testing.T) {
			pub, priv, err := e.CreatePQC(parent, tpm.MLKEMKeyTemplate(ps), nil)
			require.NoError(t, err)
			key := &tpm.Loadable{ID: ps.String(), Parent: parent, Public: pub, Private: priv}
			defer e.Forget(key.ID)
			p, err := tpm.PublicOf(pub)
			require.NoError(t, err)
			require.Equal(t, tpm.AlgMLKEM, p.Type)
			require.Len(t, p.Unique, ps.PublicKeySize())

			for i := range 3 {
				secret, ct := encapsulate(t, ps, p.Unique)
				require.Len(t, ct, ps.CiphertextSize())
				got, err := e.Decapsulate(key, ct)
				require.NoError(t, err)
				require.Equal(t, secret, got, "round %d: the TPM decapsulates Go's ciphertext to another secret", i)
				// A tampered ciphertext decapsulates (implicit rejection) to
				// something else.
				ct[len(ct)/2] ^= 1
				other, err := e.Decapsulate(key, ct)
				require.NoError(t, err)
				require.Len(t, other, tpm.MLSharedSecretSize)
				require.NotEqual(t, secret, other)
			}
			// TPM2_Encapsulate: the TPM's ciphertext decapsulates to its secret.
			secret, ct, err := e.Encapsulate(key)
			require.NoError(t, err)
			require.Len(t, ct, ps.CiphertextSize())
			got, err := e.Decapsulate(key, ct)
			require.NoError(t, err)
			require.Equal(t, secret, got)
			// A ciphertext of the wrong size is the TPM's error, not a secret.
			_, err = e.Decapsulate(key, ct[:len(ct)-1])
			var rc tpm2.TPMRC
			require.True(t, errors.As(err, &rc), "%v", err)
		})
	}
}
