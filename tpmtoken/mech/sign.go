package mech

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
)

// sigSpec says how a signature or MAC mechanism works.
type sigSpec struct {
	keyType ck.KeyType
	hash    *Hash // hashed in software first; nil for raw input
	pss     bool
	raw     bool  // CKM_RSA_X_509
	mac     *Hash // HMAC in the TPM with a secret key
	mldsa   bool  // CKM_ML_DSA (mldsa.go)
	// hashMLDSA: CKM_HASH_ML_DSA* (mldsa_hash.go); hash is the pre-hash
	// made here, nil for CKM_HASH_ML_DSA (the caller's digest).
	hashMLDSA bool
}

// signatures is built before any init function runs (the mechanism
// info table is derived from it in one).
var signatures = signatureTable()

func signatureTable() map[ck.MechType]sigSpec {
	signatures := map[ck.MechType]sigSpec{}
	sha := func(c ck.MechType) *Hash { return HashOf(c) }
	add := func(m ck.MechType, s sigSpec) { signatures[m] = s }
	add(ck.CKM_ECDSA, sigSpec{keyType: ck.CKK_EC})
	add(ck.CKM_RSA_PKCS, sigSpec{keyType: ck.CKK_RSA})
	add(ck.CKM_RSA_X_509, sigSpec{keyType: ck.CKK_RSA, raw: true})
	add(ck.CKM_RSA_PKCS_PSS, sigSpec{keyType: ck.CKK_RSA, pss: true})
	for _, v := range []struct {
		digest, ecdsa, pkcs, pss ck.MechType
	}{
		{ck.CKM_SHA_1, ck.CKM_ECDSA_SHA1, ck.CKM_SHA1_RSA_PKCS, ck.CKM_SHA1_RSA_PKCS_PSS},
		{ck.CKM_SHA224, ck.CKM_ECDSA_SHA224, ck.CKM_SHA224_RSA_PKCS, ck.CKM_SHA224_RSA_PKCS_PSS},
		{ck.CKM_SHA256, ck.CKM_ECDSA_SHA256, ck.CKM_SHA256_RSA_PKCS, ck.CKM_SHA256_RSA_PKCS_PSS},
		{ck.CKM_SHA384, ck.CKM_ECDSA_SHA384, ck.CKM_SHA384_RSA_PKCS, ck.CKM_SHA384_RSA_PKCS_PSS},
		{ck.CKM_SHA512, ck.CKM_ECDSA_SHA512, ck.CKM_SHA512_RSA_PKCS, ck.CKM_SHA512_RSA_PKCS_PSS},
	} {
		h := sha(v.digest)
		add(v.ecdsa, sigSpec{keyType: ck.CKK_EC, hash: h})
		add(v.pkcs, sigSpec{keyType: ck.CKK_RSA, hash: h})
		add(v.pss, sigSpec{keyType: ck.CKK_RSA, hash: h, pss: true})
		if h.HMAC != 0 {
			add(h.HMAC, sigSpec{keyType: ck.CKK_GENERIC_SECRET, mac: h})
		}
	}
	return signatures
}

// Signature is a signature or MAC mechanism checked against its key, with
// its parameters. It knows its output length before any work.
type Signature struct {
	Type ck.MechType
	spec sigSpec
	pss  PSS
	key  Key
	ctx  []byte // ML-DSA's context string
	// preHash is HashML-DSA's pre-hash (mldsa_hash.go).
	preHash *Hash
	// planned is the last SignCall Plan made: handed out by pointer, so
	// planning a signature allocates nothing (issue 25). It is valid until
	// the next Plan; a job that outlives the call copies it (tpmtoken's
	// callOp).
	planned SignCall
}

// signCall makes c the planned call.
func (s *Signature) signCall(c SignCall) TPMCall {
	s.planned = c
	return &s.planned
}

