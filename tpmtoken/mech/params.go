package mech

import "github.com/tpm11/tpm11/ck"

// Mechanism is a CK_MECHANISM decoded by the C layer: its type and its
// parameter as a typed value (nil when the caller gave none).
type Mechanism struct {
	Type  ck.MechType
	Param Param
}

// Param is one of the parameter types below.
type Param interface{ param() }

// Bytes is a parameter that is a plain byte string (an IV), or the bytes
// of a parameter the C layer has no structure for.
type Bytes []byte

// OAEPParams is CK_RSA_PKCS_OAEP_PARAMS with its label copied in.
type OAEPParams struct {
	HashAlg ck.MechType
	MGF     ck.MGF
	Source  ck.ULong // CKZ_DATA_SPECIFIED or 0
	Label   []byte
}

// PSSParams is CK_RSA_PKCS_PSS_PARAMS.
type PSSParams struct {
	HashAlg ck.MechType
	MGF     ck.MGF
	SaltLen ck.ULong
}

// ECDH1Params is CK_ECDH1_DERIVE_PARAMS with its data copied in.
type ECDH1Params struct {
	KDF        ck.KDF
	SharedData []byte
	PublicData []byte
}

// CTRParams is CK_AES_CTR_PARAMS.
type CTRParams struct {
	CounterBits ck.ULong
	Block       [16]byte
}

func (Bytes) param()       {}
func (OAEPParams) param()  {}
func (PSSParams) param()   {}
func (ECDH1Params) param() {}
func (CTRParams) param()   {}

// ParamKind says which C structure a mechanism's parameter is, so the C
// layer knows what to decode without knowing any mechanism itself.
type ParamKind int

const (
	ParamBytes ParamKind = iota // none, or a byte string (IV)
	ParamOAEP
	ParamPSS
	ParamECDH1
	ParamCTR
	ParamCCM
	ParamSignContext     // CK_SIGN_ADDITIONAL_CONTEXT (mldsa.go)
	ParamHashSignContext // CK_HASH_SIGN_ADDITIONAL_CONTEXT (mldsa_hash.go)
)

// ParamKindOf is the parameter structure mechanism t takes.
func ParamKindOf(t ck.MechType) ParamKind {
	switch {
	case t == ck.CKM_RSA_PKCS_OAEP:
		return ParamOAEP
	case t == ck.CKM_ECDH1_DERIVE, t == ck.CKM_ECDH1_COFACTOR_DERIVE:
		return ParamECDH1
	case t == ck.CKM_AES_CTR:
		return ParamCTR
	case t == ck.CKM_AES_CCM:
		return ParamCCM
	case t == ck.CKM_HASH_ML_DSA:
		return ParamHashSignContext
	}
	if s, ok := signatures[t]; ok && s.pss {
		return ParamPSS
	}
	if s, ok := signatures[t]; ok && (s.mldsa || s.hashMLDSA) {
		return ParamSignContext
	}
	return ParamBytes
}

// noParam fails unless m carries no parameter (or an empty one).
func noParam(m Mechanism) error {
	if b, ok := m.Param.(Bytes); m.Param == nil || (ok && len(b) == 0) {
		return nil
	}
	return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "mechanism 0x%x takes no parameter", m.Type)
}

// bytesParam returns m's byte-string parameter.
func bytesParam(m Mechanism) []byte {
	b, _ := m.Param.(Bytes)
	return b
}
