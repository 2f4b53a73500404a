package mech

import (
	"bytes"
	"encoding/binary"
)

// X963KDF is the ANSI X9.63 KDF of PKCS#11's CKD_SHA*_KDF:
// Hash(Z || counter || sharedInfo) for counter = 1, 2, ...; with the NULL
// KDF (h nil) the key is Z's leftmost n bytes.
func X963KDF(h *Hash, z, shared []byte, n int) []byte {
	if h == nil {
		return bytes.Clone(z[:n])
	}
	var out []byte
	for counter := uint32(1); len(out) < n; counter++ {
		d := h.New()
		d.Write(z)
		_ = binary.Write(d, binary.BigEndian, counter)
		d.Write(shared)
		out = d.Sum(out)
	}
	return out[:n]
}
