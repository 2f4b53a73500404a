package tpmtoken

import (
	"bytes"
	"encoding/binary"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// AES runs in the TPM (TPM2_EncryptDecrypt2); the module keeps the chaining
// state between parts (the IV the TPM hands back, an unfinished block) and
// does the CBC_PAD padding.

const aesBlock = 16

type aesMode struct {
	tpm    tpm2.TPMAlgID
	pad    bool // CKM_AES_CBC_PAD
	stream bool // any length: CTR, OFB, CFB
	iv     bool // takes a 16-byte IV as its parameter
}

var aesModes = map[ck.MechType]aesMode{
	ck.CKM_AES_ECB:     {tpm: tpm2.TPMAlgECB},
	ck.CKM_AES_CBC:     {tpm: tpm2.TPMAlgCBC, iv: true},
	ck.CKM_AES_CBC_PAD: {tpm: tpm2.TPMAlgCBC, iv: true, pad: true},
	ck.CKM_AES_CTR:     {tpm: tpm2.TPMAlgCTR, stream: true},
	ck.CKM_AES_OFB:     {tpm: tpm2.TPMAlgOFB, iv: true, stream: true},
	ck.CKM_AES_CFB128:  {tpm: tpm2.TPMAlgCFB, iv: true, stream: true},
}

// aesOp is an initialized AES encryption or decryption.
type aesOp struct {
	key         *Object
	mode        aesMode
	decrypt     bool
	iv          []byte
	counterBits int    // CTR: how many low bits of the block count
	held        []byte // input not yet sent: a partial block, or CBC_PAD's last
}

func newAESOp(m Mechanism, o *Object, decrypt bool) (*aesOp, error) {
	mode, ok := aesModes[m.Type]
	if !ok {
		return nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if o.keyType() != ck.CKK_AES || o.key == nil {
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	op := &aesOp{key: o, mode: mode, decrypt: decrypt}
	switch {
	case m.Type == ck.CKM_AES_CTR: // CK_AES_CTR_PARAMS: ulCounterBits, cb[16]
		if len(m.Param) != 8+aesBlock {
			return nil, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
		}
		bits := binary.NativeEndian.Uint64(m.Param)
		if bits == 0 || bits > 128 {
			return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "counter bits %d", bits)
		}
		op.counterBits, op.iv = int(bits), bytes.Clone(m.Param[8:])
	case mode.iv:
		if len(m.Param) != aesBlock {
			return nil, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
		}
		op.iv = bytes.Clone(m.Param)
	case len(m.Param) != 0:
		return nil, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	return op, nil
}

func (op *aesOp) lenErr() error {
	if op.decrypt {
		return ck.E(ck.CKR_ENCRYPTED_DATA_LEN_RANGE)
	}
	return ck.E(ck.CKR_DATA_LEN_RANGE)
}

// split says how much of in (after what is held) an update processes now:
// whole blocks, less the last one when decrypting CBC_PAD (it may be the
// padding, which only C_DecryptFinal may strip).
func (op *aesOp) split(in []byte) (now, keep []byte) {
	all := append(bytes.Clone(op.held), in...)
	n := len(all) / aesBlock * aesBlock
	if op.mode.pad && op.decrypt && n == len(all) && n > 0 {
		n -= aesBlock
	}
	return all[:n], all[n:]
}

// finalInput is what C_*Final must still process, checked for length.
func (op *aesOp) finalInput() ([]byte, error) {
	in := op.held
	switch {
	case op.mode.pad && !op.decrypt:
		p := aesBlock - len(in)%aesBlock
		return append(bytes.Clone(in), bytes.Repeat([]byte{byte(p)}, p)...), nil
	case op.mode.pad:
		if len(in) != aesBlock {
			return nil, op.lenErr()
		}
	case !op.mode.stream && len(in) != 0:
		return nil, op.lenErr()
	}
	return in, nil
}

// oneShotLen is the output length of a single-part operation over n bytes
// (for CBC_PAD decryption an upper bound), or an error for a bad length.
func (op *aesOp) oneShotLen(n int) (int, error) {
	switch {
	case op.mode.stream:
		return n, nil
	case op.mode.pad && !op.decrypt:
		return n + aesBlock - n%aesBlock, nil
	case n%aesBlock != 0 || (op.mode.pad && n == 0):
		return 0, op.lenErr()
	}
	return n, nil
}

// aesRun sends data through the TPM as fn (it may pend on an async
// session); on completion the IV advances and post shapes the output.
func (l *Library) aesRun(s *Session, fn string, op *aesOp, data []byte, post func([]byte) ([]byte, error)) ([]byte, error) {
	if len(data) == 0 {
		return post([]byte{})
	}
	if op.counterBits > 0 && op.counterBits < 128 {
		// The TPM counts with the whole block; refuse rather than let the
		// counter field wrap into the nonce.
		ctr := new(big.Int).SetBytes(op.iv)
		ctr.And(ctr, new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(op.counterBits)), big.NewInt(1)))
		ctr.Add(ctr, big.NewInt(int64((len(data)+aesBlock-1)/aesBlock)))
		if ctr.BitLen() > op.counterBits {
			return nil, ck.Errorf(ck.CKR_DATA_LEN_RANGE, "the CTR counter would wrap")
		}
	}
	key, mode, iv, decrypt := op.key.key, op.mode.tpm, op.iv, op.decrypt
	if mode == tpm2.TPMAlgECB {
		iv = nil
	}
	type res struct{ out, iv []byte }
	job := func(e *tpm.Engine) (any, error) {
		out, next, err := e.EncryptDecrypt(key, decrypt, mode, iv, data)
		return res{out, next}, err
	}
	finish := func(v any, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		r := v.(res)
		if op.mode.tpm != tpm2.TPMAlgECB {
			op.iv = r.iv
		}
		out, err := post(r.out)
		return Result{Data: out}, err
	}
	flag := ck.CKF_ENCRYPT
	if op.decrypt {
		flag = ck.CKF_DECRYPT
	}
	r, err := l.start(s, fn, flag, job, finish, nil)
	return r.Data, err
}

// asIs is the post-processing of an output that needs none.
func asIs(b []byte) ([]byte, error) { return b, nil }

// unpadded is the post-processing of CBC_PAD decryption's last blocks.
func unpadded(b []byte) ([]byte, error) {
	out, ok := unpad(b)
	if !ok {
		return nil, ck.E(ck.CKR_ENCRYPTED_DATA_INVALID)
	}
	return out, nil
}

// unpad strips PKCS#7 padding after CBC_PAD decryption.
func unpad(b []byte) ([]byte, bool) {
	if len(b) == 0 || len(b)%aesBlock != 0 {
		return nil, false
	}
	p := int(b[len(b)-1])
	if p == 0 || p > aesBlock {
		return nil, false
	}
	for _, c := range b[len(b)-p:] {
		if int(c) != p {
			return nil, false
		}
	}
	return b[:len(b)-p], true
}

// aesOneShot is C_Encrypt/C_Decrypt: output length rules first, then one
// pass through the TPM.
func (l *Library) aesOneShot(s *Session, fn string, op *aesOp, in []byte, outCap int, query bool, end func()) ([]byte, int, error) {
	n, err := op.oneShotLen(len(in))
	if err != nil {
		end()
		return nil, 0, err
	}
	if answered, err := sized(n, outCap, query); answered {
		return nil, n, err
	}
	defer end()
	data := in
	if op.mode.pad && !op.decrypt {
		op.held = in
		data, _ = op.finalInput()
	}
	return sizedOut(l.aesRun(s, fn, op, data, op.post()))
}

// post is how the last output of op is shaped.
func (op *aesOp) post() func([]byte) ([]byte, error) {
	if op.mode.pad && op.decrypt {
		return unpadded
	}
	return asIs
}

func sizedOut(b []byte, err error) ([]byte, int, error) {
	if err != nil {
		return nil, 0, err
	}
	return b, len(b), nil
}

// aesUpdate is C_EncryptUpdate/C_DecryptUpdate.
func (l *Library) aesUpdate(s *Session, fn string, op *aesOp, in []byte, outCap int, query bool) ([]byte, int, error) {
	now, keep := op.split(in)
	if answered, err := sized(len(now), outCap, query); answered {
		return nil, len(now), err
	}
	op.held = keep
	return sizedOut(l.aesRun(s, fn, op, now, asIs))
}

// aesFinal is C_EncryptFinal/C_DecryptFinal.
func (l *Library) aesFinal(s *Session, fn string, op *aesOp, outCap int, query bool, end func()) ([]byte, int, error) {
	in, err := op.finalInput()
	if err != nil {
		end()
		return nil, 0, err
	}
	if answered, err := sized(len(in), outCap, query); answered {
		return nil, len(in), err
	}
	defer end()
	return sizedOut(l.aesRun(s, fn, op, in, op.post()))
}
