package tpmtoken_test

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"strings"
	"testing"

	"github.com/pion/dtls/v4/pkg/crypto/ccm"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// unhexs is unhex of SP 800-38C's spaced hex.
func unhexs(s string) []byte { return unhex(strings.ReplaceAll(s, " ", "")) }

func ccmMech(dataLen int, nonce, aad []byte, macLen int) tpmtoken.Mechanism {
	return tpmtoken.Mechanism{Type: ck.CKM_AES_CCM, Param: mech.CCMParams{
		DataLen: ck.ULong(dataLen), Nonce: nonce, AAD: aad, MACLen: ck.ULong(macLen)}}
}

// importAES makes a token AES key of value in the TPM.
func importAES(t *testing.T, l *tpmtoken.Library, h uint64, value []byte) uint64 {
	t.Helper()
	key, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
		{ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_VALUE, value}})
	require.NoError(t, err)
	return key
}

// CKM_AES_CCM with the key in the TPM gives NIST SP 800-38C's example
// vectors C.1-C.4 (C.4: 64 KiB of AAD, the 0xfffe length encoding).
func TestCCMNISTVectors(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	key := importAES(t, l, h, unhex("404142434445464748494a4b4c4d4e4f"))
	c4aad := make([]byte, 65536)
	for i := range c4aad {
		c4aad[i] = byte(i)
	}
	for i, v := range []struct {
		nonce, aad, pt, ct []byte
		tag                int
	}{
		{unhex("10111213141516"), unhex("0001020304050607"), unhex("20212223"), unhexs("7162015b 4dac255d"), 4},
		{unhex("1011121314151617"), unhex("000102030405060708090a0b0c0d0e0f"), unhex("202122232425262728292a2b2c2d2e2f"),
			unhexs("d2a1f0e0 51ea5f62 081a7792 073d593d 1fc64fbf accd"), 6},
		{unhex("101112131415161718191a1b"), unhex("000102030405060708090a0b0c0d0e0f10111213"),
			unhex("202122232425262728292a2b2c2d2e2f3031323334353637"),
			unhexs("e3b201a9 f5b71a7a 9b1ceaec cd97e70b 6176aad9 a4428aa5 484392fb c1b09951"), 8},
		{unhex("101112131415161718191a1b1c"), c4aad, unhex("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"),
			unhexs("69915dad 1e84c637 6a68c296 7e4dab61 5ae0fd1f aec44cc4 84828529 463ccf72 b4ac6bec 93e8598e 7f0dadbc ea5b"), 14},
	} {
		m := ccmMech(len(v.pt), v.nonce, v.aad, v.tag)
		require.Equal(t, v.ct, cryptAll(t, func() error { return l.EncryptInit(h, m, key) },
			func(in []byte, c int, q bool) ([]byte, int, error) { return encrypt(l, h, in, c, q) }, v.pt), "C.%d", i+1)
		require.Equal(t, v.pt, cryptAll(t, func() error { return l.DecryptInit(h, m, key) },
			func(in []byte, c int, q bool) ([]byte, int, error) { return decrypt(l, h, in, c, q) }, v.ct), "C.%d decrypt", i+1)
	}
}

