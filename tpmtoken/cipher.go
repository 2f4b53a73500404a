package tpmtoken

import (
	"crypto/rsa"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// cipherOp is an initialized encryption or decryption: AES in the TPM
// (the module keeps the chaining state), RSA decryption as raw RSA in the
// TPM with the padding removed here, or RSA encryption in software with
// the public key (no secret is involved, so the TPM adds nothing).
type cipherOp struct {
	opState
	decrypt bool
	key     *Object
	aes     *mech.AES
	rsa     *mech.RSACipher
	pub     *rsa.PublicKey
}

func (op *cipherOp) kind() OpKind {
	if op.decrypt {
		return OpDecrypt
	}
	return OpEncrypt
}

func (op *cipherOp) outLen(p Part, inLen int) (int, bool, error) {
	if op.aes != nil {
		switch p {
		case Update:
			return op.aes.UpdateLen(inLen), true, nil
		case Final:
			return op.aes.FinalLen()
		}
		return op.aes.OneShotLen(inLen)
	}
	if p != Single {
		return 0, true, ck.Errorf(ck.CKR_FUNCTION_NOT_SUPPORTED, "RSA encryption is single-part only")
	}
	if op.decrypt {
		if err := mech.CheckCiphertext(op.pub, make([]byte, inLen)); ck.ToRV(err) == ck.CKR_ENCRYPTED_DATA_LEN_RANGE {
			return 0, true, err
		}
		return op.pub.Size(), false, nil // the plaintext is shorter; known only after
	}
	return op.pub.Size(), true, nil
}

// cipherInit is C_EncryptInit / C_DecryptInit.
func (l *Library) cipherInit(h uint64, m Mechanism, key uint64, decrypt bool) error {
	op := &cipherOp{decrypt: decrypt}
	s, o, err := l.keyOpInit(h, key, op.kind())
	if err != nil {
		return err
	}
	usage := ck.CKA_ENCRYPT
	if decrypt {
		usage = ck.CKA_DECRYPT
	}
	op.key = o
	switch {
	case o.class() == ck.CKO_SECRET_KEY:
		if o.keyType() != ck.CKK_AES || o.key == nil {
			return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
		}
		if op.aes, err = mech.NewAES(m, decrypt); err != nil {
			return err
		}
	case o.keyType() == ck.CKK_RSA && (o.class() == ck.CKO_PRIVATE_KEY && decrypt && o.key != nil || o.class() == ck.CKO_PUBLIC_KEY && !decrypt):
		if op.rsa, err = mech.NewRSACipher(m); err != nil {
			return err
		}
		pk, err := o.publicKey()
		if err != nil {
			return err
		}
		op.pub = pk.(*rsa.PublicKey)
	default:
		return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if err := checkKeyMech(m, o, usage); err != nil {
		return err
	}
	op.needAuth = decrypt && o.Attrs.Bool(ck.CKA_ALWAYS_AUTHENTICATE)
	if o.key != nil {
		if err := s.tok.usable(o); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.op(op.kind()) != nil {
		return ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	if decrypt {
		s.decrypt = op
	} else {
		s.encrypt = op
	}
	return nil
}

// EncryptInit starts an encryption with key.
func (l *Library) EncryptInit(h uint64, m Mechanism, key uint64) error {
	return l.cipherInit(h, m, key, false)
}

// DecryptInit starts a decryption with key.
func (l *Library) DecryptInit(h uint64, m Mechanism, key uint64) error {
	return l.cipherInit(h, m, key, true)
}

func kindOf(decrypt bool) OpKind {
	if decrypt {
		return OpDecrypt
	}
	return OpEncrypt
}

// cipherPart runs part p of session h's encryption or decryption over in.
func (l *Library) cipherPart(h uint64, decrypt bool, p Part, fn string, in []byte, dst Dest) ([]byte, error) {
	kind := kindOf(decrypt)
	s, op, err := activeOp[*cipherOp](l, h, kind, p)
	if err != nil {
		return nil, err
	}
	if op.stashed {
		s.end(kind)
		return op.stash, nil
	}
	if op.key.key != nil {
		err := s.tok.usable(op.key)
		if err == nil {
			err = op.authorized()
		}
		if err != nil {
			s.end(kind)
			return nil, err
		}
	}
	var out []byte
	switch {
	case op.aes != nil && p == Update:
		out, err = l.aesRun(s, fn, op, op.aes.Update(in), false, dst)
		return out, s.settle(kind, err)
	case op.aes != nil && p == Final:
		if in, err = op.aes.Final(); err == nil {
			out, err = l.aesRun(s, fn, op, in, true, dst)
		}
	case op.aes != nil:
		if _, _, err = op.aes.OneShotLen(len(in)); err == nil {
			out, err = l.aesRun(s, fn, op, op.aes.OneShot(in), true, dst)
		}
	case p != Single:
		_, _, err = op.outLen(p, len(in))
	case decrypt:
		out, err = l.rsaDecrypt(s, fn, op, in, dst)
	default:
		out, err = op.rsa.Encrypt(op.pub, in)
	}
	if rv := ck.ToRV(err); rv == ck.CKR_OK || rv == ck.CKR_PENDING {
		s.end(kind) // done, or its state now lives in the pending job
	}
	return out, s.settle(kind, err)
}

// Encrypt encrypts in one part.
func (l *Library) Encrypt(h uint64, in []byte, dst Dest) ([]byte, error) {
	return l.cipherPart(h, false, Single, "C_Encrypt", in, dst)
}

// EncryptUpdate encrypts whole AES blocks.
func (l *Library) EncryptUpdate(h uint64, in []byte, dst Dest) ([]byte, error) {
	return l.cipherPart(h, false, Update, "C_EncryptUpdate", in, dst)
}

// EncryptFinal finishes a multi-part encryption.
func (l *Library) EncryptFinal(h uint64, dst Dest) ([]byte, error) {
	return l.cipherPart(h, false, Final, "C_EncryptFinal", nil, dst)
}

// Decrypt decrypts in one part.
func (l *Library) Decrypt(h uint64, in []byte, dst Dest) ([]byte, error) {
	return l.cipherPart(h, true, Single, "C_Decrypt", in, dst)
}

// DecryptUpdate decrypts whole AES blocks as they come.
func (l *Library) DecryptUpdate(h uint64, in []byte, dst Dest) ([]byte, error) {
	return l.cipherPart(h, true, Update, "C_DecryptUpdate", in, dst)
}

// DecryptFinal finishes a multi-part decryption.
func (l *Library) DecryptFinal(h uint64, dst Dest) ([]byte, error) {
	return l.cipherPart(h, true, Final, "C_DecryptFinal", nil, dst)
}

// rsaDecrypt is raw RSA in the TPM, then the padding removed here. A
// ciphertext that cannot be one (not below the modulus) never reaches the
// TPM. Plaintext is never kept in the store: no persist, not detachable.
func (l *Library) rsaDecrypt(s *Session, fn string, op *cipherOp, in []byte, dst Dest) ([]byte, error) {
	if err := mech.CheckCiphertext(op.pub, in); err != nil {
		return nil, err
	}
	key, k := op.key.key, op.pub.Size()
	job := func(e *tpm.Engine) ([]byte, error) { return e.RSARaw(key, in) }
	finish := func(v []byte, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		out, err := op.rsa.Unpad(mech.LeftPad(v, k))
		if err == nil {
			out, err = deliver(&op.opState, out, dst)
		}
		return Result{Data: out}, err
	}
	res, err := start(l, s, fn, ck.CKF_DECRYPT, job, finish, nil, dst)
	return res.Data, err
}

// aesRun sends data through the TPM as fn (it may pend on an async
// session); on completion the IV advances, and the last part is unpadded.
func (l *Library) aesRun(s *Session, fn string, op *cipherOp, data []byte, last bool, dst Dest) ([]byte, error) {
	a := op.aes
	shape := func(out []byte) ([]byte, error) {
		if !last {
			return out, nil
		}
		out, err := a.Last(out)
		if err != nil {
			return nil, err
		}
		return deliver(&op.opState, out, dst)
	}
	if len(data) == 0 {
		return shape([]byte{})
	}
	if err := a.CheckCounter(len(data)); err != nil {
		return nil, err
	}
	key, mode, iv, decrypt := op.key.key, a.TPMMode(), a.IV(), op.decrypt
	type res struct{ out, iv []byte }
	job := func(e *tpm.Engine) (res, error) {
		out, next, err := e.EncryptDecrypt(key, decrypt, mode, iv, data)
		return res{out, next}, err
	}
	finish := func(r res, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		a.Advance(r.iv)
		out, err := shape(r.out)
		return Result{Data: out}, err
	}
	flag := ck.CKF_ENCRYPT
	if op.decrypt {
		flag = ck.CKF_DECRYPT
	}
	r, err := start(l, s, fn, flag, job, finish, nil, dst)
	return r.Data, err
}
