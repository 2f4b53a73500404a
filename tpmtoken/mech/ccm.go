package mech

import (
	"crypto/subtle"
	"encoding/binary"

	"github.com/tpm11/tpm11/ck"
)

// CCMParams is CK_CCM_PARAMS with its nonce and AAD copied in.
type CCMParams struct {
	DataLen ck.ULong
	Nonce   []byte
	AAD     []byte
	MACLen  ck.ULong
}

func (CCMParams) param() {}

// CCM is CKM_AES_CCM (NIST SP 800-38C, RFC 3610) as the TPM can run it:
// the CBC-MAC is the last block of AES-CBC encryption with a zero IV over
// B0‖AAD‖payload (TPM2_EncryptDecrypt2, CBC), and the payload and the
// tag's S0 are one AES-CTR pass from counter block A0 over T‖payload
// (CTR). No AES output that lets anyone compute a tag without the TPM —
// a key, a hash subkey — is ever in host memory: each tag costs the TPM
// two passes. This type formats the blocks and checks the lengths; it
// never touches the TPM.
//
// The data length is fixed at init (ulDataLen), so the multi-part form
// only gathers the input: C_EncryptUpdate and C_DecryptUpdate return
// nothing, and the whole result comes from the final part — as the spec
// wants for decryption ("no data should be returned until C_Decrypt or
// C_DecryptFinal"), where no plaintext may be released before the tag
// is verified.
type CCM struct {
	decrypt bool
	nonce   []byte
	aad     []byte
	dataLen uint64
	tagLen  int
	held    []byte
}

// CCM's limits (CK_CCM_PARAMS): nonce 7..13 bytes, MAC 4..16 even, AAD
// below 2^32 bytes.
const (
	ccmMinNonce = 7
	ccmMaxNonce = 13
	ccmMaxAAD   = 1<<32 - 1
	// ccmMaxData bounds ulDataLen below the spec's 2^(8L): the whole
	// message is gathered in memory before its tag is known.
	ccmMaxData = 1 << 32
)

