package tpmtoken

import (
	"crypto/rsa"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

const (
	OpEncrypt OpKind = 3
	OpDecrypt OpKind = 4
)

func init() {
	defineKind(OpEncrypt, "encrypt", ck.CKF_ENCRYPT)
	defineKind(OpDecrypt, "decrypt", ck.CKF_DECRYPT)
}

// cipherOp is an initialized encryption or decryption: AES in the TPM
// (the module keeps the chaining state), RSA decryption as raw RSA in the
// TPM with the padding removed here, or RSA encryption in software with
// the public key (no secret is involved, so the TPM adds nothing).
type cipherOp struct {
	opState
	decrypt bool
	key     *Object
	aes     *mech.AES
	ccm     *ccmOp // CKM_AES_CCM (ccm.go)
	rsa     *mech.RSACipher
	pub     *rsa.PublicKey
}

func (op *cipherOp) outLen(p Part, inLen int) (int, bool, error) {
	if op.ccm != nil {
		return op.ccm.outLen(p, inLen)
	}
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

// newCipherOp checks key and m for encryption or decryption and makes the operation.
func newCipherOp(s *Session, m Mechanism, key uint64, decrypt bool) (*cipherOp, error) {
	o, err := initKey(s, key)
	if err != nil {
		return nil, err
	}
	usage, flag := ck.CKA_ENCRYPT, ck.CKF_ENCRYPT
	if decrypt {
		usage, flag = ck.CKA_DECRYPT, ck.CKF_DECRYPT
	}
	op := &cipherOp{decrypt: decrypt, key: o}
	switch {
	case o.class() == ck.CKO_SECRET_KEY:
		if o.keyType() != ck.CKK_AES || o.key == nil {
			return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
		}
		if m.Type == ck.CKM_AES_CCM {
			op.ccm = &ccmOp{}
			if op.ccm.CCM, err = mech.NewCCM(m, decrypt); err != nil {
				return nil, err
			}
		} else if op.aes, err = mech.NewAES(m, decrypt); err != nil {
			return nil, keyMismatch(err, m.Type, flag)
		}
	case o.keyType() == ck.CKK_RSA && (o.class() == ck.CKO_PRIVATE_KEY && decrypt && o.key != nil || o.class() == ck.CKO_PUBLIC_KEY && !decrypt):
		if op.rsa, err = mech.NewRSACipher(m); err != nil {
			return nil, keyMismatch(err, m.Type, flag)
		}
		pk, err := o.publicKey()
		if err != nil {
			return nil, err
		}
		op.pub = pk.(*rsa.PublicKey)
	default:
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if err := checkKeyMech(m, o, usage); err != nil {
		return nil, err
	}
	op.needAuth = decrypt && o.Attrs.Bool(ck.CKA_ALWAYS_AUTHENTICATE)
	if o.key != nil {
		if err := s.tok.usable(o); err != nil {
			return nil, err
		}
	}
	return op, nil
}

// EncryptInit starts an encryption with key.
func (l *Library) EncryptInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpEncrypt, func(s *Session) (operation, error) { return newCipherOp(s, m, key, false) })
}

// DecryptInit starts a decryption with key.
func (l *Library) DecryptInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpDecrypt, func(s *Session) (operation, error) { return newCipherOp(s, m, key, true) })
}

// run is one part of the encryption or decryption over c.in.
func (op *cipherOp) run(c *opCall) ([]byte, error) {
	if op.key.key != nil {
		if err := c.s.tok.usable(op.key); err != nil {
			return nil, err
		}
		if err := op.authorized(); err != nil {
			return nil, err
		}
	}
	in, p := c.in, c.part
	switch {
	case op.ccm != nil:
		return op.ccm.run(c, op)
	case op.aes != nil && p == Update:
		return aesRun(c, op, op.aes.Update(in), false)
	case op.aes != nil && p == Final:
		in, err := op.aes.Final()
		if err != nil {
			return nil, err
		}
		return aesRun(c, op, in, true)
	case op.aes != nil:
		if _, _, err := op.aes.OneShotLen(len(in)); err != nil {
			return nil, err
		}
		return aesRun(c, op, op.aes.OneShot(in), true)
	case p != Single:
		_, _, err := op.outLen(p, len(in))
		return nil, err
	case op.decrypt:
		return rsaDecrypt(c, op, in)
	}
	return op.rsa.Encrypt(op.pub, in)
}

// Encrypt encrypts in one part.
func (l *Library) Encrypt(h uint64, in []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpEncrypt, part: Single, fn: "C_Encrypt", in: in}, &dst)
}

// EncryptUpdate encrypts whole AES blocks.
func (l *Library) EncryptUpdate(h uint64, in []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpEncrypt, part: Update, fn: "C_EncryptUpdate", in: in}, &dst)
}

// EncryptFinal finishes a multi-part encryption.
func (l *Library) EncryptFinal(h uint64, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpEncrypt, part: Final, fn: "C_EncryptFinal"}, &dst)
}

// Decrypt decrypts in one part.
func (l *Library) Decrypt(h uint64, in []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpDecrypt, part: Single, fn: "C_Decrypt", in: in}, &dst)
}

// DecryptUpdate decrypts whole AES blocks as they come.
func (l *Library) DecryptUpdate(h uint64, in []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpDecrypt, part: Update, fn: "C_DecryptUpdate", in: in}, &dst)
}

// DecryptFinal finishes a multi-part decryption.
func (l *Library) DecryptFinal(h uint64, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpDecrypt, part: Final, fn: "C_DecryptFinal"}, &dst)
}

// rsaDecrypt is raw RSA in the TPM, then the padding removed here. A
// ciphertext that cannot be one (not below the modulus) never reaches the
// TPM. Plaintext is never kept in the store: no persist, not detachable.
func rsaDecrypt(c *opCall, op *cipherOp, in []byte) ([]byte, error) {
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
		return Result{Data: out}, err
	}
	res, err := start(c.l, c.s, c.fn, ck.CKF_DECRYPT, job, finish, nil, c.dst)
	return res.Data, err
}

// aesRun sends data through the TPM as c.fn (it may pend on an async
// session); on completion the IV advances, and the last part is unpadded.
func aesRun(c *opCall, op *cipherOp, data []byte, last bool) ([]byte, error) {
	a := op.aes
	shape := func(out []byte) ([]byte, error) {
		if !last {
			return out, nil
		}
		return a.Last(out)
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
	r, err := start(c.l, c.s, c.fn, flag, job, finish, nil, c.dst)
	return r.Data, err
}
