package tpmtoken_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/binary"
	"hash"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

func randb(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// cryptAll runs a one-shot C_Encrypt/C_Decrypt after a length query.
func cryptAll(t *testing.T, init func() error, do func([]byte, int, bool) ([]byte, int, error), in []byte) []byte {
	t.Helper()
	require.NoError(t, init())
	_, n, err := do(in, 0, true)
	require.NoError(t, err)
	out, _, err := do(in, n, false)
	require.NoError(t, err)
	return out
}

// cryptParts feeds in in uneven parts through Update, then Final.
func cryptParts(t *testing.T, init func() error, update func([]byte, int, bool) ([]byte, int, error), final func(int, bool) ([]byte, int, error), in []byte) []byte {
	t.Helper()
	require.NoError(t, init())
	var out []byte
	for len(in) > 0 {
		k := min(len(in), 7+len(in)%300)
		_, n, err := update(in[:k], 0, true)
		require.NoError(t, err)
		o, _, err := update(in[:k], n, false)
		require.NoError(t, err)
		out = append(out, o...)
		in = in[k:]
	}
	_, n, err := final(0, true)
	require.NoError(t, err)
	o, _, err := final(n, false)
	require.NoError(t, err)
	return append(out, o...)
}

func pkcs7(b []byte) []byte {
	p := 16 - len(b)%16
	for i := 0; i < p; i++ {
		b = append(b, byte(p))
	}
	return b
}

// goAES is the reference: Go's crypto/cipher in the same mode.
func goAES(t *testing.T, key []byte, m ck.MechType, iv, in []byte) []byte {
	blk, err := aes.NewCipher(key)
	require.NoError(t, err)
	out := make([]byte, len(in))
	switch m {
	case ck.CKM_AES_ECB:
		for i := 0; i < len(in); i += 16 {
			blk.Encrypt(out[i:], in[i:])
		}
	case ck.CKM_AES_CBC:
		cipher.NewCBCEncrypter(blk, iv).CryptBlocks(out, in)
	case ck.CKM_AES_CBC_PAD:
		in = pkcs7(append([]byte{}, in...))
		out = make([]byte, len(in))
		cipher.NewCBCEncrypter(blk, iv).CryptBlocks(out, in)
	case ck.CKM_AES_CTR:
		cipher.NewCTR(blk, iv).XORKeyStream(out, in)
	case ck.CKM_AES_OFB:
		cipher.NewOFB(blk, iv).XORKeyStream(out, in)
	case ck.CKM_AES_CFB128:
		cipher.NewCFBEncrypter(blk, iv).XORKeyStream(out, in)
	}
	return out
}

// AES keys in the TPM encrypt and decrypt in every mode, one-shot and in
// parts, longer than one TPM buffer; results equal Go's crypto/cipher.
func TestAESModesAgainstGoCrypto(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	for _, size := range []int{16, 32} {
		value := randb(size)
		key, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
			{ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_VALUE, value}, {ck.CKA_TOKEN, boolAttr(true)}})
		require.NoError(t, err)
		res, err := l.GetAttributeValue(h, key, []ck.AttributeType{ck.CKA_VALUE, ck.CKA_VALUE_LEN, ck.CKA_LOCAL})
		require.NoError(t, err)
		require.Equal(t, ck.CKR_ATTRIBUTE_SENSITIVE, res[0].RV)
		require.Equal(t, ulong(uint64(size)), res[1].Value)
		require.Equal(t, []byte{0}, res[2].Value)
		gen, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN},
			[]tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(uint64(size))}})
		require.NoError(t, err)
		for _, m := range []ck.MechType{ck.CKM_AES_ECB, ck.CKM_AES_CBC, ck.CKM_AES_CBC_PAD, ck.CKM_AES_CTR, ck.CKM_AES_OFB, ck.CKM_AES_CFB128} {
			for _, n := range []int{16, 48, 2064, 2077, 5} {
				block := m == ck.CKM_AES_ECB || m == ck.CKM_AES_CBC
				if block && n%16 != 0 {
					continue
				}
				pt, iv := randb(n), randb(16)
				mm := tpmtoken.Mechanism{Type: m, Param: mech.Bytes(iv)}
				if m == ck.CKM_AES_ECB {
					mm.Param = nil
				}
				if m == ck.CKM_AES_CTR {
					mm.Param = mech.CTRParams{CounterBits: 128, Block: [16]byte(iv)}
				}
				want := goAES(t, value, m, iv, pt)
				encInit := func() error { return l.EncryptInit(h, mm, key) }
				decInit := func() error { return l.DecryptInit(h, mm, key) }
				enc := func(in []byte, c int, q bool) ([]byte, int, error) { return encrypt(l, h, in, c, q) }
				dec := func(in []byte, c int, q bool) ([]byte, int, error) { return decrypt(l, h, in, c, q) }
				encU := func(in []byte, c int, q bool) ([]byte, int, error) { return encryptUpdate(l, h, in, c, q) }
				decU := func(in []byte, c int, q bool) ([]byte, int, error) { return decryptUpdate(l, h, in, c, q) }
				encF := func(c int, q bool) ([]byte, int, error) { return encryptFinal(l, h, c, q) }
				decF := func(c int, q bool) ([]byte, int, error) { return decryptFinal(l, h, c, q) }
				require.Equal(t, want, cryptAll(t, encInit, enc, pt), "mech 0x%x len %d one-shot", m, n)
				require.Equal(t, want, cryptParts(t, encInit, encU, encF, pt), "mech 0x%x len %d parts", m, n)
				require.Equal(t, pt, cryptAll(t, decInit, dec, want), "mech 0x%x len %d decrypt", m, n)
				require.Equal(t, pt, cryptParts(t, decInit, decU, decF, want), "mech 0x%x len %d decrypt parts", m, n)
				// The generated key (value unknown to anyone) round-trips.
				ct := cryptAll(t, func() error { return l.EncryptInit(h, mm, gen) }, enc, pt)
				require.Equal(t, pt, cryptAll(t, func() error { return l.DecryptInit(h, mm, gen) }, dec, ct))
			}
		}
		// Block modes refuse partial blocks; CBC_PAD refuses bad padding.
		require.NoError(t, l.EncryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CBC, Param: mech.Bytes(randb(16))}, key))
		_, _, err = encrypt(l, h, randb(17), 0, true)
		require.Equal(t, ck.CKR_DATA_LEN_RANGE, rv(err))
		require.NoError(t, l.DecryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CBC_PAD, Param: mech.Bytes(randb(16))}, key))
		_, _, err = decrypt(l, h, goAES(t, value, ck.CKM_AES_CBC, make([]byte, 16), make([]byte, 32)), 32, false)
		require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, rv(err))
		require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(l.EncryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CBC, Param: mech.Bytes(randb(8))}, key)))
	}
	_, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN}, []tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(24)}})
	require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(err), "swtpm has no AES-192")
}

