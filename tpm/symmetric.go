package tpm

import (
	"github.com/google/go-tpm/tpm2"
)

// maxBuffer is MAX_DIGEST_BUFFER, the most a TPM2B_MAX_BUFFER carries on
// every TPM the token targets; longer data is sent in chunks.
const maxBuffer = 1024

// EncryptDecrypt runs TPM2_EncryptDecrypt2 over data of any length in
// chunks, chaining the IV the TPM returns, and returns the output and the
// IV to continue with. mode is a TPM symmetric mode (CFB, CBC, ECB, CTR).
func (e *Engine) EncryptDecrypt(key *Object, decrypt bool, mode tpm2.TPMAlgID, iv, data []byte) ([]byte, []byte, error) {
	out := make([]byte, 0, len(data))
	for len(data) > 0 {
		h, err := e.Handle(key)
		if err != nil {
			return nil, nil, err
		}
		n := min(len(data), maxBuffer)
		rsp, err := tpm2.EncryptDecrypt2{
			KeyHandle: auth(h, key.Auth),
			Message:   tpm2.TPM2BMaxBuffer{Buffer: data[:n]},
			Decrypt:   tpm2.TPMIYesNo(decrypt),
			Mode:      mode,
			IV:        tpm2.TPM2BIV{Buffer: iv},
		}.Execute(e.tr())
		if err != nil {
			return nil, nil, err
		}
		out = append(out, rsp.OutData.Buffer...)
		iv = rsp.IV.Buffer
		data = data[n:]
	}
	return out, iv, nil
}

// HMAC computes the HMAC of data with key: one TPM2_HMAC when data fits a
// buffer, else an HMAC sequence that lives only within this call.
func (e *Engine) HMAC(key *Object, hash tpm2.TPMAlgID, data []byte) ([]byte, error) {
	h, err := e.Handle(key)
	if err != nil {
		return nil, err
	}
	if len(data) <= maxBuffer {
		rsp, err := tpm2.Hmac{
			Handle:  auth(h, key.Auth),
			Buffer:  tpm2.TPM2BMaxBuffer{Buffer: data},
			HashAlg: hash,
		}.Execute(e.tr())
		if err != nil {
			return nil, err
		}
		return rsp.OutHMAC.Buffer, nil
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
// (TPM2_ECDH_ZGen) and returns Z, the x coordinate.
func (e *Engine) ECDH(key *Object, x, y []byte) ([]byte, error) {
	h, err := e.Handle(key)
	if err != nil {
		return nil, err
	}
	// Z is the shared secret: encrypted on its way out.
	ka, err := e.secret(h, key.Auth, map[string]bool{key.ID: true}, encryptOut)
	if err != nil {
		return nil, err
	}
	rsp, err := tpm2.ECDHZGen{
		KeyHandle: ka,
		InPoint: tpm2.New2B(tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x},
			Y: tpm2.TPM2BECCParameter{Buffer: y},
		}),
	}.Execute(e.tr())
	if err != nil {
		return nil, err
	}
	p, err := rsp.OutPoint.Contents()
	if err != nil {
		return nil, err
	}
	return p.X.Buffer, nil
}

// Import wraps a key the caller supplies (public area and sensitive part)
// under parent with TPM2_Import and returns its private blob, which loads
// like any key the TPM made. The sensitive part is sent without an inner or
// outer wrapper: it comes from this host's memory in any case.
func (e *Engine) Import(parent *Object, public tpm2.TPMTPublic, sensitive tpm2.TPMTSensitive) (tpm2.TPM2BPrivate, error) {
	ph, err := e.Handle(parent)
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	dup := tpm2.Marshal(tpm2.New2B(sensitive))
	pa, err := e.secret(ph, parent.Auth, map[string]bool{parent.ID: true})
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	rsp, err := tpm2.Import{
		ParentHandle: pa,
		ObjectPublic: tpm2.New2B(public),
		Duplicate:    tpm2.TPM2BPrivate{Buffer: dup},
		Symmetric:    tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}.Execute(e.tr())
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	return rsp.OutPrivate, nil
}
