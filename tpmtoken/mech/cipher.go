package mech

import (
	"crypto/rand"
	"crypto/rsa"
	"math/big"

	"github.com/tpm11/tpm11/ck"
)

// RSACipher is CKM_RSA_PKCS, CKM_RSA_X_509 or CKM_RSA_PKCS_OAEP with its
// parameters. Decryption is raw RSA in the TPM and the padding removed
// here: a TPM's own OAEP hashes the label with a trailing zero byte, so it
// cannot serve an arbitrary PKCS#11 label. Encryption uses the public key
// in software.
type RSACipher struct {
	Type ck.MechType
	oaep OAEP
}

// NewRSACipher checks m.
func NewRSACipher(m Mechanism) (*RSACipher, error) {
	c := &RSACipher{Type: m.Type}
	switch m.Type {
	case ck.CKM_RSA_PKCS, ck.CKM_RSA_X_509:
		return c, noParam(m)
	case ck.CKM_RSA_PKCS_OAEP:
		var err error
		c.oaep, err = NewOAEP(m)
		return c, err
	}
	return nil, ck.E(ck.CKR_MECHANISM_INVALID)
}

// Unpad recovers the plaintext from the decrypted block em (k bytes).
func (c *RSACipher) Unpad(em []byte) ([]byte, error) {
	var out []byte
	ok := true
	switch c.Type {
	case ck.CKM_RSA_X_509:
		out = em
	case ck.CKM_RSA_PKCS_OAEP:
		out, ok = c.oaep.Decode(em)
	default:
		out, ok = PKCS1Decrypt(em)
	}
	if !ok {
		return nil, ck.E(ck.CKR_ENCRYPTED_DATA_INVALID)
	}
	return out, nil
}

// CheckCiphertext refuses, before the TPM sees it, what cannot be a
// ciphertext of key pub: a wrong length or a value not below the modulus
// (a TPM answers those with an error that would look like a broken device).
func CheckCiphertext(pub *rsa.PublicKey, in []byte) error {
	if len(in) != pub.Size() {
		return ck.E(ck.CKR_ENCRYPTED_DATA_LEN_RANGE)
	}
	if new(big.Int).SetBytes(in).Cmp(pub.N) >= 0 {
		return ck.E(ck.CKR_ENCRYPTED_DATA_INVALID)
	}
	return nil
}

// Encrypt encrypts in with the public key.
func (c *RSACipher) Encrypt(pub *rsa.PublicKey, in []byte) ([]byte, error) {
	k := pub.Size()
	var out []byte
	var err error
	switch c.Type {
	case ck.CKM_RSA_PKCS:
		out, err = rsa.EncryptPKCS1v15(rand.Reader, pub, in)
	case ck.CKM_RSA_PKCS_OAEP:
		out, err = rsa.EncryptOAEP(c.oaep.Hash.New(), rand.Reader, pub, in, c.oaep.Label)
	default: // CKM_RSA_X_509
		m := new(big.Int).SetBytes(in)
		if len(in) > k || m.Cmp(pub.N) >= 0 {
			return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
		}
		out = new(big.Int).Exp(m, big.NewInt(int64(pub.E)), pub.N).FillBytes(make([]byte, k))
	}
	if err != nil {
		return nil, ck.Wrap(ck.CKR_DATA_LEN_RANGE, err)
	}
	return out, nil
}
