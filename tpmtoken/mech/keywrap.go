package mech

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"

	"github.com/tpm11/tpm11/ck"
)

// AES key wrap (RFC 3394, CKM_AES_KEY_WRAP) and with padding (RFC 5649,
// CKM_AES_KEY_WRAP_KWP), over a block function: the AES key stays in the
// TPM, which does each block (TPM2_EncryptDecrypt2, ECB); this is the
// chaining around it.

// Block en- or decrypts one 16-byte block with the wrapping key.
type Block func(in []byte, decrypt bool) ([]byte, error)

var kwIV = []byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

// IsKeyWrap says whether m is an AES key wrap mechanism.
func IsKeyWrap(m ck.MechType) bool { return m == ck.CKM_AES_KEY_WRAP || m == ck.CKM_AES_KEY_WRAP_KWP }

// WrappedLen is the length of n bytes wrapped by m (0 if n cannot be).
func WrappedLen(m ck.MechType, n int) int {
	if m == ck.CKM_AES_KEY_WRAP {
		if n < 16 || n%8 != 0 {
			return 0
		}
		return n + 8
	}
	if n == 0 {
		return 0
	}
	return (n+7)/8*8 + 8
}

// KeyWrap wraps plain with mechanism m.
func KeyWrap(m ck.MechType, block Block, plain []byte) ([]byte, error) {
	var a []byte
	p := bytes.Clone(plain)
	switch m {
	case ck.CKM_AES_KEY_WRAP:
		if len(p) < 16 || len(p)%8 != 0 {
			return nil, ck.Errorf(ck.CKR_KEY_SIZE_RANGE, "RFC 3394 wraps a multiple of 8 bytes, at least 16")
		}
		a = kwIV
	case ck.CKM_AES_KEY_WRAP_KWP:
		if len(p) == 0 {
			return nil, ck.E(ck.CKR_KEY_SIZE_RANGE)
		}
		a = binary.BigEndian.AppendUint32([]byte{0xA6, 0x59, 0x59, 0xA6}, uint32(len(p)))
		p = append(p, make([]byte, (8-len(p)%8)%8)...)
		if len(p) == 8 {
			return block(append(a, p...), false)
		}
	default:
		return nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	n := len(p) / 8
	r := p
	a = bytes.Clone(a)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			b, err := block(append(bytes.Clone(a), r[8*i:8*i+8]...), false)
			if err != nil {
				return nil, err
			}
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(b[:8])^t)
			copy(r[8*i:], b[8:])
		}
	}
	return append(a, r...), nil
}

// KeyUnwrap unwraps c with mechanism m; a failed integrity check is
// CKR_WRAPPED_KEY_INVALID.
func KeyUnwrap(m ck.MechType, block Block, c []byte) ([]byte, error) {
	bad := ck.E(ck.CKR_WRAPPED_KEY_INVALID)
	if len(c) < 16 || len(c)%8 != 0 {
		return nil, ck.E(ck.CKR_WRAPPED_KEY_LEN_RANGE)
	}
	var a, r []byte
	if m == ck.CKM_AES_KEY_WRAP_KWP && len(c) == 16 {
		b, err := block(c, true)
		if err != nil {
			return nil, err
		}
		a, r = b[:8], b[8:]
	} else {
		n := len(c)/8 - 1
		a, r = bytes.Clone(c[:8]), bytes.Clone(c[8:])
		for j := 5; j >= 0; j-- {
			for i := n - 1; i >= 0; i-- {
				t := uint64(n*j + i + 1)
				x := binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(a)^t)
				b, err := block(append(x, r[8*i:8*i+8]...), true)
				if err != nil {
					return nil, err
				}
				copy(a, b[:8])
				copy(r[8*i:], b[8:])
			}
		}
	}
	switch m {
	case ck.CKM_AES_KEY_WRAP:
		if subtle.ConstantTimeCompare(a, kwIV) != 1 {
			return nil, bad
		}
		return r, nil
	case ck.CKM_AES_KEY_WRAP_KWP:
		if !bytes.Equal(a[:4], []byte{0xA6, 0x59, 0x59, 0xA6}) {
			return nil, bad
		}
		mli := int(binary.BigEndian.Uint32(a[4:]))
		if mli > len(r) || mli <= len(r)-8 {
			return nil, bad
		}
		for _, z := range r[mli:] {
			if z != 0 {
				return nil, bad
			}
		}
		return r[:mli], nil
	}
	return nil, ck.E(ck.CKR_MECHANISM_INVALID)
}
