package mech

import (
	"crypto"
	"crypto/aes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
)

// These tests need no TPM: they check mechanism knowledge against Go's
// crypto and published vectors.

func TestHashTable(t *testing.T) {
	for _, h := range Hashes {
		require.Equal(t, h, HashOf(h.Digest))
		require.Equal(t, h, HashOfMGF(h.MGF))
		require.Equal(t, h, HashOfKDF(h.KDF))
		d := make([]byte, h.Size())
		got, digest := SplitDigestInfo(append(append([]byte{}, h.DigestInfo...), d...))
		require.Equal(t, h, got)
		require.Equal(t, d, digest)
	}
	require.Nil(t, HashOfKDF(ck.CKD_NULL))
	require.False(t, HashOf(ck.CKM_SHA224).InTPM())
}

func TestCurveTable(t *testing.T) {
	for _, c := range Curves {
		require.Equal(t, c, CurveOf(c.Params))
		require.Equal(t, c, CurveOfTPM(c.TPM))
		require.Equal(t, c, CurveNamed(c.Name))
		require.Equal(t, c.Go.Params().BitSize, c.Bits)
		require.Equal(t, (c.Bits+7)/8, c.Bytes)
		var oid asn1.ObjectIdentifier
		rest, err := asn1.Unmarshal(c.Params, &oid)
		require.NoError(t, err)
		require.Empty(t, rest)
	}
}

// rawSign is the private RSA operation, as the TPM does it for RSARawCall.
func rawSign(k *rsa.PrivateKey, block []byte) []byte {
	return new(big.Int).Exp(new(big.Int).SetBytes(block), k.D, k.N).FillBytes(make([]byte, k.Size()))
}

func TestRSASignaturePlansVerifyWithGo(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	key := Key{Type: ck.CKK_RSA, ModulusBits: 2048}
	digest := sha256.Sum256([]byte("message"))

	// SHA-224 is not in TPMs: the block is encoded here, and Go verifies it.
	s, err := NewSignature(Mechanism{Type: ck.CKM_SHA224_RSA_PKCS}, key)
	require.NoError(t, err)
	in := s.NewInput()
	require.NoError(t, in.Write([]byte("message")))
	call, err := s.Plan(in.Value())
	require.NoError(t, err)
	raw := call.(RSARawCall)
	sig := rawSign(k, raw.Block)
	h224 := crypto.SHA224.New()
	h224.Write([]byte("message"))
	require.NoError(t, rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA224, h224.Sum(nil), sig))
	require.NoError(t, s.Verify(&k.PublicKey, in.Value(), sig))

	// PSS with a salt length the TPM does not make: encoded here.
	pss := Mechanism{Type: ck.CKM_RSA_PKCS_PSS, Param: PSSParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256, SaltLen: 20}}
	s, err = NewSignature(pss, key)
	require.NoError(t, err)
	call, err = s.Plan(digest[:])
	require.NoError(t, err)
	sig = rawSign(k, call.(RSARawCall).Block)
	require.NoError(t, rsa.VerifyPSS(&k.PublicKey, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: 20}))
	require.NoError(t, s.Verify(&k.PublicKey, digest[:], sig))
	sig[5] ^= 1
	require.Equal(t, ck.CKR_SIGNATURE_INVALID, ck.ToRV(s.Verify(&k.PublicKey, digest[:], sig)))

	// PSS with salt = hash length and CKM_RSA_PKCS over a DigestInfo go to the TPM's own schemes.
	pss.Param = PSSParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256, SaltLen: 32}
	s, _ = NewSignature(pss, key)
	call, _ = s.Plan(digest[:])
	require.IsType(t, &SignCall{}, call)
	s, _ = NewSignature(Mechanism{Type: ck.CKM_RSA_PKCS}, key)
	call, _ = s.Plan(append(append([]byte{}, HashOf(ck.CKM_SHA256).DigestInfo...), digest[:]...))
	require.Equal(t, digest[:], call.(*SignCall).Digest)

	// Bad parameters.
	pss.Param = PSSParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA1, SaltLen: 32}
	_, err = NewSignature(pss, key)
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, ck.ToRV(err))
	_, err = NewSignature(Mechanism{Type: ck.CKM_ECDSA}, key)
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, ck.ToRV(err))
	_, err = NewSignature(Mechanism{Type: ck.CKM_RSA_PKCS, Param: Bytes{1}}, key)
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, ck.ToRV(err))
}

