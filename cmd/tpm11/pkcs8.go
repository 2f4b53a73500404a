package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/scrypt"
)

// Encrypted PKCS#8 (RFC 5958 EncryptedPrivateKeyInfo) with PBES2 (RFC
// 8018): PBKDF2 or scrypt, then AES-CBC or 3DES-CBC: what openssl pkcs8
// -topk8, openssl genpkey -aes256 and most tools write. Go's standard
// library reads only unencrypted PKCS#8.

var (
	oidPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidHMAC   = map[string]func() hash.Hash{
		"1.2.840.113549.2.7": sha1.New, "1.2.840.113549.2.8": sha256.New224, "1.2.840.113549.2.9": sha256.New,
		"1.2.840.113549.2.10": sha512.New384, "1.2.840.113549.2.11": sha512.New,
	}
	oidCipher = map[string]struct {
		keyLen int
		block  func([]byte) (cipher.Block, error)
	}{
		"2.16.840.1.101.3.4.1.2": {16, aes.NewCipher}, "2.16.840.1.101.3.4.1.22": {24, aes.NewCipher},
		"2.16.840.1.101.3.4.1.42": {32, aes.NewCipher}, "1.2.840.113549.3.7": {24, des.NewTripleDESCipher},
	}
)

type encryptedPrivateKeyInfo struct {
	Algo pkix.AlgorithmIdentifier
	Data []byte
}

type pbes2Params struct {
	KDF    pkix.AlgorithmIdentifier
	Cipher pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt      []byte
	Iter      int
	KeyLength int                      `asn1:"optional"`
	PRF       pkix.AlgorithmIdentifier `asn1:"optional"`
}

type scryptParams struct {
	Salt      []byte
	N, R, P   int
	KeyLength int `asn1:"optional"`
}

// errWrongPassphrase: the key did not decrypt (a wrong passphrase is
// the usual reason; CBC cannot tell it from a damaged file).
var errWrongPassphrase = errors.New("wrong passphrase")

// isEncryptedPKCS8 reports whether der is an EncryptedPrivateKeyInfo.
func isEncryptedPKCS8(der []byte) bool {
	var e encryptedPrivateKeyInfo
	rest, err := asn1.Unmarshal(der, &e)
	return err == nil && len(rest) == 0 && e.Algo.Algorithm.Equal(oidPBES2)
}

// decryptPKCS8 returns the PKCS#8 PrivateKeyInfo inside der.
func decryptPKCS8(der, pass []byte) ([]byte, error) {
	var e encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &e); err != nil || len(rest) > 0 {
		return nil, errors.New("not an encrypted PKCS#8 key")
	}
	if !e.Algo.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("encrypted PKCS#8 with scheme %v: only PBES2 is read (openssl pkcs8 -topk8 -v2 aes-256-cbc converts it)", e.Algo.Algorithm)
	}
	var p pbes2Params
	if _, err := asn1.Unmarshal(e.Algo.Parameters.FullBytes, &p); err != nil {
		return nil, fmt.Errorf("encrypted PKCS#8: bad PBES2 parameters")
	}
	ci, ok := oidCipher[p.Cipher.Algorithm.String()]
	if !ok {
		return nil, fmt.Errorf("encrypted PKCS#8 with cipher %v: AES-CBC and 3DES-CBC are read", p.Cipher.Algorithm)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(p.Cipher.Parameters.FullBytes, &iv); err != nil {
		return nil, errors.New("encrypted PKCS#8: bad IV")
	}
	var key []byte
	switch {
	case p.KDF.Algorithm.Equal(oidPBKDF2):
		var kp pbkdf2Params
		if _, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kp); err != nil {
			return nil, errors.New("encrypted PKCS#8: bad PBKDF2 parameters")
		}
		if kp.Iter < 1 || kp.Iter > 10_000_000 {
			return nil, fmt.Errorf("encrypted PKCS#8: PBKDF2 iteration count %d out of range", kp.Iter)
		}
		prf := sha1.New
		if len(kp.PRF.Algorithm) > 0 {
			if prf, ok = oidHMAC[kp.PRF.Algorithm.String()]; !ok {
				return nil, fmt.Errorf("encrypted PKCS#8: PBKDF2 PRF %v not supported", kp.PRF.Algorithm)
			}
		}
		var err error
		if key, err = pbkdf2.Key(prf, string(pass), kp.Salt, kp.Iter, ci.keyLen); err != nil {
			return nil, err
		}
	case p.KDF.Algorithm.Equal(oidScrypt):
		var sp scryptParams
		if _, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &sp); err != nil {
			return nil, errors.New("encrypted PKCS#8: bad scrypt parameters")
		}
		// Bound the work and memory (128·N·r·p bytes) a file can ask for.
		if sp.N < 2 || sp.N > 1<<20 || sp.R < 1 || sp.R > 32 || sp.P < 1 || sp.P > 16 {
			return nil, fmt.Errorf("encrypted PKCS#8: scrypt parameters N=%d r=%d p=%d out of range", sp.N, sp.R, sp.P)
		}
		var err error
		if key, err = scrypt.Key(pass, sp.Salt, sp.N, sp.R, sp.P, ci.keyLen); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("encrypted PKCS#8 with key derivation %v: PBKDF2 and scrypt are read", p.KDF.Algorithm)
	}
	block, err := ci.block(key)
	if err != nil {
		return nil, err
	}
	if len(iv) != block.BlockSize() || len(e.Data) == 0 || len(e.Data)%block.BlockSize() != 0 {
		return nil, errors.New("encrypted PKCS#8: bad IV or data length")
	}
	out := make([]byte, len(e.Data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, e.Data)
	n := int(out[len(out)-1])
	if n == 0 || n > block.BlockSize() || !hmac.Equal(out[len(out)-n:], bytesOf(byte(n), n)) {
		return nil, errWrongPassphrase
	}
	return out[:len(out)-n], nil
}

func bytesOf(b byte, n int) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return s
}
