package tpm

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Post-quantum keys of the TPM 2.0 Library Specification v1.85: ML-DSA
// (FIPS 204, pure and pre-hash) and ML-KEM (FIPS 203). go-tpm has none of
// them, so their structures are marshalled here by hand, each after its
// table in Part 2; pqc_test.go holds the expected bytes written from those
// tables.

// Algorithm IDs (TCG Algorithm Registry).
const (
	AlgMLKEM     tpm2.TPMAlgID = 0x00A0
	AlgMLDSA     tpm2.TPMAlgID = 0x00A1
	AlgHashMLDSA tpm2.TPMAlgID = 0x00A2
)

// Command codes (Part 2 v1.85).
const (
	ccVerifySequenceComplete tpm2.TPMCC = 0x1A3
	ccSignSequenceComplete   tpm2.TPMCC = 0x1A4
	ccVerifyDigestSignature  tpm2.TPMCC = 0x1A5
	ccSignDigest             tpm2.TPMCC = 0x1A6
	ccEncapsulate            tpm2.TPMCC = 0x1A7
	ccDecapsulate            tpm2.TPMCC = 0x1A8
	ccVerifySequenceStart    tpm2.TPMCC = 0x1A9
	ccSignSequenceStart      tpm2.TPMCC = 0x1AA
)

// Structure tags of the v1.85 tickets (Part 2 v1.85).
const (
	stMessageVerified = 0x8026 // TPM_ST_MESSAGE_VERIFIED
	stDigestVerified  = 0x8027 // TPM_ST_DIGEST_VERIFIED
)

// Response codes new in v1.85 (Part 2 v1.85), format one.
const (
	RCExtMu            tpm2.TPMRC = 0x0AB // TPM_RC_EXT_MU: the key does not allow external mu
	RCOneShotSignature tpm2.TPMRC = 0x0AC // TPM_RC_ONE_SHOT_SIGNATURE
	RCSignContextKey   tpm2.TPMRC = 0x0AD // TPM_RC_SIGN_CONTEXT_KEY: not the sequence's key
)

// ptMLParameterSets is TPM_PT_ML_PARAMETER_SETS (PT_FIXED + 49): a
// TPMA_ML_PARAMETER_SET of the parameter sets the TPM implements.
const ptMLParameterSets tpm2.TPMPT = 0x100 + 49

// MLParameterSets is TPMA_ML_PARAMETER_SET (Part 2 v1.85).
type MLParameterSets uint32

// The bits of TPMA_ML_PARAMETER_SET.
const (
	MLKEM512    MLParameterSets = 1 << 0
	MLKEM768    MLParameterSets = 1 << 1
	MLKEM1024   MLParameterSets = 1 << 2
	MLDSA44     MLParameterSets = 1 << 3
	MLDSA65     MLParameterSets = 1 << 4
	MLDSA87     MLParameterSets = 1 << 5
	MLExtMu     MLParameterSets = 1 << 6 // allowExternalMu is supported
	mlSetsKnown                 = 1<<7 - 1
)

// MLDSAParams is TPMI_MLDSA_PARAMETER_SET (Part 2 v1.85).
type MLDSAParams uint16

const (
	MLDSA_44 MLDSAParams = 1
	MLDSA_65 MLDSAParams = 2
	MLDSA_87 MLDSAParams = 3
)

// MLKEMParams is TPMI_MLKEM_PARAMETER_SET (Part 2 v1.85).
type MLKEMParams uint16

const (
	MLKEM_512  MLKEMParams = 1
	MLKEM_768  MLKEMParams = 2
	MLKEM_1024 MLKEMParams = 3
)

// Sizes of FIPS 204 Table 2 and FIPS 203 Table 3, per parameter set.
var (
	mldsaSizes = map[MLDSAParams]struct {
		pub, sig int
		bit      MLParameterSets
		name     string
	}{
		MLDSA_44: {1312, 2420, MLDSA44, "ML-DSA-44"},
		MLDSA_65: {1952, 3309, MLDSA65, "ML-DSA-65"},
		MLDSA_87: {2592, 4627, MLDSA87, "ML-DSA-87"},
	}
	mlkemSizes = map[MLKEMParams]struct {
		pub, ct int
		bit     MLParameterSets
		name    string
	}{
		MLKEM_512:  {800, 768, MLKEM512, "ML-KEM-512"},
		MLKEM_768:  {1184, 1088, MLKEM768, "ML-KEM-768"},
		MLKEM_1024: {1568, 1568, MLKEM1024, "ML-KEM-1024"},
	}
)

