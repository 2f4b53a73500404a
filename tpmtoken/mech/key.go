package mech

import (
	"crypto/ecdsa"
	"crypto/rsa"

	"github.com/tpm11/tpm11/ck"
)

// Key is what a mechanism needs to know of a key: its type and size.
type Key struct {
	Type        ck.KeyType
	ModulusBits int    // RSA
	Curve       *Curve // EC
	ValueLen    int    // secret keys, in bytes
}

// KeyOf describes a Go public key (for verification with a public key).
func KeyOf(pub any) Key {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return Key{Type: ck.CKK_RSA, ModulusBits: p.N.BitLen()}
	case *ecdsa.PublicKey:
		return Key{Type: ck.CKK_EC, Curve: CurveOfGo(p.Curve)}
	}
	return Key{Type: ^ck.KeyType(0)}
}

// modulusBytes is the RSA block size k.
func (k Key) modulusBytes() int { return (k.ModulusBits + 7) / 8 }
