package tpmtoken

import (
	"crypto/rand"
	"crypto/rsa"
	"math/big"

	"github.com/tpm11/tpm11/ck"
)

// encryptOp is an initialized C_Encrypt*: AES in the TPM, or RSA with the
// public key in software (anyone holding the public key can do it; no
// secret is involved, so the TPM adds nothing).
type encryptOp struct {
	aes  *aesOp
	pub  *rsa.PublicKey
	mech ck.MechType
	dec  decryptOp // OAEP hash and label, parsed as for decryption
	buf  []byte
}

// EncryptInit starts an encryption with key.
func (l *Library) EncryptInit(h uint64, m Mechanism, key uint64) error {
	s, o, err := l.keyOpInit(h, key, func(s *Session) bool { return s.encrypt != nil })
	if err != nil {
		return err
	}
	if !o.allows(m.Type) {
		return ck.E(ck.CKR_MECHANISM_INVALID)
	}
	op := &encryptOp{mech: m.Type}
	switch o.class() {
	case ck.CKO_SECRET_KEY:
		if op.aes, err = newAESOp(m, o, false); err != nil {
			return err
		}
		if !s.tok.userLoggedIn() {
			return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
		}
	case ck.CKO_PUBLIC_KEY:
		if o.keyType() != ck.CKK_RSA {
			return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
		}
		pk, err := o.publicKey()
		if err != nil {
			return err
		}
		op.pub = pk.(*rsa.PublicKey)
		switch m.Type {
		case ck.CKM_RSA_PKCS, ck.CKM_RSA_X_509:
			if len(m.Param) != 0 {
				return ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
			}
		case ck.CKM_RSA_PKCS_OAEP:
			if err := parseOAEP(m, &op.dec); err != nil {
				return err
			}
		default:
			return ck.E(ck.CKR_MECHANISM_INVALID)
		}
	default:
		return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if !o.Attrs.Bool(ck.CKA_ENCRYPT) {
		return ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.encrypt != nil {
		return ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	s.encrypt = op
	return nil
}

func (l *Library) encryptOp(h uint64) (*Session, *encryptOp, error) {
	return activeOp(l, h, func(s *Session) *encryptOp { return s.encrypt })
}

func (s *Session) endEncrypt() {
	s.mu.Lock()
	s.encrypt = nil
	s.mu.Unlock()
}

// Encrypt encrypts in one part.
func (l *Library) Encrypt(h uint64, in []byte, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.encryptOp(h)
	if err != nil {
		return nil, 0, err
	}
	if op.aes != nil {
		return l.aesOneShot(s, "C_Encrypt", op.aes, in, outCap, query, s.endEncrypt)
	}
	return op.rsaEncrypt(s, in, outCap, query)
}

// EncryptUpdate encrypts whole AES blocks; RSA collects its input.
func (l *Library) EncryptUpdate(h uint64, in []byte, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.encryptOp(h)
	if err != nil {
		return nil, 0, err
	}
	if op.aes != nil {
		return l.aesUpdate(s, "C_EncryptUpdate", op.aes, in, outCap, query)
	}
	if query {
		return nil, 0, nil
	}
	if len(op.buf)+len(in) > op.pub.Size() {
		s.endEncrypt()
		return nil, 0, ck.E(ck.CKR_DATA_LEN_RANGE)
	}
	op.buf = append(op.buf, in...)
	return nil, 0, nil
}

// EncryptFinal finishes a multi-part encryption.
func (l *Library) EncryptFinal(h uint64, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.encryptOp(h)
	if err != nil {
		return nil, 0, err
	}
	if op.aes != nil {
		return l.aesFinal(s, "C_EncryptFinal", op.aes, outCap, query, s.endEncrypt)
	}
	return op.rsaEncrypt(s, op.buf, outCap, query)
}

func (op *encryptOp) rsaEncrypt(s *Session, in []byte, outCap int, query bool) ([]byte, int, error) {
	k := op.pub.Size()
	if answered, err := sized(k, outCap, query); answered {
		return nil, k, err
	}
	defer s.endEncrypt()
	var out []byte
	var err error
	switch op.mech {
	case ck.CKM_RSA_PKCS:
		out, err = rsa.EncryptPKCS1v15(rand.Reader, op.pub, in)
	case ck.CKM_RSA_PKCS_OAEP:
		out, err = rsa.EncryptOAEP(op.dec.hash.New(), rand.Reader, op.pub, in, op.dec.label)
	default: // CKM_RSA_X_509
		m := new(big.Int).SetBytes(in)
		if len(in) > k || m.Cmp(op.pub.N) >= 0 {
			return nil, 0, ck.E(ck.CKR_DATA_LEN_RANGE)
		}
		out = new(big.Int).Exp(m, big.NewInt(int64(op.pub.E)), op.pub.N).FillBytes(make([]byte, k))
	}
	if err != nil {
		return nil, 0, ck.Wrap(ck.CKR_DATA_LEN_RANGE, err)
	}
	return out, len(out), nil
}
