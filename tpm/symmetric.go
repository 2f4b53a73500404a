package tpm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// maxBuffer is MAX_DIGEST_BUFFER, the most a TPM2B_MAX_BUFFER carries on
// every TPM the token targets; longer data is sent in chunks.
const maxBuffer = 1024

// EncryptDecrypt runs TPM2_EncryptDecrypt2 over data of any length in
// chunks, chaining the IV the TPM returns, and returns the output and the
// IV to continue with. mode is a TPM symmetric mode (CFB, CBC, ECB, CTR).
// The data may come in parts, one stream: a chunk may span parts, and no
// joined copy is made.
func (e *Engine) EncryptDecrypt(key *Loadable, decrypt bool, mode tpm2.TPMAlgID, iv []byte, data ...[]byte) ([]byte, []byte, error) {
	if err := refusePolicy(key, "encrypt/decrypt"); err != nil {
		return nil, nil, err
	}
	d := parts{p: data}
	out := make([]byte, 0, d.len())
	for d.len() > 0 {
		h, err := e.Handle(key)
		if err != nil {
			return nil, nil, err
		}
		if out, iv, err = e.encryptDecrypt2(h.Handle, key.Auth, decrypt, mode, iv, d.next(maxBuffer), out); err != nil {
			return nil, nil, err
		}
	}
	return out, iv, nil
}

// parts is data given as several slices, taken from the front (the
// caller's slices are not changed).
type parts struct {
	p     [][]byte
	off   int      // bytes of p[0] already taken
	chunk [][]byte // reused by next
}

func (d *parts) len() int {
	n := -d.off
	for _, p := range d.p {
		n += len(p)
	}
	return n
}

// next takes the first n bytes (fewer at the end), as slices of the parts.
func (d *parts) next(n int) [][]byte {
	d.chunk = d.chunk[:0]
	for n > 0 && len(d.p) > 0 {
		rest := d.p[0][d.off:]
		k := min(n, len(rest))
		if k > 0 {
			d.chunk = append(d.chunk, rest[:k])
		}
		n -= k
		if d.off += k; d.off == len(d.p[0]) {
			d.p, d.off = d.p[1:], 0
		}
	}
	return d.chunk
}

// encryptDecrypt2 is one TPM2_EncryptDecrypt2 of data (the parts given,
// at most maxBuffer bytes in all) with key handle h, marshalled by hand as
// the hot commands are (hot.go): go-tpm marshals a TPM2B_MAX_BUFFER one
// byte at a time through reflection, which was 4/5 of a CCM operation's
// time. The output is appended to out (nil: dropped, for the CBC-MAC); the
// IV to chain with is returned. Command and response carry the data
// (plaintext on one side): both buffers are wiped here.
func (e *Engine) encryptDecrypt2(h tpm2.TPMHandle, password []byte, decrypt bool, mode tpm2.TPMAlgID, iv []byte, data [][]byte, out []byte) ([]byte, []byte, error) {
	cmd := e.pwCommand(tpm2.TPMCCEncryptDecrypt2, h, password)
	n := 0
	for _, p := range data {
		n += len(p)
	}
	cmd.u16(uint16(n))
	for _, p := range data {
		cmd.b = append(cmd.b, p...)
	}
	if decrypt {
		cmd.b = append(cmd.b, 1)
	} else {
		cmd.b = append(cmd.b, 0)
	}
	cmd.u16(uint16(mode))
	cmd.b = appendTPM2B(cmd.b, iv)
	rsp, err := e.send(cmd.bytes())
	clear(cmd.b)
	defer clear(rsp)
	if err != nil {
		return nil, nil, err
	}
	r, err := pwResponse(rsp)
	if err != nil {
		return nil, nil, err
	}
	o, ivOut := r.tpm2b(), r.tpm2b()
	if err := r.end("TPM2_EncryptDecrypt2"); err != nil {
		return nil, nil, err
	}
	if len(o) != n {
		return nil, nil, fmt.Errorf("%w to TPM2_EncryptDecrypt2: %d bytes out of %d", errMalformed, len(o), n)
	}
	if out != nil {
		out = append(out, o...)
	}
	return out, bytes.Clone(ivOut), nil
}

// CBCMAC is the last block of AES-CBC encryption of data (whole blocks in
// all; it may come in parts, see EncryptDecrypt) with a zero IV under key:
// CCM's CBC-MAC. Only that block is kept; the chunks' other output is
// dropped as it comes.
func (e *Engine) CBCMAC(key *Loadable, data ...[]byte) ([]byte, error) {
	if err := refusePolicy(key, "CBC-MAC"); err != nil {
		return nil, err
	}
	iv := make([]byte, 16)
	d := parts{p: data}
	for d.len() > 0 {
		h, err := e.Handle(key)
		if err != nil {
			return nil, err
		}
		if _, iv, err = e.encryptDecrypt2(h.Handle, key.Auth, false, tpm2.TPMAlgCBC, iv, d.next(maxBuffer), nil); err != nil {
			return nil, err
		}
	}
	return iv, nil
}