// HMAC keys in the TPM: TPM2_HMAC for short data, an HMAC sequence for long;
// results equal Go's crypto/hmac; C_Verify checks them.
func TestHMACAgainstGoCrypto(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	value := randb(40)
	key, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
		{ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)}, {ck.CKA_VALUE, value}, {ck.CKA_SIGN, boolAttr(true)}})
	require.NoError(t, err)
	for m, hf := range map[ck.MechType]func() hash.Hash{ck.CKM_SHA_1_HMAC: sha1.New, ck.CKM_SHA256_HMAC: sha256.New,
		ck.CKM_SHA384_HMAC: sha512.New384, ck.CKM_SHA512_HMAC: sha512.New} {
		for _, n := range []int{0, 100, 3000} {
			msg := randb(n)
			mac := hmac.New(hf, value)
			mac.Write(msg)
			want := mac.Sum(nil)
			require.Equal(t, want, signWith(t, l, h, key, m, msg), "mech 0x%x len %d", m, n)
			require.NoError(t, l.SignInit(h, tpmtoken.Mechanism{Type: m}, key))
			require.NoError(t, l.SignUpdate(h, msg[:n/2]))
			require.NoError(t, l.SignUpdate(h, msg[n/2:]))
			got, _, err := signFinal(l, h, 64, false)
			require.NoError(t, err)
			require.Equal(t, want, got)
			require.NoError(t, l.VerifyInit(h, tpmtoken.Mechanism{Type: m}, key))
			require.NoError(t, l.Verify(h, msg, want))
			want[0] ^= 1
			require.NoError(t, l.VerifyInit(h, tpmtoken.Mechanism{Type: m}, key))
			require.Equal(t, ck.CKR_SIGNATURE_INVALID, rv(l.Verify(h, msg, want)))
		}
	}
	// A key longer than SHA-256's block (the TPM then needs a wider name hash).
	long := randb(100)
	lk, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
		{ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)}, {ck.CKA_VALUE, long}})
	require.NoError(t, err)
	mac := hmac.New(sha256.New, long)
	mac.Write([]byte("long key"))
	require.Equal(t, mac.Sum(nil), signWith(t, l, h, lk, ck.CKM_SHA256_HMAC, []byte("long key")))

	// Keys made in the TPM: lengths it makes itself and others from its RNG.
	for _, n := range []uint64{32, 64, 20} {
		gen, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_GENERIC_SECRET_KEY_GEN},
			[]tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(n)}, {ck.CKA_TOKEN, boolAttr(true)}})
		require.NoError(t, err)
		sig := signWith(t, l, h, gen, ck.CKM_SHA256_HMAC, []byte("x"))
		require.NoError(t, l.VerifyInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256_HMAC}, gen))
		require.NoError(t, l.Verify(h, []byte("x"), sig))
	}
	// An AES key cannot HMAC; a token key cannot be readable.
	aesKey, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN}, []tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(16)}})
	require.NoError(t, err)
	require.Equal(t, ck.CKR_KEY_TYPE_INCONSISTENT, rv(l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256_HMAC}, aesKey)))
	_, err = l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_GENERIC_SECRET_KEY_GEN},
		[]tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(32)}, {ck.CKA_TOKEN, boolAttr(true)}, {ck.CKA_SENSITIVE, boolAttr(false)},
			{ck.CKA_EXTRACTABLE, boolAttr(true)}})
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))
	// Not sensitive but not extractable: allowed, and still unreadable.
	k, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_GENERIC_SECRET_KEY_GEN},
		[]tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(32)}, {ck.CKA_TOKEN, boolAttr(true)}, {ck.CKA_SENSITIVE, boolAttr(false)}})
	require.NoError(t, err)
	res, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	require.Equal(t, ck.CKR_ATTRIBUTE_SENSITIVE, res[0].RV)
}