// A 512-bit RSA signature verifies: certificates may carry small keys, and
// Go's crypto/rsa refuses them.
func TestSmallRSAKeyVerifies(t *testing.T) {
	var p, q *big.Int
	e := big.NewInt(65537)
	for {
		p, _ = rand.Prime(rand.Reader, 256)
		q, _ = rand.Prime(rand.Reader, 256)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, big.NewInt(1)), new(big.Int).Sub(q, big.NewInt(1)))
		n := new(big.Int).Mul(p, q)
		if d := new(big.Int).ModInverse(e, phi); d != nil && n.BitLen() == 512 {
			k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: 65537}, D: d, Primes: []*big.Int{p, q}}
			s, err := NewSignature(Mechanism{Type: ck.CKM_SHA256_RSA_PKCS}, KeyOf(&k.PublicKey))
			require.NoError(t, err)
			digest := sha256.Sum256([]byte("small"))
			block, err := PKCS1SignBlock(append(append([]byte{}, HashOf(ck.CKM_SHA256).DigestInfo...), digest[:]...), 64)
			require.NoError(t, err)
			sig := rawSign(k, block)
			require.NoError(t, s.Verify(&k.PublicKey, digest[:], sig))
			sig[0] ^= 0x40
			require.Equal(t, ck.CKR_SIGNATURE_INVALID, ck.ToRV(s.Verify(&k.PublicKey, digest[:], sig)))
			return
		}
	}
}

func TestOAEPDecodeMatchesGo(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for _, h := range Hashes {
		c, err := NewRSACipher(Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: OAEPParams{HashAlg: h.Digest, MGF: h.MGF, Source: ck.CKZ_DATA_SPECIFIED, Label: []byte("L")}})
		require.NoError(t, err)
		ct, err := c.Encrypt(&k.PublicKey, []byte("secret"))
		require.NoError(t, err)
		em := new(big.Int).Exp(new(big.Int).SetBytes(ct), k.D, k.N).FillBytes(make([]byte, 256))
		pt, err := c.Unpad(em)
		require.NoError(t, err, h.Hash)
		require.Equal(t, []byte("secret"), pt)
		em[100] ^= 1
		_, err = c.Unpad(em)
		require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, ck.ToRV(err))
	}
	require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, ck.ToRV(CheckCiphertext(&k.PublicKey, k.N.Bytes())))
	require.Equal(t, ck.CKR_ENCRYPTED_DATA_LEN_RANGE, ck.ToRV(CheckCiphertext(&k.PublicKey, make([]byte, 255))))
}

func TestECDSAPlanTruncatesLongDigests(t *testing.T) {
	c := CurveNamed("p256")
	s, err := NewSignature(Mechanism{Type: ck.CKM_ECDSA}, Key{Type: ck.CKK_EC, Curve: c})
	require.NoError(t, err)
	require.Equal(t, 64, s.Len())
	require.False(t, s.MultiPart())
	long := make([]byte, 64)
	long[0] = 0xff
	call, err := s.Plan(long)
	require.NoError(t, err)
	require.Equal(t, long[:32], call.(*SignCall).Digest) // leftmost 256 bits
	_, err = s.Plan(nil)
	require.Equal(t, ck.CKR_DATA_LEN_RANGE, ck.ToRV(err))
}

// ANSI X9.63 KDF, SHA-256, from the NIST CAVS vectors.
func TestX963KDF(t *testing.T) {
	z, _ := hex.DecodeString("96c05619d56c328ab95fe84b18264b08725b85e33fd34f08")
	want, _ := hex.DecodeString("443024c3dae66b95e6f5670601558f71")
	require.Equal(t, want, X963KDF(HashOf(ck.CKM_SHA256), z, nil, 16))
	require.Equal(t, z[:5], X963KDF(nil, z, nil, 5))
}

