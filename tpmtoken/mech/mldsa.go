package mech

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"

	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"github.com/tpm11/tpm11/ck"
)

// ML-DSA (FIPS 204) as PKCS#11 3.2 has it: CKK_ML_DSA keys whose
// CKA_PARAMETER_SET is a CKP_ML_DSA_*, CKA_VALUE of the public key its FIPS
// 204 encoding (pk). The TPM signs (v1.85); verification is in software
// (cloudflare/circl: Go's standard library has no ML-DSA).

// MLDSASet is one ML-DSA parameter set.
type MLDSASet struct {
	Param  ck.ULong // CKP_ML_DSA_*, which is also the TPM's TPMI_MLDSA_PARAMETER_SET
	Name   string
	PubLen int // bytes of pk (CKA_VALUE of the public key)
	SigLen int
	OID    asn1.ObjectIdentifier // id-ml-dsa-* (NIST CSOR), the SPKI algorithm
	scheme sign.Scheme
}

// MLDSASets are the three parameter sets, by CKP_ML_DSA_* value.
var MLDSASets = map[ck.ULong]*MLDSASet{
	ck.CKP_ML_DSA_44: {Param: ck.CKP_ML_DSA_44, Name: "ML-DSA-44", PubLen: 1312, SigLen: 2420,
		OID: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17}, scheme: mldsa44.Scheme()},
	ck.CKP_ML_DSA_65: {Param: ck.CKP_ML_DSA_65, Name: "ML-DSA-65", PubLen: 1952, SigLen: 3309,
		OID: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}, scheme: mldsa65.Scheme()},
	ck.CKP_ML_DSA_87: {Param: ck.CKP_ML_DSA_87, Name: "ML-DSA-87", PubLen: 2592, SigLen: 4627,
		OID: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 19}, scheme: mldsa87.Scheme()},
}

// MLDSASetOf is the parameter set p (CKR_PARAMETER_SET_NOT_SUPPORTED if
// there is none such).
func MLDSASetOf(p ck.ULong) (*MLDSASet, error) {
	s, ok := MLDSASets[p]
	if !ok {
		return nil, ck.Errorf(ck.CKR_PARAMETER_SET_NOT_SUPPORTED, "no ML-DSA parameter set %d", p)
	}
	return s, nil
}

// MaxSignContext is the most bytes of a FIPS 204 context string.
const MaxSignContext = 255

// SignContext is CK_SIGN_ADDITIONAL_CONTEXT with its context copied in:
// the optional parameter of CKM_ML_DSA and CKM_HASH_ML_DSA_*.
type SignContext struct {
	Hedge   ck.ULong // CKH_*
	Context []byte
}

func (SignContext) param() {}

// MLDSAContext is the context string of an ML-DSA mechanism's parameter
// (none: empty). A TPM decides itself whether its signatures are hedged,
// and FIPS 204 makes hedged the default: CKH_DETERMINISTIC_REQUIRED cannot
// be promised (CKR_MECHANISM_PARAM_INVALID).
func MLDSAContext(m Mechanism) ([]byte, error) {
	switch p := m.Param.(type) {
	case nil:
		return nil, nil
	case Bytes:
		if len(p) == 0 {
			return nil, nil
		}
	case SignContext:
		if err := checkHedge(p.Hedge, p.Context); err != nil {
			return nil, err
		}
		return p.Context, nil
	}
	return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "mechanism 0x%x takes a CK_SIGN_ADDITIONAL_CONTEXT", m.Type)
}

// checkHedge checks the hedge variant and context string of an ML-DSA
// mechanism's parameter (pure or pre-hash).
func checkHedge(hedge ck.ULong, ctx []byte) error {
	if len(ctx) > MaxSignContext {
		return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "context of %d bytes, at most %d", len(ctx), MaxSignContext)
	}
	if hedge == ck.CKH_DETERMINISTIC_REQUIRED {
		return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "the TPM's ML-DSA signatures are not deterministic")
	}
	if hedge != ck.CKH_HEDGE_PREFERRED && hedge != ck.CKH_HEDGE_REQUIRED {
		return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "hedge variant %d", hedge)
	}
	return nil
}

// Verify checks an ML-DSA signature of msg under the FIPS 204
// encoded public key pub, with context ctx (circl).
func (s *MLDSASet) Verify(pub, msg, ctx, sig []byte) bool {
	pk, err := s.scheme.UnmarshalBinaryPublicKey(pub)
	if err != nil || len(sig) != s.SigLen {
		return false
	}
	return s.scheme.Verify(pk, msg, sig, &sign.SignatureOpts{Context: string(ctx)})
}

// CheckPublic fails unless pub is a public key of s (CKR_ATTRIBUTE_VALUE_INVALID).
func (s *MLDSASet) CheckPublic(pub []byte) error {
	if len(pub) != s.PubLen {
		return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "%s public key of %d bytes, want %d", s.Name, len(pub), s.PubLen)
	}
	if _, err := s.scheme.UnmarshalBinaryPublicKey(pub); err != nil {
		return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "%s public key: %v", s.Name, err)
	}
	return nil
}

