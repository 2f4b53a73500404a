package tpm

import (
	"github.com/google/go-tpm/tpm2"
)

// SRKHandle is where the TCG's provisioning guidance (and systemd, among
// others) keeps a persistent SRK.
const SRKHandle = tpm2.TPMHandle(0x81000001)

// SRKTemplate is the TCG ECC P-256 storage root key: the same in every
// process on the same TPM, so key blobs saved under it load again.
func SRKTemplate() tpm2.TPM2BPublic { return tpm2.New2B(tpm2.ECCSRKTemplate) }

// StorageTemplate is a token's key parent: a storage key under the SRK with
// a random authValue (so NoDA: there is nothing guessable to protect).
// Every user key is its child, so none loads without that value, and the
// value is only ever released by unsealing it with a PIN.
func StorageTemplate() tpm2.TPMTPublic {
	t := tpm2.ECCSRKTemplate
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{})
	return t
}

// SealTemplate is a PIN object: a sealed data object whose authValue is
// derived from a PIN. It is not NoDA, so every wrong PIN counts against the
// TPM's dictionary-attack protection; only the TPM can check a PIN.
func SealTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:     true,
			FixedParent:  true,
			UserWithAuth: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{}),
	}
}

// keyAttrs are shared by every signing/decrypting key: bound to this TPM and
// parent, generated inside it, usable with its (empty) authValue because the
// parent's PIN gates loading it; NoDA because there is nothing to guess.
func keyAttrs() tpm2.TPMAObject {
	return tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
	}
}

// ECCKeyTemplate is an unrestricted ECC key with a NULL scheme, so any hash
// can be chosen at sign time; decrypt lets TPM2_ECDH_ZGen use it (ECDH).
func ECCKeyTemplate(curve tpm2.TPMECCCurve) tpm2.TPMTPublic {
	a := keyAttrs()
	a.SignEncrypt = true
	a.Decrypt = true
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: a,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			CurveID: curve,
			Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// RSAKeyTemplate is an unrestricted RSA key that can sign and decrypt with a
// NULL scheme: the TPM's own RSASSA/PSS serve the common cases, and raw RSA
// (decrypt with the NULL scheme) lets the module encode what TPMs cannot,
// such as OAEP with an arbitrary label or PSS with another salt length.
func RSAKeyTemplate(bits int) tpm2.TPMTPublic {
	a := keyAttrs()
	a.SignEncrypt = true
	a.Decrypt = true
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: a,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme:  tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
			KeyBits: tpm2.TPMKeyBits(bits),
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
	}
}

// AESKeyTemplate is an AES key for TPM2_EncryptDecrypt2 in any mode (the
// mode is chosen per call).
func AESKeyTemplate(bits int) tpm2.TPMTPublic {
	a := keyAttrs()
	a.SignEncrypt = true
	a.Decrypt = true
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgSymCipher,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: a,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgSymCipher, &tpm2.TPMSSymCipherParms{
			Sym: tpm2.TPMTSymDefObject{
				Algorithm: tpm2.TPMAlgAES,
				KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(bits)),
				Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgNull),
			},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgSymCipher, &tpm2.TPM2BDigest{}),
	}
}

// HMACKeyTemplate is a keyed-hash key with a NULL scheme, so one key serves
// HMAC with any hash (chosen per TPM2_HMAC call). A TPM allows the NULL
// scheme on a keyed-hash key only with both sign and decrypt set (sign
// alone requires an HMAC scheme, which fixes the hash); no command the
// token sends decrypts with it.
func HMACKeyTemplate() tpm2.TPMTPublic {
	a := keyAttrs()
	a.SignEncrypt = true
	a.Decrypt = true
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgKeyedHash,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: a,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{}),
	}
}

// Supplied turns a template into one for a key whose secret the caller
// supplies (an imported or derived key): not generated by the TPM.
func Supplied(t tpm2.TPMTPublic) tpm2.TPMTPublic {
	t.ObjectAttributes.SensitiveDataOrigin = false
	return t
}

// Importable turns a template into one TPM2_Import accepts: a duplicated
// object may not be fixedTPM or fixedParent. Its authPolicy stays empty, so
// no policy can ever authorize TPM2_Duplicate: it cannot leave again.
func Importable(t tpm2.TPMTPublic) tpm2.TPMTPublic {
	t = Supplied(t)
	t.ObjectAttributes.FixedTPM = false
	t.ObjectAttributes.FixedParent = false
	return t
}