func TestECDH1Params(t *testing.T) {
	c := CurveNamed("p384")
	peer, _ := ecdh.P384().GenerateKey(rand.Reader)
	wrapped, _ := asn1.Marshal(peer.PublicKey().Bytes())
	for _, pub := range [][]byte{peer.PublicKey().Bytes(), wrapped} {
		e, err := NewECDH1(Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: ECDH1Params{KDF: ck.CKD_SHA256_KDF, PublicData: pub}}, c)
		require.NoError(t, err)
		x, _ := e.PeerXY()
		require.Equal(t, peer.PublicKey().Bytes()[1:49], x)
	}
	off := peer.PublicKey().Bytes()
	off[10] ^= 1
	_, err := NewECDH1(Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: ECDH1Params{KDF: ck.CKD_NULL, PublicData: off}}, c)
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, ck.ToRV(err))
	_, err = NewECDH1(Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: ECDH1Params{KDF: ck.CKD_NULL, SharedData: []byte{1}, PublicData: peer.PublicKey().Bytes()}}, c)
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, ck.ToRV(err))
}

func TestImportParsing(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	// Only n, e and d: a prime is recovered.
	r, err := ParseRSAImport(k.N.Bytes(), big.NewInt(65537).Bytes(), k.D.Bytes(), nil)
	require.NoError(t, err)
	require.Zero(t, new(big.Int).Mod(k.N, r.Prime).Sign())
	_, err = ParseRSAImport(k.N.Bytes(), []byte{1, 0, 1}, nil, big.NewInt(7).Bytes())
	require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, ck.ToRV(err))

	ek, _ := ecdsa.GenerateKey(CurveNamed("p521").Go, rand.Reader)
	imp, err := ParseECImport(CurveNamed("p521").Params, ek.D.Bytes())
	require.NoError(t, err)
	require.Equal(t, ek.X.FillBytes(make([]byte, 66)), imp.X)
	_, err = ParseECImport([]byte{6, 1, 1}, ek.D.Bytes())
	require.Equal(t, ck.CKR_CURVE_NOT_SUPPORTED, ck.ToRV(err))
}

func TestAESChaining(t *testing.T) {
	iv := make([]byte, 16)
	a, err := NewAES(Mechanism{Type: ck.CKM_AES_CBC_PAD, Param: Bytes(iv)}, true)
	require.NoError(t, err)
	// Decrypting CBC_PAD holds the last whole block back for the final part.
	require.Equal(t, 16, a.UpdateLen(32))
	require.Len(t, a.Update(make([]byte, 32)), 16)
	n, exact, err := a.FinalLen()
	require.NoError(t, err)
	require.Equal(t, 16, n)
	require.False(t, exact)
	out, err := a.Last(append(make([]byte, 12), 4, 4, 4, 4))
	require.NoError(t, err)
	require.Len(t, out, 12)
	_, err = a.Last(append(make([]byte, 12), 4, 4, 4, 5))
	require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, ck.ToRV(err))

	e, _ := NewAES(Mechanism{Type: ck.CKM_AES_CBC_PAD, Param: Bytes(iv)}, false)
	n, exact, _ = e.OneShotLen(16)
	require.Equal(t, 32, n)
	require.True(t, exact)
	_, err = NewAES(Mechanism{Type: ck.CKM_AES_CBC, Param: Bytes(iv[:8])}, false)
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, ck.ToRV(err))
	ctr, err := NewAES(Mechanism{Type: ck.CKM_AES_CTR, Param: CTRParams{CounterBits: 8, Block: [16]byte{15: 0xfe}}}, false)
	require.NoError(t, err)
	require.NoError(t, ctr.CheckCounter(16))
	require.Equal(t, ck.CKR_DATA_LEN_RANGE, ck.ToRV(ctr.CheckCounter(48)))
}

func TestParamKinds(t *testing.T) {
	require.Equal(t, ParamPSS, ParamKindOf(ck.CKM_SHA384_RSA_PKCS_PSS))
	require.Equal(t, ParamOAEP, ParamKindOf(ck.CKM_RSA_PKCS_OAEP))
	require.Equal(t, ParamECDH1, ParamKindOf(ck.CKM_ECDH1_DERIVE))
	require.Equal(t, ParamCTR, ParamKindOf(ck.CKM_AES_CTR))
	require.Equal(t, ParamBytes, ParamKindOf(ck.CKM_AES_CBC))
}