// PublicKeySize is the size of an encoded ML-DSA public key (pk).
func (p MLDSAParams) PublicKeySize() int { return mldsaSizes[p].pub }

// SignatureSize is the size of an ML-DSA signature.
func (p MLDSAParams) SignatureSize() int { return mldsaSizes[p].sig }

// Bit is p's bit in TPMA_ML_PARAMETER_SET.
func (p MLDSAParams) Bit() MLParameterSets { return mldsaSizes[p].bit }

func (p MLDSAParams) String() string {
	if s, ok := mldsaSizes[p]; ok {
		return s.name
	}
	return fmt.Sprintf("ML-DSA parameter set %#x", uint16(p))
}

// PublicKeySize is the size of an encoded ML-KEM encapsulation key (ek).
func (p MLKEMParams) PublicKeySize() int { return mlkemSizes[p].pub }

// CiphertextSize is the size of an ML-KEM ciphertext.
func (p MLKEMParams) CiphertextSize() int { return mlkemSizes[p].ct }

// Bit is p's bit in TPMA_ML_PARAMETER_SET.
func (p MLKEMParams) Bit() MLParameterSets { return mlkemSizes[p].bit }

func (p MLKEMParams) String() string {
	if s, ok := mlkemSizes[p]; ok {
		return s.name
	}
	return fmt.Sprintf("ML-KEM parameter set %#x", uint16(p))
}

// MLSharedSecretSize is the size of an ML-KEM shared secret (FIPS 203).
const MLSharedSecretSize = 32

// MaxSignatureContext is the most context bytes FIPS 204 allows (and
// TPM2B_SIGNATURE_CTX holds).
const MaxSignatureContext = 255

// PQCPublic is the TPMT_PUBLIC of an ML-DSA, HashML-DSA or ML-KEM key
// (Part 2 v1.85): the common fields, then the
// parameters of its type, then its public key (TPMU_PUBLIC_ID's mldsa or
// mlkem arm, a TPM2B of the FIPS encoding).
type PQCPublic struct {
	Type       tpm2.TPMAlgID
	NameAlg    tpm2.TPMAlgID
	Attributes tpm2.TPMAObject
	AuthPolicy []byte
	// ParameterSet is an MLDSAParams (ML-DSA, HashML-DSA) or an
	// MLKEMParams (ML-KEM).
	ParameterSet uint16
	// AllowExternalMu (ML-DSA): TPM2_SignDigest may sign a mu the caller
	// computed (TPMS_MLDSA_PARMS.allowExternalMu).
	AllowExternalMu bool
	// HashAlg (HashML-DSA) is the pre-hash PH (TPMS_HASH_MLDSA_PARMS.hashAlg).
	HashAlg tpm2.TPMAlgID
	// Symmetric (ML-KEM) is the key's symmetric algorithm: TPM_ALG_NULL
	// (Algorithm 0 here is marshalled as NULL) unless restricted.
	Symmetric tpm2.TPMTSymDefObject
	// Unique is the public key, empty in a template.
	Unique []byte
}

// MLDSA reports p's ML-DSA parameter set.
func (p *PQCPublic) MLDSA() MLDSAParams { return MLDSAParams(p.ParameterSet) }

// MLKEM reports p's ML-KEM parameter set.
func (p *PQCPublic) MLKEM() MLKEMParams { return MLKEMParams(p.ParameterSet) }

