package tpm

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The hot commands: TPM2_Sign, TPM2_RSA_Decrypt and TPM2_HMAC with a
// password session, which is every steady-state C_Sign, C_Decrypt and HMAC
// of a key without a policy. They are marshalled here by hand into a
// buffer the Engine reuses, and their responses parsed in place: go-tpm's
// reflection-driven marshalling cost ~130 µs of CPU per signature (a
// third of the module's time per ECDSA signature on swtpm, measured with
// perf), against a few µs here. Every other command, and these with a
// policy session, go through go-tpm.

// pwCommand is one command with one handle authorized by a password
// session, built in a reused buffer: header, handle, the session, then the
// parameters the caller appends.
type pwCommand struct{ b []byte }

func (e *Engine) pwCommand(cc tpm2.TPMCC, h tpm2.TPMHandle, password []byte) *pwCommand {
	c := &e.hot
	c.b = newCommand(c.b, tpm2.TPMSTSessions, cc)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(h))
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(4+2+1+2+len(password)))
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(tpm2.TPMRSPW))
	c.b = append(c.b, 0, 0, 0) // empty nonce, no attributes
	c.b = appendTPM2B(c.b, password)
	return c
}

func (c *pwCommand) u16(v uint16) { c.b = binary.BigEndian.AppendUint16(c.b, v) }
func (c *pwCommand) u32(v uint32) { c.b = binary.BigEndian.AppendUint32(c.b, v) }

// bytes is the finished command.
func (c *pwCommand) bytes() []byte { return finish(c.b) }

// pwResponse is the parameter area of a response to a command with one
// password session, after checking the header (response) and the session
// area.
func pwResponse(rsp []byte) (reader, error) {
	r, err := response(rsp, tpm2.TPMSTSessions)
	if err != nil {
		return reader{}, err
	}
	// Compared unsigned: on a 32-bit int a size with its top bit set
	// would be negative and pass a signed test.
	size := r.u32()
	if r.bad || uint64(size) > uint64(len(r.b)) {
		return reader{}, errMalformed
	}
	params := r.take(int(size))
	// The session: an empty nonce, attributes, an empty HMAC.
	if s := r.b; len(s) != 5 || s[0] != 0 || s[1] != 0 || s[3] != 0 || s[4] != 0 {
		return reader{}, errMalformed
	}
	return reader{b: params}, nil
}

// sign runs TPM2_Sign of digest with key handle h (password value auth)
// in scheme.
func (e *Engine) sign(h tpm2.TPMHandle, password, digest []byte, scheme SigScheme) (*tpm2.TPMTSignature, error) {
	p, err := e.signParts(h, password, digest, scheme)
	if err != nil || p.other != nil {
		return p.other, err
	}
	sig := &tpm2.TPMTSignature{SigAlg: p.alg}
	if p.alg == tpm2.TPMAlgECDSA {
		sig.Signature = tpm2.NewTPMUSignature(p.alg, &tpm2.TPMSSignatureECC{
			Hash: p.hash, SignatureR: tpm2.TPM2BECCParameter{Buffer: p.a}, SignatureS: tpm2.TPM2BECCParameter{Buffer: p.b}})
	} else {
		sig.Signature = tpm2.NewTPMUSignature(p.alg, &tpm2.TPMSSignatureRSA{Hash: p.hash, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: p.a}})
	}
	return sig, nil
}

// sigParts is a TPMT_SIGNATURE read in place: ECDSA's r (a) and s (b), or
// RSA's signature (a); other is a scheme no key here is made with, read by
// go-tpm.
type sigParts struct {
	alg   tpm2.TPMAlgID
	hash  tpm2.TPMIAlgHash
	a, b  []byte
	other *tpm2.TPMTSignature
}

// signParts runs TPM2_Sign and reads its signature in the response.
func (e *Engine) signParts(h tpm2.TPMHandle, password, digest []byte, scheme SigScheme) (sigParts, error) {
	c := e.pwCommand(tpm2.TPMCCSign, h, password)
	c.b = appendTPM2B(c.b, digest)
	c.u16(uint16(scheme.Alg)) // TPMT_SIG_SCHEME: the scheme, its hash unless NULL
	if scheme.Alg != tpm2.TPMAlgNull {
		c.u16(uint16(scheme.Hash))
	}
	c.u16(uint16(tpm2.TPMSTHashCheck)) // TPMT_TK_HASHCHECK: the NULL ticket
	c.u32(uint32(tpm2.TPMRHNull))
	c.u16(0)
	r, err := e.pwSend(c)
	if err != nil {
		return sigParts{}, err
	}
	params := r.b
	p := sigParts{alg: tpm2.TPMAlgID(r.u16())}
	switch p.alg {
	case tpm2.TPMAlgECDSA:
		p.hash = tpm2.TPMIAlgHash(r.u16())
		p.a = r.tpm2b()
		p.b = r.tpm2b()
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		p.hash = tpm2.TPMIAlgHash(r.u16())
		p.a = r.tpm2b()
	default:
		// A scheme no key here is made with: let go-tpm read it.
		s, err := tpm2.Unmarshal[tpm2.TPMTSignature](params)
		if err != nil {
			return sigParts{}, fmt.Errorf("%w to TPM2_Sign: %v", errMalformed, err)
		}
		return sigParts{other: s}, nil
	}
	if err := r.end("TPM2_Sign"); err != nil {
		return sigParts{}, err
	}
	return p, nil
}

