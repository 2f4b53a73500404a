package mech

import (
	"crypto"
	_ "crypto/sha1" // registered for crypto.Hash.New
	_ "crypto/sha256"
	_ "crypto/sha512"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
)

// Hash is everything tpm11 knows of one hash function, under each of the
// names PKCS#11 and the TPM give it.
type Hash struct {
	crypto.Hash
	Digest     ck.MechType   // CKM_SHA256
	HMAC       ck.MechType   // CKM_SHA256_HMAC, 0 if not offered
	MGF        ck.MGF        // CKG_MGF1_SHA256
	KDF        ck.KDF        // CKD_SHA256_KDF
	TPM        tpm2.TPMAlgID // TPM_ALG_SHA256; TPMAlgNull where TPMs lack it (SHA-224)
	DigestInfo []byte        // DER of DigestInfo up to the digest itself
}

// Hashes is the one table of hash functions.
var Hashes = []*Hash{
	{Hash: crypto.SHA1, Digest: ck.CKM_SHA_1, HMAC: ck.CKM_SHA_1_HMAC, MGF: ck.CKG_MGF1_SHA1, KDF: ck.CKD_SHA1_KDF, TPM: tpm2.TPMAlgSHA1,
		DigestInfo: []byte{0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14}},
	{Hash: crypto.SHA224, Digest: ck.CKM_SHA224, MGF: ck.CKG_MGF1_SHA224, KDF: ck.CKD_SHA224_KDF, TPM: tpm2.TPMAlgNull,
		DigestInfo: []byte{0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c}},
	{Hash: crypto.SHA256, Digest: ck.CKM_SHA256, HMAC: ck.CKM_SHA256_HMAC, MGF: ck.CKG_MGF1_SHA256, KDF: ck.CKD_SHA256_KDF, TPM: tpm2.TPMAlgSHA256,
		DigestInfo: []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}},
	{Hash: crypto.SHA384, Digest: ck.CKM_SHA384, HMAC: ck.CKM_SHA384_HMAC, MGF: ck.CKG_MGF1_SHA384, KDF: ck.CKD_SHA384_KDF, TPM: tpm2.TPMAlgSHA384,
		DigestInfo: []byte{0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30}},
	{Hash: crypto.SHA512, Digest: ck.CKM_SHA512, HMAC: ck.CKM_SHA512_HMAC, MGF: ck.CKG_MGF1_SHA512, KDF: ck.CKD_SHA512_KDF, TPM: tpm2.TPMAlgSHA512,
		DigestInfo: []byte{0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40}},
}

func findHash(match func(*Hash) bool) *Hash {
	for _, h := range Hashes {
		if match(h) {
			return h
		}
	}
	return nil
}

// HashOf returns the hash of a digest mechanism (CKM_SHA256), nil if none.
func HashOf(m ck.MechType) *Hash { return findHash(func(h *Hash) bool { return h.Digest == m }) }

// HashOfMGF returns the hash of a CKG_MGF1_* value, nil if unknown.
func HashOfMGF(g ck.MGF) *Hash { return findHash(func(h *Hash) bool { return h.MGF == g }) }

// HashOfKDF returns the hash of a CKD_*_KDF value; nil for CKD_NULL or unknown.
func HashOfKDF(k ck.KDF) *Hash { return findHash(func(h *Hash) bool { return h.KDF == k }) }

// InTPM says whether TPMs compute this hash (SHA-224 is left out of TPMs).
func (h *Hash) InTPM() bool { return h.TPM != tpm2.TPMAlgNull }
