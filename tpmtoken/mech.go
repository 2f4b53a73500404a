package tpmtoken

import (
	"crypto"
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"slices"

	"github.com/tpm11/tpm11/ck"
)

// Mechanism is a mechanism and its raw parameter bytes.
type Mechanism struct {
	Type  ck.MechType
	Param []byte
}

// MechInfo is CK_MECHANISM_INFO; sizes in bits.
type MechInfo struct {
	Min, Max uint64
	Flags    uint64
}

const hw = ck.CKF_HW

// mechanisms lists only what works, with true sizes (bits).
var mechanisms = map[ck.MechType]MechInfo{
	ck.CKM_EC_KEY_PAIR_GEN:       {256, 384, hw | ck.CKF_GENERATE_KEY_PAIR | ck.CKF_EC_F_P | ck.CKF_EC_OID | ck.CKF_EC_UNCOMPRESS},
	ck.CKM_ECDSA:                 {256, 384, hw | ck.CKF_SIGN | ck.CKF_VERIFY | ck.CKF_EC_F_P | ck.CKF_EC_OID | ck.CKF_EC_UNCOMPRESS},
	ck.CKM_ECDSA_SHA1:            {256, 384, hw | ck.CKF_SIGN | ck.CKF_VERIFY | ck.CKF_EC_F_P | ck.CKF_EC_OID | ck.CKF_EC_UNCOMPRESS},
	ck.CKM_ECDSA_SHA256:          {256, 384, hw | ck.CKF_SIGN | ck.CKF_VERIFY | ck.CKF_EC_F_P | ck.CKF_EC_OID | ck.CKF_EC_UNCOMPRESS},
	ck.CKM_ECDSA_SHA384:          {256, 384, hw | ck.CKF_SIGN | ck.CKF_VERIFY | ck.CKF_EC_F_P | ck.CKF_EC_OID | ck.CKF_EC_UNCOMPRESS},
	ck.CKM_ECDSA_SHA512:          {256, 384, hw | ck.CKF_SIGN | ck.CKF_VERIFY | ck.CKF_EC_F_P | ck.CKF_EC_OID | ck.CKF_EC_UNCOMPRESS},
	ck.CKM_RSA_PKCS_KEY_PAIR_GEN: {2048, 2048, hw | ck.CKF_GENERATE_KEY_PAIR},
	ck.CKM_RSA_PKCS:              {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY | ck.CKF_DECRYPT},
	ck.CKM_RSA_X_509:             {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY | ck.CKF_DECRYPT},
	ck.CKM_RSA_PKCS_OAEP:         {2048, 2048, hw | ck.CKF_DECRYPT},
	ck.CKM_SHA1_RSA_PKCS:         {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY},
	ck.CKM_SHA256_RSA_PKCS:       {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY},
	ck.CKM_SHA384_RSA_PKCS:       {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY},
	ck.CKM_SHA512_RSA_PKCS:       {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY},
	ck.CKM_RSA_PKCS_PSS:          {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY},
	ck.CKM_SHA1_RSA_PKCS_PSS:     {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY},
	ck.CKM_SHA256_RSA_PKCS_PSS:   {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY},
	ck.CKM_SHA384_RSA_PKCS_PSS:   {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY},
	ck.CKM_SHA512_RSA_PKCS_PSS:   {2048, 2048, hw | ck.CKF_SIGN | ck.CKF_VERIFY},
	ck.CKM_SHA_1:                 {0, 0, ck.CKF_DIGEST},
	ck.CKM_SHA224:                {0, 0, ck.CKF_DIGEST},
	ck.CKM_SHA256:                {0, 0, ck.CKF_DIGEST},
	ck.CKM_SHA384:                {0, 0, ck.CKF_DIGEST},
	ck.CKM_SHA512:                {0, 0, ck.CKF_DIGEST},
}

// MechanismList lists the mechanisms of slot id, sorted.
func (l *Library) MechanismList(id uint64) ([]ck.MechType, error) {
	if _, err := l.slot(id); err != nil {
		return nil, err
	}
	out := make([]ck.MechType, 0, len(mechanisms))
	for m := range mechanisms {
		out = append(out, m)
	}
	slices.Sort(out)
	return out, nil
}

