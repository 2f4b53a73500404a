package mech

import (
	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
)

// HashML-DSA (FIPS 204 §5.4, PKCS#11 3.2 ml_dsa.md): CKM_HASH_ML_DSA_<hash>
// hashes the message here (single- and multi-part) and has the TPM sign
// the digest (TPM2_SignDigest); CKM_HASH_ML_DSA signs a digest the caller
// made, naming its hash in CK_HASH_SIGN_ADDITIONAL_CONTEXT. A TPM's
// HashML-DSA key (TPM_ALG_HASH_MLDSA) is bound to one pre-hash and makes
// no pure ML-DSA signature (docs/pqc.md): a key's Key.PreHash says which
// it is, and any other mechanism is CKR_KEY_TYPE_INCONSISTENT. Signing
// only: no Go library verifies HashML-DSA, so C_VerifyInit refuses them.

// HashSignContext is CK_HASH_SIGN_ADDITIONAL_CONTEXT with its context
// copied in: the parameter of CKM_HASH_ML_DSA.
type HashSignContext struct {
	Hedge   ck.ULong // CKH_*
	Context []byte
	Hash    ck.MechType // CKM_SHA256, ...
}

func (HashSignContext) param() {}

// hashMLDSAHashes are the pre-hashes offered, with the mechanism that
// hashes with each: those a TPM may bind a HashML-DSA key to and the
// token hashes with (fwTPM has SHA-256 and SHA-384).
var hashMLDSAHashes = map[ck.MechType]ck.MechType{
	ck.CKM_HASH_ML_DSA_SHA256: ck.CKM_SHA256,
	ck.CKM_HASH_ML_DSA_SHA384: ck.CKM_SHA384,
}

// HashMLDSAPreHash is the pre-hash of the HashML-DSA mechanism m (nil for
// CKM_HASH_ML_DSA, which names none, and for any other mechanism).
func HashMLDSAPreHash(m ck.MechType) *Hash {
	if d, ok := hashMLDSAHashes[m]; ok {
		return HashOf(d)
	}
	return nil
}

// IsHashMLDSA reports whether m is CKM_HASH_ML_DSA or one of the
// CKM_HASH_ML_DSA_<hash> the token offers.
func IsHashMLDSA(m ck.MechType) bool {
	_, ok := hashMLDSAHashes[m]
	return ok || m == ck.CKM_HASH_ML_DSA
}

// SignOnly reports whether m signs but does not verify here (HashML-DSA:
// nothing verifies it in software).
func SignOnly(m ck.MechType) bool { return IsHashMLDSA(m) }

// initHashMLDSA checks a HashML-DSA mechanism against its key: the key
// must be a TPM HashML-DSA key bound to the mechanism's pre-hash.
func (s *Signature) initHashMLDSA(m Mechanism) (*Signature, error) {
	if _, ok := MLDSASets[s.key.ParamSet]; !ok || s.key.PreHash == nil {
		return nil, ck.Errorf(ck.CKR_KEY_TYPE_INCONSISTENT, "mechanism 0x%x needs a HashML-DSA key (made with CKA_ALLOWED_MECHANISMS naming one CKM_HASH_ML_DSA_<hash>)", m.Type)
	}
	h := s.spec.hash
	if h != nil {
		ctx, err := MLDSAContext(m) // CK_SIGN_ADDITIONAL_CONTEXT, optional
		if err != nil {
			return nil, err
		}
		s.ctx = ctx
	} else {
		p, ok := m.Param.(HashSignContext)
		if !ok {
			return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_HASH_ML_DSA takes a CK_HASH_SIGN_ADDITIONAL_CONTEXT")
		}
		if err := checkHedge(p.Hedge, p.Context); err != nil {
			return nil, err
		}
		for hm, d := range hashMLDSAHashes {
			if d == p.Hash {
				h = HashMLDSAPreHash(hm)
			}
		}
		if h == nil {
			return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "HashML-DSA with hash 0x%x is not offered", p.Hash)
		}
		s.ctx = p.Context
	}
	if h != s.key.PreHash {
		return nil, ck.Errorf(ck.CKR_KEY_TYPE_INCONSISTENT, "the key's pre-hash is %v, not %v", s.key.PreHash.Hash, h.Hash)
	}
	s.preHash = h
	return s, nil
}

// HashMLDSASignCall is a HashML-DSA signature of Digest (the pre-hash
// Hash of the message) with Context, by TPM2_SignDigest; the result is
// the Len-byte FIPS 204 signature.
type HashMLDSASignCall struct {
	Context, Digest []byte
	Hash            tpm2.TPMAlgID
	Len             int
}

func (HashMLDSASignCall) tpmCall() {}

// hashMLDSAPlan signs the digest (made here for CKM_HASH_ML_DSA_<hash>,
// the caller's for CKM_HASH_ML_DSA: it must be as long as the hash's).
func (s *Signature) hashMLDSAPlan(digest []byte) (TPMCall, error) {
	if len(digest) != s.preHash.Size() {
		return nil, ck.Errorf(ck.CKR_DATA_LEN_RANGE, "a %v digest is %d bytes, not %d", s.preHash.Hash, s.preHash.Size(), len(digest))
	}
	return HashMLDSASignCall{Context: s.ctx, Digest: digest, Hash: s.preHash.TPM, Len: s.Len()}, nil
}

// Key kinds of the HashML-DSA mechanisms: the ML-DSA public key sizes of
// the parameter sets the TPM makes HashML-DSA keys of, with that hash
// (KindHashMLDSA: with any offered hash).
const (
	KindHashMLDSA KeyKind = 110 + iota
	KindHashMLDSASHA256
	KindHashMLDSASHA384
)

// HashMLDSAKinds are the pre-hash of each kind (nil: any offered).
var HashMLDSAKinds = map[KeyKind]*Hash{
	KindHashMLDSA:       nil,
	KindHashMLDSASHA256: HashOf(ck.CKM_SHA256),
	KindHashMLDSASHA384: HashOf(ck.CKM_SHA384),
}

// After info.go's init (file order): these are sign-only, single- and
// multi-part for CKM_HASH_ML_DSA_<hash>, single-part for CKM_HASH_ML_DSA.
func init() {
	signatures[ck.CKM_HASH_ML_DSA] = sigSpec{keyType: ck.CKK_ML_DSA, hashMLDSA: true}
	infos[ck.CKM_HASH_ML_DSA] = infoEntry{KindHashMLDSA, hw | ck.CKF_SIGN}
	kinds := map[ck.MechType]KeyKind{ck.CKM_HASH_ML_DSA_SHA256: KindHashMLDSASHA256, ck.CKM_HASH_ML_DSA_SHA384: KindHashMLDSASHA384}
	for m, k := range kinds {
		signatures[m] = sigSpec{keyType: ck.CKK_ML_DSA, hashMLDSA: true, hash: HashMLDSAPreHash(m)}
		infos[m] = infoEntry{k, hw | ck.CKF_SIGN}
	}
}
