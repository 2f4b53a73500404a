package mech

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"

	"github.com/tpm11/tpm11/ck"
)

// LeftPad returns b zero-extended on the left to n bytes (TPMs return RSA
// results without leading zeros).
func LeftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	out := make([]byte, n)
	copy(out[n-len(b):], b)
	return out
}

// PKCS1SignBlock is EMSA-PKCS1-v1_5's block 00 01 FF.. 00 T for a k-byte
// modulus, T given whole (a DigestInfo, or anything CKM_RSA_PKCS is fed).
func PKCS1SignBlock(t []byte, k int) ([]byte, error) {
	if len(t) > k-11 {
		return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
	}
	block := make([]byte, k)
	block[1] = 1
	for i := 2; i < k-len(t)-1; i++ {
		block[i] = 0xff
	}
	copy(block[k-len(t):], t)
	return block, nil
}

// SplitDigestInfo recognises a DER DigestInfo of a known hash and returns
// the hash and the digest; nil if t is not one.
func SplitDigestInfo(t []byte) (*Hash, []byte) {
	for _, h := range Hashes {
		if len(t) == len(h.DigestInfo)+h.Size() && bytes.HasPrefix(t, h.DigestInfo) {
			return h, t[len(h.DigestInfo):]
		}
	}
	return nil, nil
}

// PKCS1Decrypt removes EME-PKCS1-v1_5 padding (00 02 PS 00 M).
func PKCS1Decrypt(em []byte) ([]byte, bool) {
	if len(em) < 11 || em[0] != 0 || em[1] != 2 {
		return nil, false
	}
	for i := 2; i < len(em); i++ {
		if em[i] == 0 {
			if i < 10 {
				return nil, false
			}
			return em[i+1:], true
		}
	}
	return nil, false
}

// OAEP is CKM_RSA_PKCS_OAEP's checked parameters.
type OAEP struct {
	Hash  *Hash
	Label []byte
}

// NewOAEP checks CK_RSA_PKCS_OAEP_PARAMS: a known hash, MGF1 over the same
// hash (Go and the TPM use one hash for both), and a label or none.
func NewOAEP(m Mechanism) (OAEP, error) {
	p, ok := m.Param.(OAEPParams)
	if !ok {
		return OAEP{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_RSA_PKCS_OAEP needs CK_RSA_PKCS_OAEP_PARAMS")
	}
	h := HashOf(p.HashAlg)
	if h == nil || HashOfMGF(p.MGF) != h {
		return OAEP{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "OAEP hash 0x%x with MGF 0x%x", p.HashAlg, p.MGF)
	}
	if p.Source != 0 && p.Source != ck.CKZ_DATA_SPECIFIED {
		return OAEP{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "OAEP source 0x%x", p.Source)
	}
	return OAEP{Hash: h, Label: p.Label}, nil
}

// Decode is EME-OAEP decoding (RFC 8017 §7.1.2), in constant time up to
// the final verdict.
func (o OAEP) Decode(em []byte) ([]byte, bool) {
	hLen := o.Hash.Size()
	if len(em) < 2*hLen+2 {
		return nil, false
	}
	hh := o.Hash.New()
	hh.Write(o.Label)
	lHash := hh.Sum(nil)
	seed := bytes.Clone(em[1 : 1+hLen])
	db := bytes.Clone(em[1+hLen:])
	for i, b := range MGF1(o.Hash, db, hLen) {
		seed[i] ^= b
	}
	for i, b := range MGF1(o.Hash, seed, len(db)) {
		db[i] ^= b
	}
	good := subtle.ConstantTimeByteEq(em[0], 0) & subtle.ConstantTimeCompare(db[:hLen], lHash)
	rest := db[hLen:]
	idx := -1
	for i, b := range rest {
		if b == 1 && idx < 0 {
			idx = i
		} else if b != 0 && idx < 0 {
			good = 0
		}
	}
	if good != 1 || idx < 0 {
		return nil, false
	}
	return rest[idx+1:], true
}

// MGF1 is the mask generation function of RFC 8017 §B.2.1.
func MGF1(h *Hash, seed []byte, n int) []byte {
	var out []byte
	for c := uint32(0); len(out) < n; c++ {
		d := h.New()
		d.Write(seed)
		d.Write([]byte{byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)})
		out = d.Sum(out)
	}
	return out[:n]
}

// PSS is CKM_RSA_PKCS_PSS's checked parameters.
type PSS struct {
	Hash    *Hash
	SaltLen int
}

// NewPSS checks CK_RSA_PKCS_PSS_PARAMS for a mechanism whose own hash is
// want (nil for CKM_RSA_PKCS_PSS, which signs a digest of any hash).
func NewPSS(m Mechanism, want *Hash) (PSS, error) {
	p, ok := m.Param.(PSSParams)
	if !ok {
		return PSS{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "mechanism 0x%x needs CK_RSA_PKCS_PSS_PARAMS", m.Type)
	}
	h := HashOf(p.HashAlg)
	if h == nil || (want != nil && h != want) {
		return PSS{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "PSS hashAlg 0x%x", p.HashAlg)
	}
	// Go's and the TPM's PSS use the message hash for MGF1.
	if HashOfMGF(p.MGF) != h {
		return PSS{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "PSS MGF 0x%x must match hashAlg", p.MGF)
	}
	if p.SaltLen > 512 {
		return PSS{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "PSS sLen %d", p.SaltLen)
	}
	return PSS{Hash: h, SaltLen: int(p.SaltLen)}, nil
}

// Encode is EMSA-PSS-ENCODE (RFC 8017 §9.1.1) for a modulus of modBits,
// for salt lengths the TPM's own PSS does not produce.
func (p PSS) Encode(mHash []byte, modBits int) ([]byte, error) {
	hLen := p.Hash.Size()
	emBits := modBits - 1
	emLen := (emBits + 7) / 8
	if emLen < hLen+p.SaltLen+2 {
		return nil, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	salt := make([]byte, p.SaltLen)
	_, _ = rand.Read(salt)
	h := p.Hash.New()
	h.Write(make([]byte, 8))
	h.Write(mHash)
	h.Write(salt)
	H := h.Sum(nil)
	db := make([]byte, emLen-hLen-1)
	db[len(db)-p.SaltLen-1] = 1
	copy(db[len(db)-p.SaltLen:], salt)
	mask := MGF1(p.Hash, H, len(db))
	for i := range db {
		db[i] ^= mask[i]
	}
	db[0] &= 0xff >> (8*emLen - emBits)
	em := append(db, H...)
	return LeftPad(append(em, 0xbc), (modBits+7)/8), nil
}
