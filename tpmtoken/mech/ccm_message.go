package mech

import (
	"crypto/rand"

	"github.com/tpm11/tpm11/ck"
)

// CCMMessageParams is CK_CCM_MESSAGE_PARAMS, the per-message parameter of
// C_EncryptMessage and C_DecryptMessage. Nonce is the caller's (its fixed
// bits, or all of it); an encryption replaces Nonce with the nonce it used
// and sets MAC, which the C layer copies back into the caller's structure.
type CCMMessageParams struct {
	DataLen        ck.ULong
	Nonce          []byte
	NonceFixedBits ck.ULong
	Generator      ck.ULong
	MAC            []byte // decryption: the tag to check; encryption: the tag made
	MACLen         ck.ULong
}

func (*CCMMessageParams) param() {}

// NonceGen makes the nonces of one message-encryption context: the
// counter of CKG_GENERATE_COUNTER and CKG_GENERATE_COUNTER_XOR starts at
// zero and never repeats within the context.
type NonceGen struct{ counter uint64 }

// Next is the nonce for p per its generator: the caller's fixed bits (the
// most significant NonceFixedBits of p.Nonce) kept, the rest random
// (CKG_GENERATE, CKG_GENERATE_RANDOM), the counter (CKG_GENERATE_COUNTER),
// or the caller's bits XOR the counter (CKG_GENERATE_COUNTER_XOR); with
// CKG_NO_GENERATE, p.Nonce itself.
func (g *NonceGen) Next(p *CCMMessageParams) ([]byte, error) {
	n := len(p.Nonce)
	if n < ccmMinNonce || n > ccmMaxNonce {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CCM nonce of %d bytes (7..13)", n)
	}
	if p.Generator == ck.CKG_NO_GENERATE {
		return append([]byte(nil), p.Nonce...), nil
	}
	fixed := int(p.NonceFixedBits)
	if p.NonceFixedBits > uint64(8*n) || 8*n-fixed < 32 && p.Generator != ck.CKG_GENERATE && p.Generator != ck.CKG_GENERATE_RANDOM {
		// A counter needs room: fewer than 32 free bits would wrap
		// within a context's lifetime for a busy caller.
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "%d fixed bits of a %d-byte nonce", p.NonceFixedBits, n)
	}
	var free []byte
	switch p.Generator {
	case ck.CKG_GENERATE, ck.CKG_GENERATE_RANDOM:
		if 8*n-fixed < 56 {
			return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "%d random bits are too few to be unique", 8*n-fixed)
		}
		free = make([]byte, n)
		if _, err := rand.Read(free); err != nil {
			return nil, err
		}
	case ck.CKG_GENERATE_COUNTER, ck.CKG_GENERATE_COUNTER_XOR:
		free = make([]byte, n)
		c := g.counter
		for i := n - 1; i >= 0 && c != 0; i-- {
			free[i] = byte(c)
			c >>= 8
		}
		if 8*n-fixed < 64 && g.counter>>(8*n-fixed) != 0 {
			return nil, ck.Errorf(ck.CKR_DATA_LEN_RANGE, "the nonce counter is exhausted")
		}
		g.counter++
		if p.Generator == ck.CKG_GENERATE_COUNTER_XOR {
			for i := range free {
				free[i] ^= p.Nonce[i]
			}
		}
	default:
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "nonce generator %d", p.Generator)
	}
	out := make([]byte, n)
	for i := 0; i < 8*n; i++ {
		src := free
		if i < fixed {
			src = p.Nonce
		}
		bit := byte(0x80) >> (i % 8)
		out[i/8] |= src[i/8] & bit
	}
	return out, nil
}

// NewCCMMessage is the CCM of one message: p's lengths, nonce and AAD.
func NewCCMMessage(p *CCMMessageParams, nonce, aad []byte, decrypt bool) (*CCM, error) {
	return NewCCM(Mechanism{Type: ck.CKM_AES_CCM, Param: CCMParams{DataLen: p.DataLen, Nonce: nonce, AAD: aad, MACLen: p.MACLen}}, decrypt)
}

// Tag splits an encryption's ciphertext‖tag output.
func (c *CCM) Tag(out []byte) (ct, tag []byte) {
	return out[:len(out)-c.tagLen], out[len(out)-c.tagLen:]
}

// DataLen is the message's length (ulDataLen).
func (c *CCM) DataLen() int { return int(c.dataLen) }