// MechanismInfo describes one mechanism.
func (l *Library) MechanismInfo(id uint64, m ck.MechType) (MechInfo, error) {
	if _, err := l.slot(id); err != nil {
		return MechInfo{}, err
	}
	info, ok := mechanisms[m]
	if !ok {
		return MechInfo{}, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if l.Simulated() {
		info.Flags &^= ck.CKF_HW // a simulator is not hardware: say so
	}
	return info, nil
}

// mechSpec says how a signature mechanism works.
type mechSpec struct {
	keyType ck.KeyType
	hash    crypto.Hash // hashed in software first; 0 for raw input
	pss     bool
	raw     bool // CKM_RSA_X_509
}

var signMechs = map[ck.MechType]mechSpec{
	ck.CKM_ECDSA:               {keyType: ck.CKK_EC},
	ck.CKM_ECDSA_SHA1:          {keyType: ck.CKK_EC, hash: crypto.SHA1},
	ck.CKM_ECDSA_SHA256:        {keyType: ck.CKK_EC, hash: crypto.SHA256},
	ck.CKM_ECDSA_SHA384:        {keyType: ck.CKK_EC, hash: crypto.SHA384},
	ck.CKM_ECDSA_SHA512:        {keyType: ck.CKK_EC, hash: crypto.SHA512},
	ck.CKM_RSA_PKCS:            {keyType: ck.CKK_RSA},
	ck.CKM_RSA_X_509:           {keyType: ck.CKK_RSA, raw: true},
	ck.CKM_SHA1_RSA_PKCS:       {keyType: ck.CKK_RSA, hash: crypto.SHA1},
	ck.CKM_SHA256_RSA_PKCS:     {keyType: ck.CKK_RSA, hash: crypto.SHA256},
	ck.CKM_SHA384_RSA_PKCS:     {keyType: ck.CKK_RSA, hash: crypto.SHA384},
	ck.CKM_SHA512_RSA_PKCS:     {keyType: ck.CKK_RSA, hash: crypto.SHA512},
	ck.CKM_RSA_PKCS_PSS:        {keyType: ck.CKK_RSA, pss: true},
	ck.CKM_SHA1_RSA_PKCS_PSS:   {keyType: ck.CKK_RSA, hash: crypto.SHA1, pss: true},
	ck.CKM_SHA256_RSA_PKCS_PSS: {keyType: ck.CKK_RSA, hash: crypto.SHA256, pss: true},
	ck.CKM_SHA384_RSA_PKCS_PSS: {keyType: ck.CKK_RSA, hash: crypto.SHA384, pss: true},
	ck.CKM_SHA512_RSA_PKCS_PSS: {keyType: ck.CKK_RSA, hash: crypto.SHA512, pss: true},
}

var ckmHash = map[ck.MechType]crypto.Hash{
	ck.CKM_SHA_1: crypto.SHA1, ck.CKM_SHA224: crypto.SHA224, ck.CKM_SHA256: crypto.SHA256,
	ck.CKM_SHA384: crypto.SHA384, ck.CKM_SHA512: crypto.SHA512,
}

var mgfHash = map[uint64]crypto.Hash{
	ck.CKG_MGF1_SHA1: crypto.SHA1, ck.CKG_MGF1_SHA224: crypto.SHA224, ck.CKG_MGF1_SHA256: crypto.SHA256,
	ck.CKG_MGF1_SHA384: crypto.SHA384, ck.CKG_MGF1_SHA512: crypto.SHA512,
}

// pssParams is CK_RSA_PKCS_PSS_PARAMS decoded and checked.
type pssParams struct {
	hash crypto.Hash
	sLen int
}

func parsePSS(m Mechanism, spec mechSpec) (pssParams, error) {
	if len(m.Param) != 24 {
		return pssParams{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CK_RSA_PKCS_PSS_PARAMS is 24 bytes, got %d", len(m.Param))
	}
	hashAlg := binary.NativeEndian.Uint64(m.Param[0:])
	mgf := binary.NativeEndian.Uint64(m.Param[8:])
	sLen := binary.NativeEndian.Uint64(m.Param[16:])
	h, ok := ckmHash[hashAlg]
	if !ok || (spec.hash != 0 && h != spec.hash) {
		return pssParams{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "PSS hashAlg 0x%x", hashAlg)
	}
	// Go's and the TPM's PSS use the message hash for MGF1.
	if mgfHash[mgf] != h {
		return pssParams{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "PSS MGF 0x%x must match hashAlg", mgf)
	}
	if sLen > 512 {
		return pssParams{}, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "PSS sLen %d", sLen)
	}
	return pssParams{hash: h, sLen: int(sLen)}, nil
}