// Marshal is p's TPMT_PUBLIC.
func (p *PQCPublic) Marshal() []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(p.Type))
	b = binary.BigEndian.AppendUint16(b, uint16(p.NameAlg))
	b = append(b, tpm2.Marshal(p.Attributes)...)
	b = appendTPM2B(b, p.AuthPolicy)
	switch p.Type {
	case AlgMLDSA: // TPMS_MLDSA_PARMS
		b = binary.BigEndian.AppendUint16(b, p.ParameterSet)
		b = append(b, boolByte(p.AllowExternalMu))
	case AlgHashMLDSA: // TPMS_HASH_MLDSA_PARMS
		b = binary.BigEndian.AppendUint16(b, p.ParameterSet)
		b = binary.BigEndian.AppendUint16(b, uint16(p.HashAlg))
	case AlgMLKEM: // TPMS_MLKEM_PARMS
		b = appendSymDefObject(b, p.Symmetric)
		b = binary.BigEndian.AppendUint16(b, p.ParameterSet)
	}
	return appendTPM2B(b, p.Unique)
}

// Public2B is p as the TPM2B_PUBLIC go-tpm's commands carry (as bytes:
// go-tpm cannot marshal these types itself).
func (p *PQCPublic) Public2B() tpm2.TPM2BPublic {
	return tpm2.BytesAs2B[tpm2.TPMTPublic](p.Marshal())
}

// Name is the object's TPM Name: nameAlg || H(TPMT_PUBLIC).
func (p *PQCPublic) Name() (tpm2.TPM2BName, error) {
	h, err := p.NameAlg.Hash()
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	d := h.New()
	d.Write(p.Marshal())
	return tpm2.TPM2BName{Buffer: d.Sum(binary.BigEndian.AppendUint16(nil, uint16(p.NameAlg)))}, nil
}

// IsPQCPublic reports whether a TPMT_PUBLIC (as bytes) is of a type here.
func IsPQCPublic(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	switch tpm2.TPMAlgID(binary.BigEndian.Uint16(b)) {
	case AlgMLDSA, AlgHashMLDSA, AlgMLKEM:
		return true
	}
	return false
}

// ParsePQCPublic parses a TPMT_PUBLIC of a type here; anything else, or
// bytes left over, is an error.
func ParsePQCPublic(b []byte) (*PQCPublic, error) {
	r := reader{b: b}
	p := &PQCPublic{Type: tpm2.TPMAlgID(r.u16()), NameAlg: tpm2.TPMAlgID(r.u16())}
	attrs := r.u32()
	p.Attributes = tpm2.TPMAObject{}
	if err := unmarshalBits(attrs, &p.Attributes); err != nil {
		return nil, err
	}
	p.AuthPolicy = r.tpm2b()
	switch p.Type {
	case AlgMLDSA:
		p.ParameterSet = r.u16()
		p.AllowExternalMu = r.u8() != 0
	case AlgHashMLDSA:
		p.ParameterSet = r.u16()
		p.HashAlg = tpm2.TPMAlgID(r.u16())
	case AlgMLKEM:
		p.Symmetric = r.symDefObject()
		p.ParameterSet = r.u16()
	default:
		return nil, fmt.Errorf("public area of type %#04x is not ML-DSA or ML-KEM", uint16(p.Type))
	}
	p.Unique = r.tpm2b()
	if err := r.end("TPMT_PUBLIC"); err != nil {
		return nil, err
	}
	return p, nil
}

// unmarshalBits fills a go-tpm attribute bit field from its wire value.
func unmarshalBits(v uint32, a *tpm2.TPMAObject) error {
	got, err := tpm2.Unmarshal[tpm2.TPMAObject](binary.BigEndian.AppendUint32(nil, v))
	if err != nil {
		return err
	}
	*a = *got
	return nil
}

// MLDSAKeyTemplate is an unrestricted pure ML-DSA signing key under the
// token's storage key (keyAttrs: the parent's PIN gates loading it). No
// external mu: the TPM computes mu from the message itself.
func MLDSAKeyTemplate(ps MLDSAParams) *PQCPublic {
	a := keyAttrs()
	a.SignEncrypt = true
	return &PQCPublic{Type: AlgMLDSA, NameAlg: tpm2.TPMAlgSHA256, Attributes: a, ParameterSet: uint16(ps)}
}

// HashMLDSAKeyTemplate is an unrestricted HashML-DSA signing key whose
// pre-hash is hash (a HashML-DSA key signs with that one hash only).
func HashMLDSAKeyTemplate(ps MLDSAParams, hash tpm2.TPMAlgID) *PQCPublic {
	a := keyAttrs()
	a.SignEncrypt = true
	return &PQCPublic{Type: AlgHashMLDSA, NameAlg: tpm2.TPMAlgSHA256, Attributes: a, ParameterSet: uint16(ps), HashAlg: hash}
}

