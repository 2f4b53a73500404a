package tpmtoken_test

import (
	"crypto/aes"
	"testing"

	"github.com/pion/dtls/v4/pkg/crypto/ccm"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// C_WrapKeyAuthenticated / C_UnwrapKeyAuthenticated with CKM_AES_CCM and
// the wrapping key in swtpm, checked against pion/dtls's CCM: our wrap of
// an extractable key's value is pion's ciphertext and tag (given nonce and
// a generated one), a pion-made wrapping unwraps to a key whose CKA_VALUE
// is the original, and one flipped bit of the wrapped key, the MAC or the
// AAD is CKR_WRAPPED_KEY_INVALID with no object made.
func TestWrapKeyAuthenticatedAgainstPion(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	yes, no := []byte{1}, []byte{0}
	kekValue := randb(32)
	kek, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)},
		{ck.CKA_VALUE, kekValue}, {ck.CKA_WRAP, yes}, {ck.CKA_UNWRAP, yes}})
	require.NoError(t, err)
	blk, err := aes.NewCipher(kekValue)
	require.NoError(t, err)
	readableTmpl := func(value []byte) []tpmtoken.Attr {
		t := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)},
			{ck.CKA_SENSITIVE, no}, {ck.CKA_EXTRACTABLE, yes}}
		if value != nil {
			t = append(t, tpmtoken.Attr{Type: ck.CKA_VALUE, Value: value})
		}
		return t
	}
	valueOf := func(o uint64) []byte {
		res, err := l.GetAttributeValue(h, o, []ck.AttributeType{ck.CKA_VALUE})
		require.NoError(t, err)
		return res[0].Value
	}
	count := func() int {
		require.NoError(t, l.FindObjectsInit(h, nil))
		found, err := l.FindObjects(h, 1000)
		require.NoError(t, err)
		require.NoError(t, l.FindObjectsFinal(h))
		return len(found)
	}
	for i, size := range []int{16, 32} {
		keyValue := randb(size)
		key, err := l.CreateObject(h, readableTmpl(keyValue))
		require.NoError(t, err)
		nonceLen, tagLen := 7+3*i, 8+4*i
		aad := randb(5 + 40*i)
		ref, err := ccm.NewCCM(blk, tagLen, nonceLen)
		require.NoError(t, err)

		// Wrap with the caller's nonce, then with one the token makes.
		for _, gen := range []ck.ULong{ck.CKG_NO_GENERATE, ck.CKG_GENERATE} {
			p := &mech.CCMMessageParams{Nonce: randb(nonceLen), Generator: gen, MACLen: ck.ULong(tagLen)}
			given := append([]byte(nil), p.Nonce...)
			m := tpmtoken.Mechanism{Type: ck.CKM_AES_CCM, Param: p}
			n, err := l.WrapKeyAuthenticatedLen(h, m, kek, key)
			require.NoError(t, err)
			require.Equal(t, size, n)
			ct, err := l.WrapKeyAuthenticated(h, m, kek, key, aad)
			require.NoError(t, err)
			if gen == ck.CKG_NO_GENERATE {
				require.Equal(t, given, p.Nonce)
			} else {
				require.NotEqual(t, given, p.Nonce, "a generated nonce")
			}
			want := ref.Seal(nil, p.Nonce, keyValue, aad)
			require.Equal(t, want, append(append([]byte{}, ct...), p.MAC...), "pion's ciphertext‖tag, size %d gen %d", size, gen)
		}

		// A pion-made wrapping unwraps to the key value.
		nonce := randb(nonceLen)
		sealed := ref.Seal(nil, nonce, keyValue, aad)
		ct, tag := sealed[:size], sealed[size:]
		unwrap := func(ct, tag, aad []byte) (uint64, error) {
			p := &mech.CCMMessageParams{DataLen: ck.ULong(len(ct)), Nonce: nonce, MAC: tag, MACLen: ck.ULong(len(tag))}
			return l.UnwrapKeyAuthenticated(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CCM, Param: p}, kek, ct, readableTmpl(nil), aad)
		}
		got, err := unwrap(ct, tag, aad)
		require.NoError(t, err)
		require.Equal(t, keyValue, valueOf(got))

		before := count()
		flip := func(b []byte, bit int) []byte {
			c := append([]byte{}, b...)
			c[bit/8] ^= 1 << (bit % 8)
			return c
		}
		for _, bit := range []int{0, 8*size - 1} {
			_, err = unwrap(flip(ct, bit), tag, aad)
			require.Equal(t, ck.CKR_WRAPPED_KEY_INVALID, rv(err), "wrapped bit %d", bit)
		}
		_, err = unwrap(ct, flip(tag, 3), aad)
		require.Equal(t, ck.CKR_WRAPPED_KEY_INVALID, rv(err), "tag")
		_, err = unwrap(ct, tag, flip(aad, 8*len(aad)-1))
		require.Equal(t, ck.CKR_WRAPPED_KEY_INVALID, rv(err), "AAD")
		_, err = unwrap(ct, tag, nil)
		require.Equal(t, ck.CKR_WRAPPED_KEY_INVALID, rv(err), "AAD left out")
		require.Equal(t, before, count(), "no object from a failed unwrap")
		_, err = ref.Open(nil, nonce, append(flip(ct, 0), tag...), aad)
		require.Error(t, err, "pion agrees the tampered one is bad")
	}

	// A key that lives in the TPM only is not wrappable; a counter
	// generator (no context to keep its count) and CK_CCM_PARAMS are
	// refused.
	inTPM := importAES(t, l, h, randb(16))
	p := &mech.CCMMessageParams{Nonce: randb(12), Generator: ck.CKG_GENERATE, MACLen: 16}
	_, err = l.WrapKeyAuthenticated(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CCM, Param: p}, kek, inTPM, nil)
	require.Equal(t, ck.CKR_KEY_UNEXTRACTABLE, rv(err))
	readable, err := l.CreateObject(h, readableTmpl(randb(16)))
	require.NoError(t, err)
	p.Generator = ck.CKG_GENERATE_COUNTER
	_, err = l.WrapKeyAuthenticated(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CCM, Param: p}, kek, readable, nil)
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(err))
	_, err = l.WrapKeyAuthenticated(h, ccmMech(16, randb(12), nil, 16), kek, readable, nil)
	require.Equal(t, ck.CKR_MECHANISM_PARAM_INVALID, rv(err))
}