// CKM_AES_CCM against pion's CCM (not ours): both directions, AAD or none,
// every tag length, nonce lengths 7..13, empty to multi-buffer data, one
// part and many; a flipped bit of ciphertext, tag or AAD is
// CKR_ENCRYPTED_DATA_INVALID and no plaintext.
func TestCCMAgainstPion(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	enc := func(in []byte, c int, q bool) ([]byte, int, error) { return encrypt(l, h, in, c, q) }
	dec := func(in []byte, c int, q bool) ([]byte, int, error) { return decrypt(l, h, in, c, q) }
	encU := func(in []byte, c int, q bool) ([]byte, int, error) { return encryptUpdate(l, h, in, c, q) }
	decU := func(in []byte, c int, q bool) ([]byte, int, error) { return decryptUpdate(l, h, in, c, q) }
	encF := func(c int, q bool) ([]byte, int, error) { return encryptFinal(l, h, c, q) }
	decF := func(c int, q bool) ([]byte, int, error) { return decryptFinal(l, h, c, q) }
	for _, size := range []int{16, 32} {
		value := randb(size)
		key := importAES(t, l, h, value)
		blk, err := aes.NewCipher(value)
		require.NoError(t, err)
		i := 0
		for tag := 4; tag <= 16; tag += 2 {
			for _, n := range []int{0, 1, 16, 33, 1100, 3000} {
				i++
				nonceLen := 7 + i%7
				nonce, aad, pt := randb(nonceLen), randb([]int{0, 1, 20, 300}[i%4]), randb(n)
				ref, err := ccm.NewCCM(blk, tag, nonceLen)
				require.NoError(t, err)
				want := ref.Seal(nil, nonce, pt, aad)
				m := ccmMech(n, nonce, aad, tag)
				what := fmt.Sprintf("key %d tag %d nonce %d aad %d data %d", size, tag, nonceLen, len(aad), n)
				encInit := func() error { return l.EncryptInit(h, m, key) }
				decInit := func() error { return l.DecryptInit(h, m, key) }
				got := cryptAll(t, encInit, enc, pt)
				require.Equal(t, want, got, what)
				require.Equal(t, want, cryptParts(t, encInit, encU, encF, pt), what+" parts")
				// Ours decrypts theirs, pion opens ours (equal, but say it both ways).
				back, err := ref.Open(nil, nonce, got, aad)
				require.NoError(t, err)
				require.Equal(t, string(pt), string(back)) // nil and empty alike
				require.Equal(t, string(pt), string(cryptAll(t, decInit, dec, want)), what+" decrypt")
				require.Equal(t, string(pt), string(cryptParts(t, decInit, decU, decF, want)), what+" decrypt parts")

				// Tampering: one bit of the ciphertext or tag, or of the AAD.
				for _, bit := range []int{0, 8*len(want) - 1, 8 * n} {
					if bit/8 >= len(want) {
						continue
					}
					bad := append([]byte{}, want...)
					bad[bit/8] ^= 1 << (bit % 8)
					require.NoError(t, decInit())
					out, _, err := decrypt(l, h, bad, len(pt), false)
					require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, rv(err), what+" bit %d", bit)
					require.Nil(t, out)
					_, err = ref.Open(nil, nonce, bad, aad)
					require.Error(t, err, "pion agrees the tampered one is bad")
				}
				if len(aad) > 0 {
					badAAD := append([]byte{}, aad...)
					badAAD[len(badAAD)/2] ^= 0x80
					require.NoError(t, l.DecryptInit(h, ccmMech(n, nonce, badAAD, tag), key))
					out, _, err := decrypt(l, h, want, len(pt), false)
					require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, rv(err), what+" AAD")
					require.Nil(t, out)
				}
				// Multi-part decryption releases nothing before the final part.
				require.NoError(t, decInit())
				out, _, err := decryptUpdate(l, h, want, len(want), false)
				require.NoError(t, err)
				require.Empty(t, out)
				out, _, err = decryptFinal(l, h, len(pt), false)
				require.NoError(t, err)
				require.Equal(t, string(pt), string(out))
				bad := append([]byte{}, want...)
				bad[len(bad)-1] ^= 1
				require.NoError(t, decInit())
				_, _, err = decryptUpdate(l, h, bad, len(bad), false)
				require.NoError(t, err)
				_, _, err = decryptFinal(l, h, len(want), false)
				require.Equal(t, ck.CKR_ENCRYPTED_DATA_INVALID, rv(err), what+" parts tampered")
			}
		}
	}
}