// SignBytes is Sign with the signature as PKCS#11 has it (signatureBytes):
// for a key without a policy, written straight from the response, with no
// TPMT_SIGNATURE and no big integers built (C_Sign's hot path).
func (e *Engine) SignBytes(key *Loadable, digest []byte, scheme SigScheme, n int) ([]byte, error) {
	if key.Policy != nil {
		sig, err := e.Sign(key, digest, scheme)
		if err != nil {
			return nil, err
		}
		return signatureBytes(sig, n)
	}
	if err := scheme.check(); err != nil {
		return nil, err
	}
	h, err := e.Handle(key)
	if err != nil {
		return nil, err
	}
	p, err := e.signParts(h.Handle, key.Auth, digest, scheme)
	switch {
	case err != nil:
		return nil, err
	case p.other != nil:
		return signatureBytes(p.other, n)
	case p.alg == tpm2.TPMAlgECDSA:
		return ecdsaBytes(p.a, p.b, n)
	}
	return leftPad(p.a, n), nil
}

// signatureBytes is a TPM signature as PKCS#11 has it: r||s for ECDSA,
// each half n/2 bytes; the n-byte signature for RSA.
func signatureBytes(sig *tpm2.TPMTSignature, n int) ([]byte, error) {
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		ec, err := sig.Signature.ECDSA()
		if err != nil {
			return nil, err
		}
		return ecdsaBytes(ec.SignatureR.Buffer, ec.SignatureS.Buffer, n)
	case tpm2.TPMAlgRSAPSS:
		rs, err := sig.Signature.RSAPSS()
		if err != nil {
			return nil, err
		}
		return leftPad(rs.Sig.Buffer, n), nil
	default:
		rs, err := sig.Signature.RSASSA()
		if err != nil {
			return nil, err
		}
		return leftPad(rs.Sig.Buffer, n), nil
	}
}

// ecdsaBytes is r||s, each left-padded to n/2 bytes; a half longer than
// that (leading zeros aside) is a TPM's malformed answer.
func ecdsaBytes(r, s []byte, n int) ([]byte, error) {
	out := make([]byte, n)
	if !putInt(out[:n/2], r) || !putInt(out[n/2:], s) {
		return nil, fmt.Errorf("%w to TPM2_Sign: ECDSA signature longer than the curve's", errMalformed)
	}
	return out, nil
}

// putInt writes the big-endian integer v into dst, left-padded with zeros.
func putInt(dst, v []byte) bool {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) > len(dst) {
		return false
	}
	clear(dst[:len(dst)-len(v)])
	copy(dst[len(dst)-len(v):], v)
	return true
}

// leftPad returns b zero-extended on the left to n bytes (TPMs return RSA
// results without leading zeros).
func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	out := make([]byte, n)
	copy(out[n-len(b):], b)
	return out
}

// rsaDecryptRaw runs TPM2_RSA_Decrypt with the NULL scheme and no label.
func (e *Engine) rsaDecryptRaw(h tpm2.TPMHandle, password, c []byte) ([]byte, error) {
	cmd := e.pwCommand(tpm2.TPMCCRSADecrypt, h, password)
	cmd.b = appendTPM2B(cmd.b, c)
	cmd.u16(uint16(tpm2.TPMAlgNull))
	cmd.u16(0)
	return e.oneTPM2B(cmd, "TPM2_RSA_Decrypt")
}

// hmac runs TPM2_HMAC of data (at most maxBuffer bytes) with hash.
func (e *Engine) hmac(h tpm2.TPMHandle, password, data []byte, hash tpm2.TPMAlgID) ([]byte, error) {
	cmd := e.pwCommand(tpm2.TPMCCHMAC, h, password)
	cmd.b = appendTPM2B(cmd.b, data)
	cmd.u16(uint16(hash))
	return e.oneTPM2B(cmd, "TPM2_HMAC")
}

// pwSend sends c and returns its response's parameters. The command
// holds the key's authValue: the buffer is wiped once sent.
func (e *Engine) pwSend(c *pwCommand) (reader, error) {
	rsp, err := e.send(c.bytes())
	clear(c.b)
	if err != nil {
		return reader{}, err
	}
	return pwResponse(rsp)
}

// oneTPM2B sends cmd, whose response parameters are one TPM2B.
func (e *Engine) oneTPM2B(cmd *pwCommand, what string) ([]byte, error) {
	r, err := e.pwSend(cmd)
	if err != nil {
		return nil, err
	}
	area := r.b
	out := r.tpm2b()
	if err := r.end(what); err != nil {
		clear(area) // an RSA decryption's plaintext
		return nil, err
	}
	return out, nil
}
