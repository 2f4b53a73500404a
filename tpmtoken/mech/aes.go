package mech

import (
	"bytes"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
)

// AESBlock is the AES block size.
const AESBlock = 16

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

// AES is an AES encryption or decryption in progress: the TPM does the
// cipher (TPM2_EncryptDecrypt2); this keeps the chaining state between
// parts (the IV the TPM hands back, an unfinished block) and does the
// CBC_PAD padding.
type AES struct {
	mode        aesMode
	decrypt     bool
	iv          []byte
	counterBits int    // CTR: how many low bits of the block count
	held        []byte // input not yet sent: a partial block, or CBC_PAD's last
}

// NewAES checks m's parameters (an IV, CK_AES_CTR_PARAMS, or none).
func NewAES(m Mechanism, decrypt bool) (*AES, error) {
	mode, ok := aesModes[m.Type]
	if !ok {
		return nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	a := &AES{mode: mode, decrypt: decrypt}
	switch p := m.Param.(type) {
	case CTRParams:
		if m.Type != ck.CKM_AES_CTR || p.CounterBits == 0 || p.CounterBits > 128 {
			return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "counter bits %d", p.CounterBits)
		}
		a.counterBits, a.iv = int(p.CounterBits), bytes.Clone(p.Block[:])
	default:
		switch {
		case m.Type == ck.CKM_AES_CTR:
			return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_AES_CTR needs CK_AES_CTR_PARAMS")
		case mode.iv:
			if iv := bytesParam(m); len(iv) == AESBlock {
				a.iv = bytes.Clone(iv)
			} else {
				return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "the IV is %d bytes", AESBlock)
			}
		default:
			if err := noParam(m); err != nil {
				return nil, err
			}
		}
	}
	return a, nil
}

// TPMMode is the TPM's mode for this mechanism.
func (a *AES) TPMMode() tpm2.TPMAlgID { return a.mode.tpm }

// IV is the chaining value to send with the next part (nil for ECB).
func (a *AES) IV() []byte {
	if a.mode.tpm == tpm2.TPMAlgECB {
		return nil
	}
	return a.iv
}

// Advance records the chaining value the TPM returned.
func (a *AES) Advance(iv []byte) {
	if a.mode.tpm != tpm2.TPMAlgECB {
		a.iv = iv
	}
}

func (a *AES) lenErr() error {
	if a.decrypt {
		return ck.E(ck.CKR_ENCRYPTED_DATA_LEN_RANGE)
	}
	return ck.E(ck.CKR_DATA_LEN_RANGE)
}

// OneShotLen is the output length of a single-part operation over n bytes;
// exact is false where it is only an upper bound (CBC_PAD decryption).
func (a *AES) OneShotLen(n int) (size int, exact bool, err error) {
	switch {
	case a.mode.stream:
		return n, true, nil
	case a.mode.pad && !a.decrypt:
		return n + AESBlock - n%AESBlock, true, nil
	case n%AESBlock != 0 || (a.mode.pad && n == 0):
		return 0, true, a.lenErr()
	}
	return n, !a.mode.pad, nil
}

// OneShot returns what a single-part operation sends to the TPM.
func (a *AES) OneShot(in []byte) []byte {
	if a.mode.pad && !a.decrypt {
		return pad(in)
	}
	return in
}

// split says how much of in (after what is held) an update processes now:
// whole blocks, less the last one when decrypting CBC_PAD (it may be the
// padding, which only the final part may strip).
func (a *AES) split(in []byte) (now, keep []byte) {
	all := append(bytes.Clone(a.held), in...)
	n := len(all) / AESBlock * AESBlock
	if a.mode.pad && a.decrypt && n == len(all) && n > 0 {
		n -= AESBlock
	}
	return all[:n], all[n:]
}

// UpdateLen is the output length of an update with in.
func (a *AES) UpdateLen(n int) int {
	now, _ := a.split(make([]byte, n))
	return len(now)
}

// Update takes in and returns the whole blocks to send now.
func (a *AES) Update(in []byte) []byte {
	now, keep := a.split(in)
	a.held = keep
	return now
}

// Final is what the final part sends, checked for length.
func (a *AES) Final() ([]byte, error) {
	in := a.held
	switch {
	case a.mode.pad && !a.decrypt:
		return pad(in), nil
	case a.mode.pad:
		if len(in) != AESBlock {
			return nil, a.lenErr()
		}
	case !a.mode.stream && len(in) != 0:
		return nil, a.lenErr()
	}
	return in, nil
}

// FinalLen is the final part's output length (an upper bound for CBC_PAD
// decryption).
func (a *AES) FinalLen() (int, bool, error) {
	in, err := a.Final()
	return len(in), !(a.mode.pad && a.decrypt), err
}

// Last shapes the output of the last part (single-part or final): CBC_PAD
// decryption strips the padding.
func (a *AES) Last(out []byte) ([]byte, error) {
	if !(a.mode.pad && a.decrypt) {
		return out, nil
	}
	if p, ok := unpad(out); ok {
		return p, nil
	}
	return nil, ck.E(ck.CKR_ENCRYPTED_DATA_INVALID)
}

// CheckCounter refuses to let CTR's counter field wrap into the nonce
// over the next n bytes: the TPM counts with the whole block.
func (a *AES) CheckCounter(n int) error {
	if a.counterBits == 0 || a.counterBits >= 128 {
		return nil
	}
	ctr := new(big.Int).SetBytes(a.iv)
	ctr.And(ctr, new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(a.counterBits)), big.NewInt(1)))
	ctr.Add(ctr, big.NewInt(int64((n+AESBlock-1)/AESBlock)))
	if ctr.BitLen() > a.counterBits {
		return ck.Errorf(ck.CKR_DATA_LEN_RANGE, "the CTR counter would wrap")
	}
	return nil
}

func pad(in []byte) []byte {
	p := AESBlock - len(in)%AESBlock
	return append(bytes.Clone(in), bytes.Repeat([]byte{byte(p)}, p)...)
}

// unpad strips PKCS#7 padding after CBC_PAD decryption.
func unpad(b []byte) ([]byte, bool) {
	if len(b) == 0 || len(b)%AESBlock != 0 {
		return nil, false
	}
	p := int(b[len(b)-1])
	if p == 0 || p > AESBlock {
		return nil, false
	}
	for _, c := range b[len(b)-p:] {
		if int(c) != p {
			return nil, false
		}
	}
	return b[:len(b)-p], true
}