// CK_CCM_PARAMS' rules and the data length the parameters fix.
func TestCCMParamsAndLengths(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	key := importAES(t, l, h, randb(16))
	for _, m := range []tpmtoken.Mechanism{
		{Type: ck.CKM_AES_CCM},                               // no parameter
		{Type: ck.CKM_AES_CCM, Param: mech.Bytes(randb(12))}, // not CK_CCM_PARAMS
		ccmMech(16, randb(6), nil, 16),                       // nonce too short
		ccmMech(16, randb(14), nil, 16),                      // nonce too long
		ccmMech(16, randb(12), nil, 5),                       // odd MAC
		ccmMech(16, randb(12), nil, 2),                       // MAC too short
		ccmMech(16, randb(12), nil, 18),                      // MAC too long
		ccmMech(1<<24, randb(13), nil, 16),                   // L = 2: data below 2^16
	} {
		require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(l.EncryptInit(h, m, key)), "%+v", m.Param)
		require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(l.DecryptInit(h, m, key)), "%+v", m.Param)
	}
	require.NoError(t, l.EncryptInit(h, ccmMech(1<<16-1, randb(13), nil, 16), key))
	_, n, err := encrypt(l, h, make([]byte, 1<<16-1), 0, true)
	require.NoError(t, err)
	require.Equal(t, 1<<16-1+16, n, "ulDataLen + ulMACLen")
	_, _, err = encrypt(l, h, make([]byte, 10), 0, true)
	require.Equal(t, ck.CKR_DATA_LEN_RANGE, rv(err), "not ulDataLen")

	// Decryption takes ulDataLen + ulMACLen, and says the plaintext length.
	require.NoError(t, l.DecryptInit(h, ccmMech(20, randb(12), nil, 8), key))
	_, n, err = decrypt(l, h, make([]byte, 28), 0, true)
	require.NoError(t, err)
	require.Equal(t, 20, n)
	_, _, err = decrypt(l, h, make([]byte, 20), 0, true)
	require.Equal(t, ck.CKR_ENCRYPTED_DATA_LEN_RANGE, rv(err))

	// In parts: more than the parameters said fails the update; less fails the final part.
	require.NoError(t, l.EncryptInit(h, ccmMech(20, randb(12), nil, 8), key))
	_, _, err = encryptUpdate(l, h, make([]byte, 21), 0, true)
	require.Equal(t, ck.CKR_DATA_LEN_RANGE, rv(err))
	require.NoError(t, l.EncryptInit(h, ccmMech(20, randb(12), nil, 8), key))
	_, _, err = encryptUpdate(l, h, make([]byte, 19), 0, false)
	require.NoError(t, err)
	_, _, err = encryptFinal(l, h, 64, false)
	require.Equal(t, ck.CKR_DATA_LEN_RANGE, rv(err))
	require.NoError(t, l.DecryptInit(h, ccmMech(20, randb(12), nil, 8), key))
	_, _, err = decryptUpdate(l, h, make([]byte, 27), 0, false)
	require.NoError(t, err)
	_, _, err = decryptFinal(l, h, 64, false)
	require.Equal(t, ck.CKR_ENCRYPTED_DATA_LEN_RANGE, rv(err))

	// A dual-function decryption would feed the digest nothing: refused.
	require.NoError(t, l.DigestInit(h, tpmtoken.Mechanism{Type: ck.CKM_SHA256}))
	require.NoError(t, l.DecryptInit(h, ccmMech(20, randb(12), nil, 8), key))
	_, err = l.DecryptDigestUpdate(h, make([]byte, 28), tpmtoken.Dest{Cap: 64})
	require.Equal(t, ck.CKR_FUNCTION_NOT_SUPPORTED, rv(err))

	// The mechanism is listed for encryption and decryption with the TPM's AES sizes.
	info, err := l.MechanismInfo(0, ck.CKM_AES_CCM)
	require.NoError(t, err)
	require.Equal(t, ck.CKF_ENCRYPT|ck.CKF_DECRYPT, info.Flags&(ck.CKF_ENCRYPT|ck.CKF_DECRYPT))
	require.Equal(t, uint64(16), info.Min)
	require.Equal(t, uint64(32), info.Max)
}

