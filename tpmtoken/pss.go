package tpmtoken

import (
	"crypto/rand"

	"github.com/tpm11/tpm11/ck"
)

// pssEncode is EMSA-PSS-ENCODE (RFC 8017 §9.1.1) for a k-byte modulus, for
// salt lengths the TPM's own PSS does not produce.
func pssEncode(mHash []byte, k int, p pssParams) ([]byte, error) {
	hLen := p.hash.Size()
	emLen := k // modulus bits are a multiple of 8 for the keys we make
	if emLen < hLen+p.sLen+2 {
		return nil, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	salt := make([]byte, p.sLen)
	_, _ = rand.Read(salt)
	h := p.hash.New()
	h.Write(make([]byte, 8))
	h.Write(mHash)
	h.Write(salt)
	H := h.Sum(nil)
	db := make([]byte, emLen-hLen-1)
	db[len(db)-p.sLen-1] = 1
	copy(db[len(db)-p.sLen:], salt)
	mask := mgf1(H, len(db), p)
	for i := range db {
		db[i] ^= mask[i]
	}
	db[0] &= 0x7f // emBits = 8*emLen - 1
	em := append(db, H...)
	return append(em, 0xbc), nil
}

func mgf1(seed []byte, n int, p pssParams) []byte {
	var out []byte
	for c := uint32(0); len(out) < n; c++ {
		h := p.hash.New()
		h.Write(seed)
		h.Write([]byte{byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)})
		out = h.Sum(out)
	}
	return out[:n]
}