// NewCCM checks m's CK_CCM_PARAMS.
func NewCCM(m Mechanism, decrypt bool) (*CCM, error) {
	if m.Type != ck.CKM_AES_CCM {
		return nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	p, ok := m.Param.(CCMParams)
	if !ok {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_AES_CCM needs CK_CCM_PARAMS")
	}
	if err := checkCCM(len(p.Nonce), p.MACLen, p.DataLen); err != nil {
		return nil, err
	}
	if uint64(len(p.AAD)) > ccmMaxAAD {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CCM AAD of %d bytes", len(p.AAD))
	}
	return &CCM{decrypt: decrypt, nonce: p.Nonce, aad: p.AAD, dataLen: uint64(p.DataLen), tagLen: int(p.MACLen)}, nil
}

// checkCCM checks a nonce length, MAC length and data length against
// each other: the data length must fit L = 15 - nonce bytes.
func checkCCM(nonce int, macLen, dataLen ck.ULong) error {
	if nonce < ccmMinNonce || nonce > ccmMaxNonce {
		return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CCM nonce of %d bytes (7..13)", nonce)
	}
	if macLen < 4 || macLen > 16 || macLen%2 != 0 {
		return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CCM MAC of %d bytes (4, 6, ..., 16)", macLen)
	}
	if dataLen > ccmMaxData {
		return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CCM data of %d bytes: at most %d", dataLen, uint64(ccmMaxData))
	}
	if l := 15 - nonce; l < 8 && dataLen>>(8*l) != 0 {
		return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CCM data of %d bytes does not fit a %d-byte nonce", dataLen, nonce)
	}
	return nil
}

// inLen is the input the operation takes in all: the data, and the tag
// after the ciphertext when decrypting.
func (c *CCM) inLen() uint64 {
	if c.decrypt {
		return c.dataLen + uint64(c.tagLen)
	}
	return c.dataLen
}

// outLen is the whole output: ciphertext and tag, or the plaintext.
func (c *CCM) outLen() int {
	if c.decrypt {
		return int(c.dataLen)
	}
	return int(c.dataLen) + c.tagLen
}

func (c *CCM) lenErr() error {
	if c.decrypt {
		return ck.Errorf(ck.CKR_ENCRYPTED_DATA_LEN_RANGE, "CCM takes ulDataLen + ulMACLen = %d bytes", c.inLen())
	}
	return ck.Errorf(ck.CKR_DATA_LEN_RANGE, "CCM takes ulDataLen = %d bytes", c.inLen())
}

// OneShotLen is the output length of a single-part operation over n bytes.
func (c *CCM) OneShotLen(n int) (int, error) {
	if uint64(n) != c.inLen() {
		return 0, c.lenErr()
	}
	return c.outLen(), nil
}

// UpdateLen is an update's output length (none: see CCM), failing when
// n more bytes would pass the length the parameters gave.
func (c *CCM) UpdateLen(n int) (int, error) {
	if uint64(len(c.held))+uint64(n) > c.inLen() {
		return 0, c.lenErr()
	}
	return 0, nil
}

// Update gathers in.
func (c *CCM) Update(in []byte) error {
	if _, err := c.UpdateLen(len(in)); err != nil {
		return err
	}
	c.held = append(c.held, in...)
	return nil
}

// FinalLen is the final part's output length: all of it.
func (c *CCM) FinalLen() (int, error) { return c.OneShotLen(len(c.held)) }

// Final returns the input gathered, checked for length.
func (c *CCM) Final() ([]byte, error) {
	if _, err := c.FinalLen(); err != nil {
		return nil, err
	}
	return c.held, nil
}

// Split separates a decryption's input into ciphertext and tag.
func (c *CCM) Split(in []byte) (ct, tag []byte) {
	if !c.decrypt {
		return in, nil
	}
	return in[:len(in)-c.tagLen], in[len(in)-c.tagLen:]
}

// MACInput is B0‖encoded AAD‖payload, each zero-padded to whole blocks:
// CBC encryption of it with a zero IV ends in the CBC-MAC T (SP 800-38C
// A.2). It is given in parts (the formatted head, the payload itself, its
// padding): the payload is not copied, which for a 64 KiB message was an
// allocation and a copy of it (of the plaintext, when decrypting) per call.
func (c *CCM) MACInput(payload []byte) [][]byte {
	l := 15 - len(c.nonce)
	b := make([]byte, AESBlock, AESBlock+len(c.aad)+10+AESBlock)
	flags := byte((c.tagLen-2)/2<<3 | (l - 1))
	if len(c.aad) > 0 {
		flags |= 0x40
	}
	b[0] = flags
	copy(b[1:], c.nonce)
	putLen(b[1+len(c.nonce):AESBlock], uint64(len(payload)))
	if a := uint64(len(c.aad)); a > 0 {
		switch {
		case a < 1<<16-1<<8:
			b = binary.BigEndian.AppendUint16(b, uint16(a))
		default: // a < 2^32: NewCCM refuses more
			b = append(b, 0xff, 0xfe)
			b = binary.BigEndian.AppendUint32(b, uint32(a))
		}
		b = append(b, c.aad...)
		b = zeroPad(b)
	}
	return [][]byte{b, payload, make([]byte, (AESBlock-len(payload)%AESBlock)%AESBlock)}
}

// Counter0 is A0, the counter block whose AES output S0 masks the tag; the
// payload's keystream follows from A1 on. The counter field (the last L
// bytes) never carries into the nonce: the data fits it by checkCCM, so a
// TPM's whole-block increment is CCM's.
func (c *CCM) Counter0() []byte {
	a := make([]byte, AESBlock)
	a[0] = byte(15 - len(c.nonce) - 1)
	copy(a[1:], c.nonce)
	return a
}

// CTRInput is what the CTR pass from A0 runs over: the tag block (the
// CBC-MAC T when encrypting; the received tag, zero-padded, when
// decrypting), then the payload, in two parts (the payload not copied).
// Its output starts with the masked tag.
func (c *CCM) CTRInput(tagBlock, payload []byte) [][]byte {
	in := make([]byte, AESBlock)
	copy(in, tagBlock)
	return [][]byte{in, payload}
}

// Seal is the encryption's output from the CTR pass: ciphertext‖tag.
func (c *CCM) Seal(ctrOut []byte) []byte {
	out := make([]byte, 0, len(ctrOut)-AESBlock+c.tagLen)
	out = append(out, ctrOut[AESBlock:]...)
	return append(out, ctrOut[:c.tagLen]...)
}

// Open is the decryption's result: ctrOut is the CTR pass over the
// received tag and the ciphertext (so it starts with the tag unmasked,
// the T the sender claims, then the plaintext), mac the CBC-MAC computed
// over that plaintext. The plaintext is released only when the two agree
// (compared in constant time); otherwise it is wiped and the result is
// CKR_ENCRYPTED_DATA_INVALID.
func (c *CCM) Open(ctrOut, mac []byte) ([]byte, error) {
	pt := ctrOut[AESBlock:]
	ok := len(mac) == AESBlock && subtle.ConstantTimeCompare(ctrOut[:c.tagLen], mac[:c.tagLen]) == 1
	clear(ctrOut[:AESBlock])
	clear(mac)
	if !ok {
		clear(pt)
		return nil, ck.Errorf(ck.CKR_ENCRYPTED_DATA_INVALID, "CCM tag mismatch")
	}
	return pt, nil
}

// putLen writes v big-endian into b (the CCM length field Q).
func putLen(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func zeroPad(b []byte) []byte {
	if r := len(b) % AESBlock; r != 0 {
		b = append(b, make([]byte, AESBlock-r)...)
	}
	return b
}