func refKDF(z, shared []byte, n int) []byte {
	var out []byte
	for i := uint32(1); len(out) < n; i++ {
		d := sha256.New()
		d.Write(z)
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], i)
		d.Write(c[:])
		d.Write(shared)
		out = d.Sum(out)
	}
	return out[:n]
}

func ecdhParams(kdf ck.KDF, shared, public []byte) mech.ECDH1Params {
	return mech.ECDH1Params{KDF: kdf, SharedData: shared, PublicData: public}
}

// ECDH in the TPM agrees with Go's crypto/ecdh, with the NULL KDF and
// SHA-256 KDF; the derived key can be a readable session key or a
// sensitive AES key that then encrypts as Go expects. The same for
// CKM_ECDH1_COFACTOR_DERIVE: on the curves a TPM has (cofactor 1) it is
// ECDH1_DERIVE, but a key whose CKA_ALLOWED_MECHANISMS names only
// ECDH1_DERIVE refuses it.
func TestECDHAgainstGoCrypto(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	ecdhMechs := []ck.MechType{ck.CKM_ECDH1_DERIVE, ck.CKM_ECDH1_COFACTOR_DERIVE}
	for _, m := range ecdhMechs {
		info, err := l.MechanismInfo(0, m)
		require.NoError(t, err)
		require.NotZero(t, info.Flags&ck.CKF_DERIVE, "%#x: CKF_DERIVE", m)
	}
	readable := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
		{ck.CKA_SENSITIVE, boolAttr(false)}, {ck.CKA_EXTRACTABLE, boolAttr(true)}}
	for _, c := range []struct {
		oid   []byte
		curve ecdh.Curve
	}{{oidP256, ecdh.P256()}, {oidP384, ecdh.P384()}, {oidP521, ecdh.P521()}} {
		pubH, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, c.oid}}, []tpmtoken.Attr{{ck.CKA_DERIVE, boolAttr(true)}})
		require.NoError(t, err)
		res, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_EC_POINT})
		require.NoError(t, err)
		var point []byte
		_, err = asn1.Unmarshal(res[0].Value, &point)
		require.NoError(t, err)
		tpmPub, err := c.curve.NewPublicKey(point)
		require.NoError(t, err)
		mine, err := c.curve.GenerateKey(rand.Reader)
		require.NoError(t, err)
		z, err := mine.ECDH(tpmPub)
		require.NoError(t, err)

		for _, m := range ecdhMechs {
			// NULL KDF, public value raw and DER-wrapped.
			wrapped, _ := asn1.Marshal(mine.PublicKey().Bytes())
			for _, pubv := range [][]byte{mine.PublicKey().Bytes(), wrapped} {
				k, err := l.DeriveKey(h, tpmtoken.Mechanism{Type: m, Param: ecdhParams(ck.CKD_NULL, nil, pubv)}, priv, readable)
				require.NoError(t, err)
				res, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
				require.NoError(t, err)
				require.Equal(t, z, res[0].Value, "%#x: NULL KDF: Go's shared secret", m)
			}
			// SHA-256 KDF with shared info into a sensitive AES-256 key.
			shared := []byte("shared info")
			k, err := l.DeriveKey(h, tpmtoken.Mechanism{Type: m, Param: ecdhParams(ck.CKD_SHA256_KDF, shared, mine.PublicKey().Bytes())}, priv,
				[]tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_VALUE_LEN, ulong(32)}})
			require.NoError(t, err)
			res, err = l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
			require.NoError(t, err)
			require.Equal(t, ck.CKR_ATTRIBUTE_SENSITIVE, res[0].RV)
			iv, pt := randb(16), randb(64)
			require.NoError(t, l.EncryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CBC, Param: mech.Bytes(iv)}, k))
			ct, _, err := encrypt(l, h, pt, 64, false)
			require.NoError(t, err)
			require.Equal(t, goAES(t, refKDF(z, shared, 32), ck.CKM_AES_CBC, iv, pt), ct, "%#x: SHA-256 KDF of Go's secret", m)
			// The SHA-256 KDF for a length not a digest's multiple, readable.
			withLen := append(append([]tpmtoken.Attr{}, readable...), tpmtoken.Attr{Type: ck.CKA_VALUE_LEN, Value: ulong(40)})
			k, err = l.DeriveKey(h, tpmtoken.Mechanism{Type: m, Param: ecdhParams(ck.CKD_SHA256_KDF, shared, mine.PublicKey().Bytes())}, priv, withLen)
			require.NoError(t, err)
			res, err = l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_VALUE})
			require.NoError(t, err)
			require.Equal(t, refKDF(z, shared, 40), res[0].Value, "%#x: 40 bytes of SHA-256 KDF", m)

			// A point not on the curve is refused.
			bad := append([]byte{}, mine.PublicKey().Bytes()...)
			bad[len(bad)-1] ^= 1
			_, err = l.DeriveKey(h, tpmtoken.Mechanism{Type: m, Param: ecdhParams(ck.CKD_NULL, nil, bad)}, priv, readable)
			require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(err), "%#x", m)
		}
	}
	// A key without CKA_DERIVE is refused.
	_, noDerive, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN}, []tpmtoken.Attr{{ck.CKA_EC_PARAMS, oidP256}}, nil)
	require.NoError(t, err)
	for _, m := range ecdhMechs {
		_, err = l.DeriveKey(h, tpmtoken.Mechanism{Type: m, Param: ecdhParams(ck.CKD_NULL, nil, randb(65))}, noDerive, nil)
		require.Equal(t, ck.CKR_KEY_FUNCTION_NOT_PERMITTED, rv(err), "%#x", m)
	}

	// A key allowed ECDH1_DERIVE alone refuses the cofactor mechanism.
	onlyPlain := make([]byte, 8)
	binary.NativeEndian.PutUint64(onlyPlain, uint64(ck.CKM_ECDH1_DERIVE))
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN}, []tpmtoken.Attr{{ck.CKA_EC_PARAMS, oidP256}},
		[]tpmtoken.Attr{{ck.CKA_DERIVE, boolAttr(true)}, {ck.CKA_ALLOWED_MECHANISMS, onlyPlain}})
	require.NoError(t, err)
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	_, err = l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_COFACTOR_DERIVE,
		Param: ecdhParams(ck.CKD_NULL, nil, eph.PublicKey().Bytes())}, priv, readable)
	require.Equal(t, ck.CKR_MECHANISM_INVALID, rv(err), "not among the key's allowed mechanisms")
	_, err = l.DeriveKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE,
		Param: ecdhParams(ck.CKD_NULL, nil, eph.PublicKey().Bytes())}, priv, readable)
	require.NoError(t, err, "ECDH1_DERIVE is")
}