// Message-based CCM (C_EncryptMessage, C_DecryptMessage) against pion:
// every nonce generator, the fixed bits kept, counters that count, the
// MAC returned in the parameter; a tampered MAC, ciphertext or AAD is
// CKR_AEAD_DECRYPT_FAILED (the message functions' code) and the context
// lives on.
func TestCCMMessages(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	value := randb(16)
	key := importAES(t, l, h, value)
	blk, err := aes.NewCipher(value)
	require.NoError(t, err)
	ccmM := tpmtoken.Mechanism{Type: ck.CKM_AES_CCM}
	require.NoError(t, l.MessageEncryptInit(h, ccmM, key))
	require.NoError(t, l.MessageDecryptInit(h, ccmM, key))
	seen := map[string]bool{}
	for i, g := range []ck.ULong{ck.CKG_NO_GENERATE, ck.CKG_GENERATE, ck.CKG_GENERATE_COUNTER, ck.CKG_GENERATE_RANDOM, ck.CKG_GENERATE_COUNTER_XOR} {
		for msg := 0; msg < 3; msg++ {
			fixed := randb(12)
			pt, aad := randb(100+msg*700), randb(msg*9)
			p := &mech.CCMMessageParams{DataLen: ck.ULong(len(pt)), Nonce: append([]byte{}, fixed...), NonceFixedBits: 32, Generator: g, MACLen: 12}
			ct, err := l.EncryptMessage(h, p, aad, pt, tpmtoken.Dest{Cap: len(pt)})
			require.NoError(t, err, "generator %d", g)
			require.Len(t, p.MAC, 12)
			require.Equal(t, fixed[:4], p.Nonce[:4], "the fixed bits are kept")
			switch g {
			case ck.CKG_NO_GENERATE:
				require.Equal(t, fixed, p.Nonce)
			case ck.CKG_GENERATE_COUNTER:
				require.Equal(t, append(make([]byte, 7), byte(msg)), p.Nonce[4:], "the counter starts at 0")
			default:
				require.False(t, seen[string(p.Nonce)], "nonce repeated")
			}
			seen[string(p.Nonce)] = true
			ref, err := ccm.NewCCM(blk, 12, 12)
			require.NoError(t, err)
			back, err := ref.Open(nil, p.Nonce, append(append([]byte{}, ct...), p.MAC...), aad)
			require.NoError(t, err, "pion opens message %d of generator %d", msg, g)
			require.Equal(t, pt, back)

			// pion seals; the token opens, and refuses tampering.
			nonce := randb(7 + i)
			sealed := ref2(t, blk, len(nonce)).Seal(nil, nonce, pt, aad)
			dp := func() *mech.CCMMessageParams {
				return &mech.CCMMessageParams{DataLen: ck.ULong(len(pt)), Nonce: nonce, MAC: append([]byte{}, sealed[len(pt):]...), MACLen: 16}
			}
			got, err := l.DecryptMessage(h, dp(), aad, sealed[:len(pt)], tpmtoken.Dest{Cap: len(pt)})
			require.NoError(t, err)
			require.Equal(t, pt, got)
			bad := dp()
			bad.MAC[3] ^= 8
			got, err = l.DecryptMessage(h, bad, aad, sealed[:len(pt)], tpmtoken.Dest{Cap: len(pt)})
			require.Equal(t, ck.CKR_AEAD_DECRYPT_FAILED, rv(err))
			require.Nil(t, got)
			badCT := append([]byte{}, sealed[:len(pt)]...)
			badCT[len(badCT)-1] ^= 1
			_, err = l.DecryptMessage(h, dp(), aad, badCT, tpmtoken.Dest{Cap: len(pt)})
			require.Equal(t, ck.CKR_AEAD_DECRYPT_FAILED, rv(err))
			_, err = l.DecryptMessage(h, dp(), append(aad, 0), sealed[:len(pt)], tpmtoken.Dest{Cap: len(pt)})
			require.Equal(t, ck.CKR_AEAD_DECRYPT_FAILED, rv(err))
		}
	}
	// A message in parts: Begin with the AAD (the nonce comes back), parts
	// that return nothing, the last returns all and the MAC.
	pt, aad := randb(2500), randb(33)
	p := &mech.CCMMessageParams{DataLen: ck.ULong(len(pt)), Nonce: randb(13), Generator: ck.CKG_GENERATE, MACLen: 10}
	require.NoError(t, l.CipherMessageBegin(h, false, p, aad))
	_, err = l.EncryptMessage(h, p, aad, pt, tpmtoken.Dest{Cap: len(pt)})
	require.Equal(t, ck.CKR_OPERATION_ACTIVE, rv(err), "a message is in parts")
	var ct []byte
	for i := 0; i < len(pt); i += 1000 {
		last := i+1000 >= len(pt)
		out, err := l.CipherMessageNext(h, false, p, pt[i:min(i+1000, len(pt))], last, tpmtoken.Dest{Cap: len(pt)})
		require.NoError(t, err)
		ct = append(ct, out...)
	}
	ref, err := ccm.NewCCM(blk, 10, 13)
	require.NoError(t, err)
	back, err := ref.Open(nil, p.Nonce, append(ct, p.MAC...), aad)
	require.NoError(t, err, "pion opens the message made in parts")
	require.Equal(t, pt, back)
	sealed := ref.Seal(nil, p.Nonce, pt, aad)
	for _, flip := range []bool{false, true} {
		d := &mech.CCMMessageParams{DataLen: ck.ULong(len(pt)), Nonce: p.Nonce, MAC: append([]byte{}, sealed[len(pt):]...), MACLen: 10}
		if flip {
			d.MAC[0] ^= 1
		}
		require.NoError(t, l.CipherMessageBegin(h, true, d, aad))
		out, err := l.CipherMessageNext(h, true, d, sealed[:1200], false, tpmtoken.Dest{Cap: len(pt)})
		require.NoError(t, err)
		require.Empty(t, out, "no plaintext before the tag is checked")
		out, err = l.CipherMessageNext(h, true, d, sealed[1200:len(pt)], true, tpmtoken.Dest{Cap: len(pt)})
		if flip {
			require.Equal(t, ck.CKR_AEAD_DECRYPT_FAILED, rv(err))
			require.Nil(t, out)
		} else {
			require.NoError(t, err)
			require.Equal(t, pt, out)
		}
	}

	// Too few free bits for a counter; not the data length the parameter says.
	p = &mech.CCMMessageParams{DataLen: 4, Nonce: randb(7), NonceFixedBits: 40, Generator: ck.CKG_GENERATE_COUNTER, MACLen: 8}
	_, err = l.EncryptMessage(h, p, nil, randb(4), tpmtoken.Dest{Cap: 4})
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(err))
	p = &mech.CCMMessageParams{DataLen: 5, Nonce: randb(7), MACLen: 8}
	_, err = l.EncryptMessage(h, p, nil, randb(4), tpmtoken.Dest{Cap: 4})
	require.Equal(t, ck.CKR_DATA_LEN_RANGE, rv(err))
	require.NoError(t, l.MessageCipherFinal(h, false))
	require.NoError(t, l.MessageCipherFinal(h, true))
	_, err = l.EncryptMessage(h, p, nil, randb(5), tpmtoken.Dest{Cap: 5})
	require.Equal(t, ck.CKR_OPERATION_NOT_INITIALIZED, rv(err))
}