// spki is SubjectPublicKeyInfo.
type spki struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// PQCSubjectPublicKeyInfo is the DER SubjectPublicKeyInfo of an ML-DSA or
// ML-KEM public key: the algorithm's NIST OID with parameters absent, the
// FIPS encoding as the BIT STRING (the IETF LAMPS X.509 profiles of ML-DSA
// and ML-KEM).
func PQCSubjectPublicKeyInfo(oid asn1.ObjectIdentifier, pub []byte) ([]byte, error) {
	return asn1.Marshal(spki{
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: oid},
		PublicKey: asn1.BitString{Bytes: pub, BitLength: 8 * len(pub)},
	})
}

// ParsePQCSubjectPublicKeyInfo returns the ML-DSA or ML-KEM parameter set
// (as a key type and CKP_* value) and the public key of a DER
// SubjectPublicKeyInfo.
func ParsePQCSubjectPublicKeyInfo(der []byte) (ck.KeyType, ck.ULong, []byte, error) {
	var s spki
	rest, err := asn1.Unmarshal(der, &s)
	if err != nil || len(rest) != 0 || len(s.Algorithm.Parameters.FullBytes) != 0 || s.PublicKey.BitLength%8 != 0 {
		return 0, 0, nil, errors.New("not a SubjectPublicKeyInfo of an ML-DSA or ML-KEM key")
	}
	for p, set := range MLDSASets {
		if set.OID.Equal(s.Algorithm.Algorithm) {
			return ck.CKK_ML_DSA, p, s.PublicKey.Bytes, set.CheckPublic(s.PublicKey.Bytes)
		}
	}
	for p, set := range MLKEMSets {
		if set.OID.Equal(s.Algorithm.Algorithm) {
			return ck.CKK_ML_KEM, p, s.PublicKey.Bytes, set.CheckPublic(s.PublicKey.Bytes)
		}
	}
	return 0, 0, nil, errors.New("not an ML-DSA or ML-KEM algorithm")
}

// MLDSASignCall is a pure ML-DSA signature of Message with Context, in
// one TPM sign sequence; the result is the Len-byte FIPS 204 signature.
type MLDSASignCall struct {
	Context, Message []byte
	Len              int
}

func (MLDSASignCall) tpmCall() {}

// PQCPublic is an ML-DSA or ML-KEM public key: what a key object's
// CKA_PUBLIC_KEY_INFO holds (crypto/x509 parses neither).
type PQCPublic struct {
	KeyType  ck.KeyType
	ParamSet ck.ULong
	Value    []byte // the FIPS 204 pk or FIPS 203 ek
}

// ParsePQCPublic is the PQCPublic of a DER SubjectPublicKeyInfo.
func ParsePQCPublic(der []byte) (*PQCPublic, error) {
	kt, ps, v, err := ParsePQCSubjectPublicKeyInfo(der)
	if err != nil {
		return nil, err
	}
	return &PQCPublic{KeyType: kt, ParamSet: ps, Value: v}, nil
}

// initMLDSA checks an ML-DSA key's parameter set and the mechanism's
// optional CK_SIGN_ADDITIONAL_CONTEXT.
func (s *Signature) initMLDSA(m Mechanism) (*Signature, error) {
	if _, ok := MLDSASets[s.key.ParamSet]; !ok {
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if s.key.PreHash != nil {
		return nil, ck.Errorf(ck.CKR_KEY_TYPE_INCONSISTENT, "a HashML-DSA key (pre-hash %v) makes no pure ML-DSA signature", s.key.PreHash.Hash)
	}
	ctx, err := MLDSAContext(m)
	if err != nil {
		return nil, err
	}
	s.ctx = ctx
	return s, nil
}

// Key kinds of the post-quantum mechanisms: their sizes are the public
// key's bytes (ML-DSA, ML-KEM key pair generation's CK_MECHANISM_INFO),
// and a TPM without the parameter sets reports none, so the mechanisms are
// not listed.
const (
	KindMLDSA KeyKind = 100 + iota
	KindMLKEM
)

func init() {
	signatures[ck.CKM_ML_DSA] = sigSpec{keyType: ck.CKK_ML_DSA, mldsa: true}
	infos[ck.CKM_ML_DSA_KEY_PAIR_GEN] = infoEntry{KindMLDSA, hw | ck.CKF_GENERATE_KEY_PAIR}
	infos[ck.CKM_ML_DSA] = infoEntry{KindMLDSA, sigF}
	infos[ck.CKM_ML_KEM_KEY_PAIR_GEN] = infoEntry{KindMLKEM, hw | ck.CKF_GENERATE_KEY_PAIR}
	infos[ck.CKM_ML_KEM] = infoEntry{KindMLKEM, hw | kemF}
}
