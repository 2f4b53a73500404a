package tpmtoken

import (
	"crypto"
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"slices"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// Mechanism is a mechanism and its raw parameter bytes.
type Mechanism struct {
	Type  ck.MechType
	Param []byte
}

// MechInfo is CK_MECHANISM_INFO; sizes in bits for RSA and EC keys, in
// bytes for secret keys, as the spec has them.
type MechInfo struct {
	Min, Max uint64
	Flags    uint64
}

// keyKind says which of the TPM's probed sizes a mechanism's info reports.
type keyKind int

const (
	kindNone keyKind = iota
	kindRSA
	kindEC
	kindAES
	kindSecret // generic secret (HMAC): the TPM's keyed-hash data
)

type mechEntry struct {
	kind  keyKind
	flags uint64
}

const (
	hw    = ck.CKF_HW
	ecF   = ck.CKF_EC_F_P | ck.CKF_EC_OID | ck.CKF_EC_UNCOMPRESS
	sigF  = hw | ck.CKF_SIGN | ck.CKF_VERIFY
	aesF  = hw | ck.CKF_ENCRYPT | ck.CKF_DECRYPT
	ecSig = sigF | ecF
)

// mechanisms lists only what works; sizes come from the TPM (Caps).
var mechanisms = map[ck.MechType]mechEntry{
	ck.CKM_EC_KEY_PAIR_GEN:        {kindEC, hw | ck.CKF_GENERATE_KEY_PAIR | ecF},
	ck.CKM_ECDSA:                  {kindEC, ecSig},
	ck.CKM_ECDSA_SHA1:             {kindEC, ecSig},
	ck.CKM_ECDSA_SHA224:           {kindEC, ecSig},
	ck.CKM_ECDSA_SHA256:           {kindEC, ecSig},
	ck.CKM_ECDSA_SHA384:           {kindEC, ecSig},
	ck.CKM_ECDSA_SHA512:           {kindEC, ecSig},
	ck.CKM_ECDH1_DERIVE:           {kindEC, hw | ck.CKF_DERIVE | ecF},
	ck.CKM_RSA_PKCS_KEY_PAIR_GEN:  {kindRSA, hw | ck.CKF_GENERATE_KEY_PAIR},
	ck.CKM_RSA_PKCS:               {kindRSA, sigF | ck.CKF_ENCRYPT | ck.CKF_DECRYPT},
	ck.CKM_RSA_X_509:              {kindRSA, sigF | ck.CKF_ENCRYPT | ck.CKF_DECRYPT},
	ck.CKM_RSA_PKCS_OAEP:          {kindRSA, hw | ck.CKF_ENCRYPT | ck.CKF_DECRYPT},
	ck.CKM_SHA1_RSA_PKCS:          {kindRSA, sigF},
	ck.CKM_SHA224_RSA_PKCS:        {kindRSA, sigF},
	ck.CKM_SHA256_RSA_PKCS:        {kindRSA, sigF},
	ck.CKM_SHA384_RSA_PKCS:        {kindRSA, sigF},
	ck.CKM_SHA512_RSA_PKCS:        {kindRSA, sigF},
	ck.CKM_RSA_PKCS_PSS:           {kindRSA, sigF},
	ck.CKM_SHA1_RSA_PKCS_PSS:      {kindRSA, sigF},
	ck.CKM_SHA224_RSA_PKCS_PSS:    {kindRSA, sigF},
	ck.CKM_SHA256_RSA_PKCS_PSS:    {kindRSA, sigF},
	ck.CKM_SHA384_RSA_PKCS_PSS:    {kindRSA, sigF},
	ck.CKM_SHA512_RSA_PKCS_PSS:    {kindRSA, sigF},
	ck.CKM_AES_KEY_GEN:            {kindAES, hw | ck.CKF_GENERATE},
	ck.CKM_AES_ECB:                {kindAES, aesF},
	ck.CKM_AES_CBC:                {kindAES, aesF},
	ck.CKM_AES_CBC_PAD:            {kindAES, aesF},
	ck.CKM_AES_CTR:                {kindAES, aesF},
	ck.CKM_AES_OFB:                {kindAES, aesF},
	ck.CKM_AES_CFB128:             {kindAES, aesF},
	ck.CKM_GENERIC_SECRET_KEY_GEN: {kindSecret, hw | ck.CKF_GENERATE},
	ck.CKM_SHA_1_HMAC:             {kindSecret, sigF},
	ck.CKM_SHA256_HMAC:            {kindSecret, sigF},
	ck.CKM_SHA384_HMAC:            {kindSecret, sigF},
	ck.CKM_SHA512_HMAC:            {kindSecret, sigF},
	ck.CKM_SHA_1:                  {kindNone, ck.CKF_DIGEST},
	ck.CKM_SHA224:                 {kindNone, ck.CKF_DIGEST},
	ck.CKM_SHA256:                 {kindNone, ck.CKF_DIGEST},
	ck.CKM_SHA384:                 {kindNone, ck.CKF_DIGEST},
	ck.CKM_SHA512:                 {kindNone, ck.CKF_DIGEST},
}

// maxSecretBytes is MAX_SYM_DATA: the most a keyed-hash object may hold.
const maxSecretBytes = 128

// sizes is the key-size range of kind on this TPM.
func (c caps) sizes(kind keyKind) (uint64, uint64) {
	span := func(v []int) (uint64, uint64) {
		if len(v) == 0 {
			return 0, 0
		}
		return uint64(slices.Min(v)), uint64(slices.Max(v))
	}
	switch kind {
	case kindRSA:
		return span(c.RSABits)
	case kindEC:
		var bits []int
		for _, cv := range c.Curves {
			bits = append(bits, tpm.CurveBytes(cv)*8)
		}
		lo, hi := span(bits)
		if hi == 528 {
			hi = 521 // P-521's field is 66 bytes, its size 521 bits
		}
		return lo, hi
	case kindAES:
		lo, hi := span(c.AESBits)
		return lo / 8, hi / 8
	case kindSecret:
		return 1, maxSecretBytes
	}
	return 0, 0
}

// MechanismList lists the mechanisms of slot id, sorted.
func (l *Library) MechanismList(id uint64) ([]ck.MechType, error) {
	if _, err := l.slot(id); err != nil {
		return nil, err
	}
	c := l.caps()
	out := make([]ck.MechType, 0, len(mechanisms))
	for m, e := range mechanisms {
		if _, hi := c.sizes(e.kind); e.kind != kindNone && hi == 0 {
			continue // the TPM offers no key of this kind
		}
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
	e, ok := mechanisms[m]
	if !ok {
		return MechInfo{}, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	info := MechInfo{Flags: e.flags}
	info.Min, info.Max = l.caps().sizes(e.kind)
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
	raw     bool        // CKM_RSA_X_509
	mac     crypto.Hash // HMAC in the TPM with a secret key
}

var signMechs = map[ck.MechType]mechSpec{
	ck.CKM_ECDSA:               {keyType: ck.CKK_EC},
	ck.CKM_ECDSA_SHA1:          {keyType: ck.CKK_EC, hash: crypto.SHA1},
	ck.CKM_ECDSA_SHA224:        {keyType: ck.CKK_EC, hash: crypto.SHA224},
	ck.CKM_SHA224_RSA_PKCS:     {keyType: ck.CKK_RSA, hash: crypto.SHA224},
	ck.CKM_SHA224_RSA_PKCS_PSS: {keyType: ck.CKK_RSA, hash: crypto.SHA224, pss: true},
	ck.CKM_ECDSA_SHA256:        {keyType: ck.CKK_EC, hash: crypto.SHA256},
	ck.CKM_ECDSA_SHA384:        {keyType: ck.CKK_EC, hash: crypto.SHA384},
	ck.CKM_ECDSA_SHA512:        {keyType: ck.CKK_EC, hash: crypto.SHA512},
	ck.CKM_RSA_PKCS:            {keyType: ck.CKK_RSA},
	ck.CKM_SHA_1_HMAC:          {keyType: ck.CKK_GENERIC_SECRET, mac: crypto.SHA1},
	ck.CKM_SHA256_HMAC:         {keyType: ck.CKK_GENERIC_SECRET, mac: crypto.SHA256},
	ck.CKM_SHA384_HMAC:         {keyType: ck.CKK_GENERIC_SECRET, mac: crypto.SHA384},
	ck.CKM_SHA512_HMAC:         {keyType: ck.CKK_GENERIC_SECRET, mac: crypto.SHA512},
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