func ref2(t *testing.T, blk cipher.Block, nonceLen int) ccm.CCM {
	c, err := ccm.NewCCM(blk, 16, nonceLen)
	require.NoError(t, err)
	return c
}

// CKM_AES_CCM throughput on swtpm: C_Encrypt and C_Decrypt of 1 KiB and
// 64 KiB messages (two TPM passes over the data, 1 KiB a command).
func BenchmarkCCM(b *testing.B) {
	l := open(b, startSwtpm(b), b.TempDir())
	defer l.Close()
	h := provision(b, l)
	key, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)},
		{ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_VALUE, randb(16)}})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1 << 10, 64 << 10} {
		pt := randb(n)
		m := ccmMech(n, randb(12), randb(16), 16)
		var ct []byte
		b.Run(fmt.Sprintf("encrypt-%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for i := 0; i < b.N; i++ {
				if err := l.EncryptInit(h, m, key); err != nil {
					b.Fatal(err)
				}
				if ct, err = l.Encrypt(h, pt, tpmtoken.Dest{Cap: n + 16}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("decrypt-%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for i := 0; i < b.N; i++ {
				if err := l.DecryptInit(h, m, key); err != nil {
					b.Fatal(err)
				}
				if _, err := l.Decrypt(h, ct, tpmtoken.Dest{Cap: n}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