// The info table covers every signature, cipher and digest mechanism.
func TestInfoTable(t *testing.T) {
	all := func(KeyKind) (uint64, uint64) { return 1, 2 }
	for m := range signatures {
		info, err := InfoOf(m, all)
		require.NoError(t, err, "0x%x", m)
		require.NotZero(t, info.Flags&ck.CKF_SIGN, "0x%x", m)
	}
	for _, m := range []ck.MechType{ck.CKM_ECDSA, ck.CKM_AES_CTR, ck.CKM_SHA224, ck.CKM_RSA_PKCS_OAEP, ck.CKM_ECDH1_DERIVE} {
		require.Contains(t, List(all), m)
	}
	none := func(k KeyKind) (uint64, uint64) { return 0, 0 }
	require.NotContains(t, List(none), ck.CKM_ECDSA)
	require.Contains(t, List(none), ck.CKM_SHA256)
}

// Sign-recover blocks come back out of verify-recover, and a tampered
// signature does not.
func TestRecover(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	for _, m := range []ck.MechType{ck.CKM_RSA_PKCS, ck.CKM_RSA_X_509} {
		s, err := NewSignature(Mechanism{Type: m}, KeyOf(&k.PublicKey))
		require.NoError(t, err)
		require.True(t, s.Recoverable())
		call, err := s.RecoverPlan([]byte("recover me"))
		require.NoError(t, err)
		sig := rawSign(k, call.(RSARawCall).Block)
		got, err := s.Recover(&k.PublicKey, sig)
		require.NoError(t, err)
		if m == ck.CKM_RSA_PKCS {
			require.Equal(t, []byte("recover me"), got)
		} else {
			require.Equal(t, LeftPad([]byte("recover me"), 128), got)
		}
	}
	s, _ := NewSignature(Mechanism{Type: ck.CKM_RSA_PKCS}, KeyOf(&k.PublicKey))
	_, err = s.Recover(&k.PublicKey, rawSign(k, append([]byte{0, 2}, make([]byte, 126)...)))
	require.Equal(t, ck.CKR_SIGNATURE_INVALID, ck.ToRV(err))
	s, _ = NewSignature(Mechanism{Type: ck.CKM_SHA256_RSA_PKCS}, KeyOf(&k.PublicKey))
	require.False(t, s.Recoverable())
}

// AES key wrap against the RFCs' own vectors, with Go's AES as the block.
func TestKeyWrapVectors(t *testing.T) {
	goBlock := func(kek []byte) Block {
		c, err := aes.NewCipher(kek)
		require.NoError(t, err)
		return func(in []byte, decrypt bool) ([]byte, error) {
			out := make([]byte, 16)
			if decrypt {
				c.Decrypt(out, in)
			} else {
				c.Encrypt(out, in)
			}
			return out, nil
		}
	}
	h := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	// RFC 3394 4.1: 128 bits of key data with a 128-bit KEK.
	b := goBlock(h("000102030405060708090A0B0C0D0E0F"))
	w, err := KeyWrap(ck.CKM_AES_KEY_WRAP, b, h("00112233445566778899AABBCCDDEEFF"))
	require.NoError(t, err)
	require.Equal(t, h("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"), w)
	p, err := KeyUnwrap(ck.CKM_AES_KEY_WRAP, b, w)
	require.NoError(t, err)
	require.Equal(t, h("00112233445566778899AABBCCDDEEFF"), p)
	w[3] ^= 1
	_, err = KeyUnwrap(ck.CKM_AES_KEY_WRAP, b, w)
	require.Equal(t, ck.CKR_WRAPPED_KEY_INVALID, ck.ToRV(err))
	// RFC 5649 6: 20 octets and 7 octets with a 192-bit KEK.
	b = goBlock(h("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"))
	for _, v := range [][2]string{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		w, err := KeyWrap(ck.CKM_AES_KEY_WRAP_KWP, b, h(v[0]))
		require.NoError(t, err)
		require.Equal(t, h(v[1]), w)
		require.Equal(t, len(w), WrappedLen(ck.CKM_AES_KEY_WRAP_KWP, len(h(v[0]))))
		p, err := KeyUnwrap(ck.CKM_AES_KEY_WRAP_KWP, b, w)
		require.NoError(t, err)
		require.Equal(t, h(v[0]), p)
	}
}

// KeyOf describes a Go public key, as the token describes its own keys.
func KeyOf(pub any) Key {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return Key{Type: ck.CKK_RSA, ModulusBits: p.N.BitLen()}
	case *ecdsa.PublicKey:
		return Key{Type: ck.CKK_EC, Curve: CurveOfGo(p.Curve)}
	}
	return Key{Type: ^ck.KeyType(0)}
}
