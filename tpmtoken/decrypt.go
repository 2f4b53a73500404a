package tpmtoken

import (
	"crypto"
	"crypto/subtle"
	"encoding/binary"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// RSA decryption runs the private operation in the TPM as raw RSA and
// removes the padding here. A TPM's own OAEP hashes the label with a
// trailing zero byte, so it cannot serve an arbitrary PKCS#11 label.
type decryptOp struct {
	key   *Object
	oaep  bool
	hash  crypto.Hash
	label []byte
	raw   bool
	buf   []byte // input of a multi-part decryption
	aes   *aesOp // an AES decryption instead
}

// DecryptInit starts an RSA decryption (CKM_RSA_PKCS, CKM_RSA_PKCS_OAEP,
// CKM_RSA_X_509).
func (l *Library) DecryptInit(h uint64, m Mechanism, key uint64) error {
	s, o, err := l.keyOpInit(h, key, func(s *Session) bool { return s.decrypt != nil })
	if err != nil {
		return err
	}
	if !o.allows(m.Type) {
		return ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if !s.tok.userLoggedIn() {
		return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	if o.class() == ck.CKO_SECRET_KEY {
		a, err := newAESOp(m, o, true)
		if err != nil {
			return err
		}
		if !o.Attrs.Bool(ck.CKA_DECRYPT) {
			return ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
		}
		return s.setDecrypt(&decryptOp{key: o, aes: a})
	}
	if o.class() != ck.CKO_PRIVATE_KEY || o.key == nil || o.keyType() != ck.CKK_RSA {
		return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if !o.Attrs.Bool(ck.CKA_DECRYPT) {
		return ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	op := &decryptOp{key: o}
	switch m.Type {
	case ck.CKM_RSA_PKCS:
	case ck.CKM_RSA_X_509:
		op.raw = true
	case ck.CKM_RSA_PKCS_OAEP:
		if err := parseOAEP(m, op); err != nil {
			return err
		}
	default:
		return ck.E(ck.CKR_MECHANISM_INVALID)
	}
	return s.setDecrypt(op)
}

func (s *Session) setDecrypt(op *decryptOp) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.decrypt != nil {
		return ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	s.decrypt = op
	return nil
}

func (s *Session) endDecrypt() {
	s.mu.Lock()
	s.decrypt = nil
	s.mu.Unlock()
}

func (l *Library) decryptOp(h uint64) (*Session, *decryptOp, error) {
	return activeOp(l, h, func(s *Session) *decryptOp { return s.decrypt })
}

// DecryptUpdate decrypts whole AES blocks as they come; RSA collects the
// ciphertext, decrypts it whole at DecryptFinal and outputs nothing before.
func (l *Library) DecryptUpdate(h uint64, in []byte, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.decryptOp(h)
	if err != nil {
		return nil, 0, err
	}
	if op.aes != nil {
		return l.aesUpdate(s, "C_DecryptUpdate", op.aes, in, outCap, query)
	}
	if query {
		return nil, 0, nil
	}
	if len(op.buf)+len(in) > keySize(op.key) {
		return nil, 0, ck.E(ck.CKR_ENCRYPTED_DATA_LEN_RANGE)
	}
	op.buf = append(op.buf, in...)
	return nil, 0, nil
}

// DecryptFinal decrypts what DecryptUpdate collected.
func (l *Library) DecryptFinal(h uint64, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.decryptOp(h)
	if err != nil {
		return nil, 0, err
	}
	if op.aes != nil {
		return l.aesFinal(s, "C_DecryptFinal", op.aes, outCap, query, s.endDecrypt)
	}
	return l.decrypt(s, "C_DecryptFinal", op, op.buf, outCap, query)
}

// Decrypt decrypts in one part. The plaintext is at most the modulus size;
// a length query is answered with that bound without touching the TPM.
func (l *Library) Decrypt(h uint64, in []byte, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.decryptOp(h)
	if err != nil {
		return nil, 0, err
	}
	if op.aes != nil {
		return l.aesOneShot(s, "C_Decrypt", op.aes, in, outCap, query, s.endDecrypt)
	}
	return l.decrypt(s, "C_Decrypt", op, in, outCap, query)
}

func (l *Library) decrypt(s *Session, fn string, op *decryptOp, in []byte, outCap int, query bool) ([]byte, int, error) {
	k := keySize(op.key)
	if answered, err := sized(k, outCap, query); answered {
		return nil, k, err
	}
	s.endDecrypt()
	if len(in) != k {
		return nil, 0, ck.E(ck.CKR_ENCRYPTED_DATA_LEN_RANGE)
	}
	key := op.key.key
	job := func(e *tpm.Engine) (any, error) { return e.RSARaw(key, in) }
	finish := func(v any, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		em := leftPad(v.([]byte), k)
		var out []byte
		var ok bool
		switch {
		case op.raw:
			out, ok = em, true
		case op.oaep:
			out, ok = oaepDecode(em, op.hash, op.label)
		default:
			out, ok = pkcs1v15Decode(em)
		}
		if !ok {
			return Result{}, ck.E(ck.CKR_ENCRYPTED_DATA_INVALID)
		}
		return Result{Data: out}, nil
	}
	// Plaintext is never kept in the store: no persist, so not detachable.
	res, err := l.start(s, fn, ck.CKF_DECRYPT, job, finish, nil)
	if err != nil {
		return nil, 0, err
	}
	return res.Data, len(res.Data), nil
}

// pkcs1v15Decode removes EME-PKCS1-v1_5 padding (00 02 PS 00 M).
func pkcs1v15Decode(em []byte) ([]byte, bool) {
	if len(em) < 11 || em[0] != 0 || em[1] != 2 {
		return nil, false
	}
	for i := 2; i < len(em); i++ {
		if em[i] == 0 {
			if i < 10 {
				return nil, false
			}
			return em[i+1:], true
		}
	}
	return nil, false
}

// oaepDecode is EME-OAEP decoding (RFC 8017 §7.1.2) with MGF1 over the same hash.
func oaepDecode(em []byte, h crypto.Hash, label []byte) ([]byte, bool) {
	hLen := h.Size()
	if len(em) < 2*hLen+2 {
		return nil, false
	}
	hh := h.New()
	hh.Write(label)
	lHash := hh.Sum(nil)
	p := pssParams{hash: h}
	seed := append([]byte(nil), em[1:1+hLen]...)
	db := append([]byte(nil), em[1+hLen:]...)
	for i, b := range mgf1(db, hLen, p) {
		seed[i] ^= b
	}
	for i, b := range mgf1(seed, len(db), p) {
		db[i] ^= b
	}
	good := subtle.ConstantTimeByteEq(em[0], 0) & subtle.ConstantTimeCompare(db[:hLen], lHash)
	rest := db[hLen:]
	idx := -1
	for i, b := range rest {
		if b == 1 && idx < 0 {
			idx = i
		} else if b != 0 && idx < 0 {
			good = 0
		}
	}
	if good != 1 || idx < 0 {
		return nil, false
	}
	return rest[idx+1:], true
}

// parseOAEP reads the module-decoded CK_RSA_PKCS_OAEP_PARAMS: hashAlg, mgf,
// source, then the label bytes.
func parseOAEP(m Mechanism, op *decryptOp) error {
	if len(m.Param) < 24 {
		return ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	hf, ok := ckmHash[binary.NativeEndian.Uint64(m.Param)]
	if !ok || mgfHash[binary.NativeEndian.Uint64(m.Param[8:])] != hf {
		return ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	if src := binary.NativeEndian.Uint64(m.Param[16:]); src != 0 && src != 1 { // 1 = CKZ_DATA_SPECIFIED
		return ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	op.oaep, op.hash, op.label = true, hf, m.Param[24:]
	return nil
}