// NewSignature checks mechanism m for key k (CKR_MECHANISM_INVALID,
// CKR_KEY_TYPE_INCONSISTENT, CKR_MECHANISM_PARAM_INVALID).
func NewSignature(m Mechanism, k Key) (*Signature, error) {
	spec, ok := signatures[m.Type]
	if !ok {
		return nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if k.Type != spec.keyType || (k.Type == ck.CKK_EC && k.Curve == nil) {
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	s := &Signature{Type: m.Type, spec: spec, key: k}
	if spec.mldsa {
		return s.initMLDSA(m)
	}
	if spec.hashMLDSA {
		return s.initHashMLDSA(m)
	}
	var err error
	if spec.pss {
		s.pss, err = NewPSS(m, spec.hash)
	} else {
		err = noParam(m)
	}
	return s, err
}

// IsMAC says whether this is an HMAC (a secret key in the TPM).
func (s *Signature) IsMAC() bool { return s.spec.mac != nil }

// Len is the signature's length in bytes.
func (s *Signature) Len() int {
	switch {
	case s.spec.mldsa, s.spec.hashMLDSA:
		return MLDSASets[s.key.ParamSet].SigLen
	case s.spec.mac != nil:
		return s.spec.mac.Size()
	case s.key.Type == ck.CKK_EC:
		return 2 * s.key.Curve.Bytes
	}
	return s.key.modulusBytes()
}

// MultiPart says whether *Update may feed the mechanism: the hashing
// mechanisms and HMAC. Raw ECDSA and RSA sign one block and are
// single-part only.
func (s *Signature) MultiPart() bool { return s.spec.hash != nil || s.spec.mac != nil || s.spec.mldsa }

// NewInput returns what the operation is fed into.
func (s *Signature) NewInput() *Input {
	if s.spec.hash != nil {
		return &Input{h: s.spec.hash.New()}
	}
	return &Input{}
}

// Plan is what the TPM must do to sign input (the message digest for the
// hashing mechanisms, the raw input otherwise).
func (s *Signature) Plan(input []byte) (TPMCall, error) {
	switch {
	case s.spec.mldsa:
		return MLDSASignCall{Context: s.ctx, Message: input, Len: s.Len()}, nil
	case s.spec.hashMLDSA:
		return s.hashMLDSAPlan(input)
	case s.spec.mac != nil:
		return HMACCall{Hash: s.spec.mac.TPM, Data: input}, nil
	case s.key.Type == ck.CKK_EC:
		return s.ecdsaPlan(input)
	}
	return s.rsaPlan(input)
}

// ecdsaPlan signs a digest of any length the way ECDSA defines it: the
// leftmost order-size bits, as an integer. The TPM wants a digest exactly
// as long as the scheme's hash, so the integer is zero-padded on the left
// to the longest hash that fits (SHA-512 for P-521), which keeps the maths.
func (s *Signature) ecdsaPlan(digest []byte) (TPMCall, error) {
	if len(digest) == 0 {
		return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
	}
	c := s.key.Curve
	orderBits := c.Go.Params().N.BitLen()
	hLen := 64
	for _, n := range []int{32, 48} {
		if n*8 >= orderBits {
			hLen = n
			break
		}
	}
	if len(digest) == hLen && hLen*8 == orderBits {
		// The common case (P-256 under SHA-256, P-384 under SHA-384):
		// the digest is the integer as the TPM takes it.
		return s.signCall(SignCall{Scheme: tpm2.TPMAlgECDSA, Hash: hashOfLen(hLen), Digest: digest, Len: s.Len()}), nil
	}
	z := new(big.Int).SetBytes(digest)
	if excess := len(digest)*8 - orderBits; excess > 0 {
		z.Rsh(z, uint(excess))
	}
	if (z.BitLen()+7)/8 > hLen {
		return nil, ck.Errorf(ck.CKR_DATA_LEN_RANGE, "the TPM signs at most a %d-byte integer", hLen)
	}
	if shift := hLen*8 - orderBits; shift > 0 {
		// A digest longer than the order is cut to its leftmost bits by
		// the TPM (P-224 under a SHA-256-sized digest): align z there.
		z.Lsh(z, uint(shift))
	}
	return s.signCall(SignCall{Scheme: tpm2.TPMAlgECDSA, Hash: hashOfLen(hLen), Digest: z.FillBytes(make([]byte, hLen)), Len: s.Len()}), nil
}

// hashOfLen is the TPM hash whose digests are n bytes (32, 48 or 64).
func hashOfLen(n int) tpm2.TPMAlgID {
	switch n {
	case 32:
		return tpm2.TPMAlgSHA256
	case 48:
		return tpm2.TPMAlgSHA384
	}
	return tpm2.TPMAlgSHA512
}

// rsaPlan picks the TPM's own scheme where it does exactly what was asked
// (PKCS#1 v1.5 over a hash the TPM has; PSS with salt = hash length) and
// raw RSA over a block encoded here otherwise.
func (s *Signature) rsaPlan(input []byte) (TPMCall, error) {
	k := s.key.modulusBytes()
	raw := func(block []byte) TPMCall { return RSARawCall{Block: block, Len: k} }
	switch {
	case s.spec.raw:
		if len(input) > k {
			return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
		}
		return raw(LeftPad(input, k)), nil
	case s.spec.pss:
		h := s.pss.Hash
		if len(input) != h.Size() {
			return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
		}
		if s.pss.SaltLen == h.Size() && h.InTPM() {
			return s.signCall(SignCall{Scheme: tpm2.TPMAlgRSAPSS, Hash: h.TPM, Digest: input, Len: k}), nil
		}
		em, err := s.pss.Encode(input, s.key.ModulusBits)
		if err != nil {
			return nil, err
		}
		return raw(em), nil
	case s.spec.hash != nil:
		input = append(append([]byte{}, s.spec.hash.DigestInfo...), input...)
	}
	// CKM_RSA_PKCS: the input is normally a DigestInfo the TPM can sign itself.
	if h, digest := SplitDigestInfo(input); h != nil && h.InTPM() {
		return s.signCall(SignCall{Scheme: tpm2.TPMAlgRSASSA, Hash: h.TPM, Digest: digest, Len: k}), nil
	}
	block, err := PKCS1SignBlock(input, k)
	if err != nil {
		return nil, err
	}
	return raw(block), nil
}

// Verify checks sig over input with a public key, in software. RSA is
// checked with plain modular arithmetic so that keys of any size a
// certificate may carry verify (Go's crypto/rsa refuses keys under 1024
// bits).
func (s *Signature) Verify(pub any, input, sig []byte) error {
	bad := ck.E(ck.CKR_SIGNATURE_INVALID)
	if len(sig) != s.Len() {
		return ck.E(ck.CKR_SIGNATURE_LEN_RANGE)
	}
	switch p := pub.(type) {
	case *PQCPublic:
		if !s.spec.mldsa || p.KeyType != ck.CKK_ML_DSA || p.ParamSet != s.key.ParamSet ||
			!MLDSASets[p.ParamSet].Verify(p.Value, input, s.ctx, sig) {
			return bad
		}
		return nil
	case *ecdsa.PublicKey:
		n := s.key.Curve.Bytes
		if !ecdsa.Verify(p, input, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
			return bad
		}
		return nil
	case *rsa.PublicKey:
		k := s.key.modulusBytes()
		c := new(big.Int).SetBytes(sig)
		if c.Cmp(p.N) >= 0 {
			return bad
		}
		em := new(big.Int).Exp(c, big.NewInt(int64(p.E)), p.N).FillBytes(make([]byte, k))
		var ok bool
		switch {
		case s.spec.raw:
			ok = subtle.ConstantTimeCompare(em, LeftPad(input, k)) == 1
		case s.spec.pss:
			if len(input) != s.pss.Hash.Size() {
				return bad
			}
			ok = s.pss.verify(input, em, s.key.ModulusBits)
		default:
			t := input
			if s.spec.hash != nil {
				t = append(append([]byte{}, s.spec.hash.DigestInfo...), input...)
			}
			want, err := PKCS1SignBlock(t, k)
			ok = err == nil && subtle.ConstantTimeCompare(em, want) == 1
		}
		if !ok {
			return bad
		}
		return nil
	}
	return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
}

// verify is EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with the salt length given.
func (p PSS) verify(mHash, block []byte, modBits int) bool {
	emBits := modBits - 1
	emLen := (emBits + 7) / 8
	em := block[len(block)-emLen:]
	if len(block) > emLen && block[0] != 0 {
		return false
	}
	hLen := p.Hash.Size()
	if emLen < hLen+p.SaltLen+2 || em[emLen-1] != 0xbc {
		return false
	}
	db := append([]byte{}, em[:emLen-hLen-1]...)
	H := em[emLen-hLen-1 : emLen-1]
	topMask := byte(0xff >> (8*emLen - emBits))
	if db[0]&^topMask != 0 {
		return false
	}
	for i, b := range MGF1(p.Hash, H, len(db)) {
		db[i] ^= b
	}
	db[0] &= topMask
	ps := len(db) - p.SaltLen - 1
	for _, b := range db[:ps] {
		if b != 0 {
			return false
		}
	}
	if db[ps] != 1 {
		return false
	}
	h := p.Hash.New()
	h.Write(make([]byte, 8))
	h.Write(mHash)
	h.Write(db[len(db)-p.SaltLen:])
	return subtle.ConstantTimeCompare(h.Sum(nil), H) == 1
}

// MACHash is the hash of an HMAC mechanism (nil for signatures).
func (s *Signature) MACHash() *Hash { return s.spec.mac }

// Recoverable says whether the mechanism signs with message recovery
// (C_SignRecover/C_VerifyRecover): raw RSA PKCS#1 and X.509.
func (s *Signature) Recoverable() bool {
	return s.key.Type == ck.CKK_RSA && s.spec.hash == nil && !s.spec.pss
}

// RecoverPlan is what the TPM must do for C_SignRecover of data: the
// private RSA operation on the PKCS#1 type 1 block carrying data whole
// (or on the data itself, for X.509).
func (s *Signature) RecoverPlan(data []byte) (TPMCall, error) {
	k := s.key.modulusBytes()
	if s.spec.raw {
		if len(data) > k {
			return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
		}
		return RSARawCall{Block: LeftPad(data, k), Len: k}, nil
	}
	block, err := PKCS1SignBlock(data, k)
	if err != nil {
		return nil, err
	}
	return RSARawCall{Block: block, Len: k}, nil
}

// Recover is C_VerifyRecover: it checks sig with the public key and
// returns the data it carries.
func (s *Signature) Recover(pub any, sig []byte) ([]byte, error) {
	p, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	k := s.key.modulusBytes()
	if len(sig) != k {
		return nil, ck.E(ck.CKR_SIGNATURE_LEN_RANGE)
	}
	c := new(big.Int).SetBytes(sig)
	if c.Cmp(p.N) >= 0 {
		return nil, ck.E(ck.CKR_SIGNATURE_INVALID)
	}
	em := new(big.Int).Exp(c, big.NewInt(int64(p.E)), p.N).FillBytes(make([]byte, k))
	if s.spec.raw {
		return em, nil
	}
	if len(em) < 11 || em[0] != 0 || em[1] != 1 {
		return nil, ck.E(ck.CKR_SIGNATURE_INVALID)
	}
	i := 2
	for i < len(em) && em[i] == 0xff {
		i++
	}
	if i < 10 || i >= len(em) || em[i] != 0 {
		return nil, ck.E(ck.CKR_SIGNATURE_INVALID)
	}
	return em[i+1:], nil
}
