package mech

import (
	"crypto/mlkem"
	"encoding/asn1"

	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
	"github.com/tpm11/tpm11/ck"
)

// ML-KEM (FIPS 203) as PKCS#11 3.2 has it: CKK_ML_KEM keys whose
// CKA_PARAMETER_SET is a CKP_ML_KEM_*, CKA_VALUE of the public key its
// FIPS 203 encoding (ek). The TPM decapsulates (v1.85); C_EncapsulateKey
// needs only the public key and runs in software: Go's crypto/mlkem for
// 768 and 1024, circl for 512, which Go does not have.

// MLKEMSet is one ML-KEM parameter set.
type MLKEMSet struct {
	Param  ck.ULong // CKP_ML_KEM_*, also the TPM's TPMI_MLKEM_PARAMETER_SET
	Name   string
	PubLen int // bytes of ek
	CtLen  int
	OID    asn1.ObjectIdentifier // id-alg-ml-kem-* (NIST CSOR)
}

// MLKEMSharedSecretLen is the size of every ML-KEM shared secret.
const MLKEMSharedSecretLen = 32

// MLKEMSets are the three parameter sets, by CKP_ML_KEM_* value.
var MLKEMSets = map[ck.ULong]*MLKEMSet{
	ck.CKP_ML_KEM_512:  {ck.CKP_ML_KEM_512, "ML-KEM-512", 800, 768, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 1}},
	ck.CKP_ML_KEM_768:  {ck.CKP_ML_KEM_768, "ML-KEM-768", 1184, 1088, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 2}},
	ck.CKP_ML_KEM_1024: {ck.CKP_ML_KEM_1024, "ML-KEM-1024", 1568, 1568, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 3}},
}

// MLKEMSetOf is the parameter set p (CKR_PARAMETER_SET_NOT_SUPPORTED if
// there is none such).
func MLKEMSetOf(p ck.ULong) (*MLKEMSet, error) {
	s, ok := MLKEMSets[p]
	if !ok {
		return nil, ck.Errorf(ck.CKR_PARAMETER_SET_NOT_SUPPORTED, "no ML-KEM parameter set %d", p)
	}
	return s, nil
}

// Encapsulate makes a fresh shared secret and its ciphertext for the
// FIPS 203 encoded public key ek; a bad ek is CKR_ATTRIBUTE_VALUE_INVALID.
func (s *MLKEMSet) Encapsulate(ek []byte) (secret, ciphertext []byte, err error) {
	if len(ek) != s.PubLen {
		return nil, nil, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "%s public key of %d bytes, want %d", s.Name, len(ek), s.PubLen)
	}
	switch s.Param {
	case ck.CKP_ML_KEM_512:
		pk, err := mlkem512.Scheme().UnmarshalBinaryPublicKey(ek)
		if err != nil {
			return nil, nil, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "%s public key: %v", s.Name, err)
		}
		ct, ss, err := mlkem512.Scheme().Encapsulate(pk)
		return ss, ct, err
	case ck.CKP_ML_KEM_768:
		k, err := mlkem.NewEncapsulationKey768(ek)
		if err != nil {
			return nil, nil, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "%s public key: %v", s.Name, err)
		}
		secret, ciphertext = k.Encapsulate()
		return secret, ciphertext, nil
	default:
		k, err := mlkem.NewEncapsulationKey1024(ek)
		if err != nil {
			return nil, nil, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "%s public key: %v", s.Name, err)
		}
		secret, ciphertext = k.Encapsulate()
		return secret, ciphertext, nil
	}
}

// CheckPublic fails unless ek is a public key of s (CKR_ATTRIBUTE_VALUE_INVALID).
func (s *MLKEMSet) CheckPublic(ek []byte) error {
	_, _, err := s.Encapsulate(ek)
	return err
}

// MLKEMDecapCall is TPM2_Decapsulate of Ciphertext: the shared secret.
type MLKEMDecapCall struct{ Ciphertext []byte }

func (MLKEMDecapCall) tpmCall() {}