// MLKEMKeyTemplate is an unrestricted ML-KEM decapsulation key (decrypt,
// no symmetric algorithm: it is not a storage key).
func MLKEMKeyTemplate(ps MLKEMParams) *PQCPublic {
	a := keyAttrs()
	a.Decrypt = true
	return &PQCPublic{Type: AlgMLKEM, NameAlg: tpm2.TPMAlgSHA256, Attributes: a, ParameterSet: uint16(ps),
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}}
}

// PQCSignature is a TPMT_SIGNATURE of the ML-DSA kinds (Part 2 v1.85,
// TPMU_SIGNATURE): sigAlg TPM_ALG_MLDSA with the signature as a
// TPM2B_SIGNATURE_MLDSA, or TPM_ALG_HASH_MLDSA with the pre-hash algorithm
// first (TPMS_SIGNATURE_HASH_MLDSA).
type PQCSignature struct {
	Alg  tpm2.TPMAlgID
	Hash tpm2.TPMAlgID // HashML-DSA only
	Sig  []byte
}

// Marshal is s's TPMT_SIGNATURE.
func (s *PQCSignature) Marshal() []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(s.Alg))
	if s.Alg == AlgHashMLDSA {
		b = binary.BigEndian.AppendUint16(b, uint16(s.Hash))
	}
	return appendTPM2B(b, s.Sig)
}

func (r *reader) signature() *PQCSignature {
	s := &PQCSignature{Alg: tpm2.TPMAlgID(r.u16())}
	switch s.Alg {
	case AlgMLDSA:
	case AlgHashMLDSA:
		s.Hash = tpm2.TPMAlgID(r.u16())
	default:
		r.bad, r.b = true, nil
		return nil
	}
	s.Sig = r.tpm2b()
	return s
}

// Verified is a TPMT_TK_VERIFIED (Part 2 v1.85): the tag says
// what was verified (a message, a digest); Meta, for a digest, the hash.
type Verified struct {
	Tag       uint16
	Hierarchy tpm2.TPMHandle
	Meta      tpm2.TPMAlgID
	HMAC      []byte
}

func (r *reader) verified() Verified {
	v := Verified{Tag: r.u16(), Hierarchy: tpm2.TPMHandle(r.u32())}
	// TPMU_TK_VERIFIED_META, selected by the tag: a TPM_ALG_ID for a
	// digest. fwTPM leaves it out of a NULL ticket (hierarchy TPM_RH_NULL,
	// an empty hmac: "<tag, TPM_RH_NULL, 0x0000>"), so a NULL ticket is
	// read either way.
	if v.Tag == stDigestVerified && !(v.Hierarchy == tpm2.TPMRHNull && len(r.b) == 2) {
		v.Meta = tpm2.TPMAlgID(r.u16())
	}
	v.HMAC = r.tpm2b()
	return v
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// appendSymDefObject marshals a TPMT_SYM_DEF_OBJECT: the algorithm, and
// for a cipher its key bits and mode; TPM_ALG_NULL (or 0) alone.
func appendSymDefObject(b []byte, s tpm2.TPMTSymDefObject) []byte {
	if s.Algorithm == 0 || s.Algorithm == tpm2.TPMAlgNull {
		return binary.BigEndian.AppendUint16(b, uint16(tpm2.TPMAlgNull))
	}
	return append(b, tpm2.Marshal(s)...)
}

func (r *reader) symDefObject() tpm2.TPMTSymDefObject {
	alg := tpm2.TPMAlgID(r.u16())
	if alg == tpm2.TPMAlgNull {
		return tpm2.TPMTSymDefObject{Algorithm: alg}
	}
	bits, mode := r.u16(), tpm2.TPMAlgID(r.u16())
	return tpm2.TPMTSymDefObject{
		Algorithm: alg,
		KeyBits:   tpm2.NewTPMUSymKeyBits(alg, tpm2.TPMKeyBits(bits)),
		Mode:      tpm2.NewTPMUSymMode(alg, mode),
	}
}
