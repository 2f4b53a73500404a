package mech

import (
	"github.com/tpm11/tpm11/ck"
)

// Key is what a mechanism needs to know of a key: its type and size.
type Key struct {
	Type        ck.KeyType
	ModulusBits int      // RSA
	Curve       *Curve   // EC
	ValueLen    int      // secret keys, in bytes
	ParamSet    ck.ULong // ML-DSA, ML-KEM: CKA_PARAMETER_SET
	// PreHash is the hash a HashML-DSA key in the TPM is bound to (nil:
	// a pure ML-DSA key, or a public key).
	PreHash *Hash
}

// modulusBytes is the RSA block size k.
func (k Key) modulusBytes() int { return (k.ModulusBits + 7) / 8 }