// HMAC computes the HMAC of data with key: one TPM2_HMAC when data fits a
// buffer, else an HMAC sequence that lives only within this call.
func (e *Engine) HMAC(key *Loadable, hash tpm2.TPMAlgID, data []byte) ([]byte, error) {
	if err := refusePolicy(key, "HMAC"); err != nil {
		return nil, err
	}
	h, err := e.Handle(key)
	if err != nil {
		return nil, err
	}
	if len(data) <= maxBuffer {
		return e.hmac(h.Handle, key.Auth, data, hash)
	}
	// The sequence takes an object slot of its own.
	var seq tpm2.TPMHandle
	err = e.withRoom(map[string]bool{key.ID: true}, func() error {
		rsp, err := tpm2.HmacStart{Handle: auth(h, key.Auth), HashAlg: hash}.Execute(e.tr())
		if err != nil {
			return err
		}
		seq = rsp.SequenceHandle
		return nil
	})
	if err != nil {
		return nil, err
	}
	sh := tpm2.AuthHandle{Handle: seq, Auth: tpm2.PasswordAuth(nil)}
	for len(data) > maxBuffer {
		if _, err := (tpm2.SequenceUpdate{SequenceHandle: sh, Buffer: tpm2.TPM2BMaxBuffer{Buffer: data[:maxBuffer]}}).Execute(e.tr()); err != nil {
			_, _ = tpm2.FlushContext{FlushHandle: seq}.Execute(e.tr())
			return nil, err
		}
		data = data[maxBuffer:]
	}
	rsp, err := tpm2.SequenceComplete{SequenceHandle: sh, Buffer: tpm2.TPM2BMaxBuffer{Buffer: data}, Hierarchy: tpm2.TPMRHNull}.Execute(e.tr())
	if err != nil {
		_, _ = tpm2.FlushContext{FlushHandle: seq}.Execute(e.tr())
		return nil, err
	}
	return rsp.Result.Buffer, nil
}

// ECDH multiplies the peer's point by key's private scalar
// (TPM2_ECDH_ZGen) and returns Z, the x coordinate. The command is
// marshalled by hand (execRaw): go-tpm's reflection was a fifth of a
// C_DecapsulateKey's time.
func (e *Engine) ECDH(key *Loadable, x, y []byte) ([]byte, error) {
	// Z is the shared secret: encrypted on its way out, over the salted
	// session the Engine keeps (kept_session.go), where a session per
	// command cost a TPM2_StartAuthSession, and the salt's ECC operation
	// in the TPM, as dear as the ECDH itself.
	// A key with a policy: its policy session authorizes, the kept
	// session encrypts (secretOut).
	point := appendTPM2B(appendTPM2B(nil, x), y)
	rsp, err := e.execSecretOut(key, tpm2.TPMCCECDHZGen, appendTPM2B(nil, point))
	if err != nil {
		return nil, err
	}
	defer clear(rsp.params) // Z, decrypted, whatever the parse says
	// outPoint: a TPM2B_ECC_POINT, X then Y.
	r := reader{b: rsp.params}
	p := reader{b: r.tpm2b()}
	z := bytes.Clone(p.tpm2b())
	p.tpm2b()
	if err := r.end("TPM2_ECDH_ZGen response"); err != nil {
		clear(z)
		return nil, err
	}
	if err := p.end("TPM2_ECDH_ZGen point"); err != nil {
		clear(z)
		return nil, err
	}
	return z, nil
}

// Import wraps a key the caller supplies (public area and sensitive part)
// under parent with TPM2_Import and returns its private blob, which loads
// like any key the TPM made. The sensitive part travels under an inner
// wrapper (AES-128-CFB with a fresh key and an integrity hash); that key is
// the command's first parameter, encrypted by the salted session, so the
// private key never crosses the bus in the clear.
func (e *Engine) Import(parent *Loadable, public tpm2.TPMTPublic, sensitive tpm2.TPMTSensitive) (tpm2.TPM2BPrivate, error) {
	ph, err := e.Handle(parent)
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	symKey := make([]byte, 16)
	if _, err := rand.Read(symKey); err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	dup, err := innerWrap(public, sensitive, symKey)
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	pa, err := e.secret(ph, parent.Auth, map[string]bool{parent.ID: true}, encryptIn)
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	rsp, err := tpm2.Import{
		ParentHandle:  pa,
		EncryptionKey: tpm2.TPM2BData{Buffer: symKey},
		ObjectPublic:  tpm2.New2B(public),
		Duplicate:     tpm2.TPM2BPrivate{Buffer: dup},
		Symmetric: tpm2.TPMTSymDef{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
	}.Execute(e.tr())
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	return rsp.OutPrivate, nil
}

// innerWrap is the TPM's inner duplication wrapper (TPM 2.0 Part 1,
// "Inner Duplication Wrapper"): AES-CFB with a zero IV over
// TPM2B(H_nameAlg(TPM2B_SENSITIVE || Name)) || TPM2B_SENSITIVE.
func innerWrap(public tpm2.TPMTPublic, sensitive tpm2.TPMTSensitive, symKey []byte) ([]byte, error) {
	name, err := tpm2.ObjectName(&public)
	if err != nil {
		return nil, err
	}
	hf, err := public.NameAlg.Hash()
	if err != nil {
		return nil, err
	}
	sens := tpm2.Marshal(tpm2.New2B(sensitive))
	h := hf.New()
	h.Write(sens)
	h.Write(name.Buffer)
	plain := append(tpm2.Marshal(tpm2.TPM2BDigest{Buffer: h.Sum(nil)}), sens...)
	block, err := aes.NewCipher(symKey)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(plain))
	cipher.NewCFBEncrypter(block, make([]byte, aes.BlockSize)).XORKeyStream(out, plain)
	return out, nil
}