// RSA encryption with a public key object (software) decrypts with Go's
// private key, and with the TPM's key for a TPM key pair.
func TestRSAEncrypt(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pub, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_RSA)},
		{ck.CKA_MODULUS, rk.N.Bytes()}, {ck.CKA_PUBLIC_EXPONENT, big.NewInt(int64(rk.E)).Bytes()}, {ck.CKA_ENCRYPT, boolAttr(true)}})
	require.NoError(t, err)
	label := []byte("label")
	oaep := tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256, Source: 1, Label: label}}
	msg := []byte("to Go")
	require.NoError(t, l.EncryptInit(h, oaep, pub))
	ct, _, err := encrypt(l, h, msg, 256, false)
	require.NoError(t, err)
	got, err := rsa.DecryptOAEP(sha256.New(), nil, rk, ct, label)
	require.NoError(t, err)
	require.Equal(t, msg, got)
	require.NoError(t, l.EncryptInit(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS}, pub))
	ct, _, err = encrypt(l, h, msg, 256, false)
	require.NoError(t, err)
	got, err = rsa.DecryptPKCS1v15(nil, rk, ct)
	require.NoError(t, err)
	require.Equal(t, msg, got)

	tpub, tpriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}, {ck.CKA_ENCRYPT, boolAttr(true)}}, []tpmtoken.Attr{{ck.CKA_DECRYPT, boolAttr(true)}})
	require.NoError(t, err)
	require.NoError(t, l.EncryptInit(h, oaep, tpub))
	ct, _, err = encrypt(l, h, msg, 256, false)
	require.NoError(t, err)
	require.NoError(t, l.DecryptInit(h, oaep, tpriv))
	got, _, err = decrypt(l, h, ct, 256, false)
	require.NoError(t, err)
	require.Equal(t, msg, got)
}
