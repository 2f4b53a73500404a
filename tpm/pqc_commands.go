package tpm

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The v1.85 commands for ML-DSA and ML-KEM keys (Part 3 v1.85), one method
// each, marshalled by hand (raw_exec.go).

// CreatePQC makes an ML-DSA or ML-KEM key under parent from template and
// returns its wrapped blobs, as Create does for the key kinds go-tpm knows.
func (e *Engine) CreatePQC(parent *Loadable, template *PQCPublic, authValue []byte) (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) {
	return e.create(parent, template.Public2B(), authValue, nil, "create "+templateName(template))
}

func templateName(p *PQCPublic) string {
	if p.Type == AlgMLKEM {
		return p.MLKEM().String()
	}
	return p.MLDSA().String()
}

// PublicOf parses an ML-DSA or ML-KEM key's public area.
func PublicOf(pub tpm2.TPM2BPublic) (*PQCPublic, error) {
	return ParsePQCPublic(pub.Bytes())
}

// LoadExternalPQC loads a public key alone (the NULL hierarchy) for the
// verification commands, and returns its handle, to be flushed by the caller.
func (e *Engine) LoadExternalPQC(pub *PQCPublic) (tpm2.NamedHandle, error) {
	var h tpm2.NamedHandle
	err := e.withRoom(map[string]bool{}, func() error {
		rsp, err := tpm2.LoadExternal{InPublic: pub.Public2B(), Hierarchy: tpm2.TPMRHNull}.Execute(e.tr())
		if err != nil {
			return err
		}
		h = tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
		return nil
	})
	return h, err
}

// FlushHandle flushes a transient handle the caller owns (LoadExternalPQC).
func (e *Engine) FlushHandle(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(e.tr())
}

// Encapsulate runs TPM2_Encapsulate with key's public key: a fresh shared
// secret and its ciphertext. (A caller wanting the secret kept off the TPM
// bus encapsulates in software: only the public key is needed.)
func (e *Engine) Encapsulate(key *Loadable) (secret, ciphertext []byte, err error) {
	h, err := e.Handle(key)
	if err != nil {
		return nil, nil, err
	}
	rsp, err := e.execRaw(encapsulateCmd(h))
	if err != nil {
		return nil, nil, fmt.Errorf("encapsulate: %w", err)
	}
	r := reader{b: rsp.params}
	secret, ciphertext = r.tpm2b(), r.tpm2b()
	if err := r.end("TPM2_Encapsulate response"); err != nil {
		clear(rsp.params) // holds the secret
		return nil, nil, err
	}
	return secret, ciphertext, nil
}

// Decapsulate runs TPM2_Decapsulate of ciphertext with key and returns the
// shared secret, which crosses the bus encrypted (the response parameter
// encryption of the session kept salted to the Engine's Salt key, when it
// has one: one TPM command, kept_session.go).
func (e *Engine) Decapsulate(key *Loadable, ciphertext []byte) ([]byte, error) {
	if err := refusePolicy(key, "decapsulate"); err != nil {
		return nil, err
	}
	h, err := e.Handle(key)
	if err != nil {
		return nil, err
	}
	ka, err := e.keptAuth(h, key.Auth, map[string]bool{key.ID: true}, false, true)
	if err != nil {
		return nil, err
	}
	rsp, err := e.execRaw(decapsulateCmd(ka, ciphertext))
	if err != nil {
		return nil, fmt.Errorf("decapsulate: %w", err)
	}
	defer clear(rsp.params) // the decrypted secret, whatever the parse says
	r := reader{b: rsp.params}
	secret := bytes.Clone(r.tpm2b())
	if err := r.end("TPM2_Decapsulate response"); err != nil {
		clear(secret)
		return nil, err
	}
	return secret, nil
}

// SignSeq is a sign or verify sequence in the TPM: the message is sent to
// it in pieces (SequenceUpdate), then the sequence is completed, which
// flushes it. Its authValue is random, so no other TPM user can feed it.
type SignSeq struct {
	Handle tpm2.TPMHandle
	Key    *Loadable
	auth   []byte
}

// maxUpdate is the most message bytes one TPM2_SequenceUpdate or
// TPM2_SignSequenceComplete carries: a TPM2B_MAX_BUFFER holds
// MAX_DIGEST_BUFFER bytes, at least 1024 on every TPM.
const maxUpdate = 1024

func newSeqAuth() ([]byte, error) {
	a := make([]byte, 16)
	if _, err := rand.Read(a); err != nil {
		return nil, err
	}
	return a, nil
}

// SignSequenceStart starts a sign sequence with key (TPM2_SignSequenceStart)
// for the FIPS 204 context string ctx (at most 255 bytes).
func (e *Engine) SignSequenceStart(key *Loadable, ctx []byte) (*SignSeq, error) {
	return e.sequenceStart(ccSignSequenceStart, key, nil, ctx)
}

// VerifySequenceStart starts a verify sequence with the (loaded) key h.
func (e *Engine) VerifySequenceStart(h tpm2.NamedHandle, ctx []byte) (*SignSeq, error) {
	return e.sequenceStart(ccVerifySequenceStart, nil, &h, ctx)
}

func (e *Engine) sequenceStart(cc tpm2.TPMCC, key *Loadable, kh *tpm2.NamedHandle, ctx []byte) (*SignSeq, error) {
	if len(ctx) > MaxSignatureContext {
		return nil, fmt.Errorf("signature context of %d bytes: at most %d", len(ctx), MaxSignatureContext)
	}
	auth, err := newSeqAuth()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	var h tpm2.NamedHandle
	if key != nil {
		if err := refusePolicy(key, "sign sequence start"); err != nil {
			return nil, err
		}
		keep[key.ID] = true
		if h, err = e.handle(key, keep); err != nil {
			return nil, err
		}
	} else {
		h = *kh
	}
	cmd := signSequenceStartCmd(h, auth, ctx)
	if cc == ccVerifySequenceStart {
		cmd = verifySequenceStartCmd(h, auth, ctx)
	}
	var rsp *rawResponse
	// A sequence takes an object slot, as a loaded key does: only the key
	// must stay (its parents, kept while loading it, may make room).
	keep = map[string]bool{}
	if key != nil {
		keep[key.ID] = true
	}
	err = e.withRoom(keep, func() (err error) {
		rsp, err = e.execRaw(cmd)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sequence start: %w", err)
	}
	return &SignSeq{Handle: rsp.handles[0], Key: key, auth: auth}, nil
}

// seqAuth authorizes the sequence with its authValue (a password session:
// the value is random and ends with the sequence).
func (s *SignSeq) seqAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: s.Handle, Auth: tpm2.PasswordAuth(s.auth)}
}

// SequenceUpdate adds data to the sequence, in pieces the TPM takes. Any
// error leaves the sequence with part of the data: the caller must flush it
// (FlushSequence), never complete it.
func (e *Engine) SequenceUpdate(s *SignSeq, data []byte) error {
	for len(data) > 0 {
		n := min(len(data), maxUpdate)
		if _, err := e.execRaw(sequenceUpdateCmd(s.seqAuth(), data[:n])); err != nil {
			return fmt.Errorf("sequence update: %w", err)
		}
		data = data[n:]
	}
	return nil
}

// FlushSequence ends a sequence that will not be completed.
func (e *Engine) FlushSequence(s *SignSeq) { e.FlushHandle(s.Handle) }

// SignSequenceComplete signs what the sequence was given, with last (at
// most maxUpdate bytes) added, and ends the sequence.
func (e *Engine) SignSequenceComplete(s *SignSeq, last []byte) (*PQCSignature, error) {
	if len(last) > maxUpdate {
		return nil, fmt.Errorf("sign sequence complete: %d bytes, at most %d", len(last), maxUpdate)
	}
	if err := refusePolicy(s.Key, "sign sequence complete"); err != nil {
		return nil, err
	}
	keep := map[string]bool{s.Key.ID: true}
	h, err := e.handle(s.Key, keep)
	if err != nil {
		return nil, err
	}
	ka, err := e.secret(h, s.Key.Auth, keep)
	if err != nil {
		return nil, err
	}
	rsp, err := e.execRaw(signSequenceCompleteCmd(s.seqAuth(), ka, last))
	if err != nil {
		return nil, fmt.Errorf("sign sequence complete: %w", err)
	}
	r := reader{b: rsp.params}
	sig := r.signature()
	if err := r.end("TPM2_SignSequenceComplete response"); err != nil {
		return nil, err
	}
	return sig, nil
}

// SignMessage signs msg with key in one sequence (pure ML-DSA, or
// HashML-DSA with the TPM hashing msg), with the FIPS 204 context ctx. A
// sequence that fails part-way is flushed: nothing is ever signed over
// part of msg.
func (e *Engine) SignMessage(key *Loadable, ctx, msg []byte) (*PQCSignature, error) {
	s, err := e.SignSequenceStart(key, ctx)
	if err != nil {
		return nil, err
	}
	cut := max(0, len(msg)-maxUpdate)
	if err := e.SequenceUpdate(s, msg[:cut]); err != nil {
		e.FlushSequence(s)
		return nil, err
	}
	sig, err := e.SignSequenceComplete(s, msg[cut:])
	if err != nil {
		var rc tpm2.TPMRC
		if !errors.As(err, &rc) || rc != RCSignContextKey {
			e.FlushSequence(s) // a failed complete may leave it (fwTPM does)
		}
		return nil, err
	}
	return sig, nil
}

// VerifySequenceComplete checks sig over what the sequence was given with
// the key h and ends the sequence; the ticket says what was verified.
func (e *Engine) VerifySequenceComplete(s *SignSeq, h tpm2.NamedHandle, sig *PQCSignature) (Verified, error) {
	rsp, err := e.execRaw(verifySequenceCompleteCmd(s.seqAuth(), h, sig))
	if err != nil {
		return Verified{}, fmt.Errorf("verify sequence complete: %w", err)
	}
	r := reader{b: rsp.params}
	v := r.verified()
	return v, r.end("TPM2_VerifySequenceComplete response")
}

// SignDigest runs TPM2_SignDigest: a HashML-DSA key signs digest (the
// pre-hash of the message, by the key's hash), or an ML-DSA key that allows
// external mu signs the mu digest is. The ticket is the NULL one: only an
// unrestricted key signs.
func (e *Engine) SignDigest(key *Loadable, ctx, digest []byte) (*PQCSignature, error) {
	if len(ctx) > MaxSignatureContext {
		return nil, fmt.Errorf("signature context of %d bytes: at most %d", len(ctx), MaxSignatureContext)
	}
	if err := refusePolicy(key, "sign digest"); err != nil {
		return nil, err
	}
	keep := map[string]bool{key.ID: true}
	h, err := e.handle(key, keep)
	if err != nil {
		return nil, err
	}
	ka, err := e.secret(h, key.Auth, keep)
	if err != nil {
		return nil, err
	}
	rsp, err := e.execRaw(signDigestCmd(ka, ctx, digest))
	if err != nil {
		return nil, fmt.Errorf("sign digest: %w", err)
	}
	r := reader{b: rsp.params}
	sig := r.signature()
	if err := r.end("TPM2_SignDigest response"); err != nil {
		return nil, err
	}
	return sig, nil
}

// VerifyDigestSignature runs TPM2_VerifyDigestSignature with the (loaded)
// key h.
func (e *Engine) VerifyDigestSignature(h tpm2.NamedHandle, ctx, digest []byte, sig *PQCSignature) (Verified, error) {
	rsp, err := e.execRaw(verifyDigestSignatureCmd(h, ctx, digest, sig))
	if err != nil {
		return Verified{}, fmt.Errorf("verify digest signature: %w", err)
	}
	r := reader{b: rsp.params}
	v := r.verified()
	return v, r.end("TPM2_VerifyDigestSignature response")
}

// The commands, one constructor each, after their tables in Part 3 v1.85
// (handles with an authorization first, then the others, then parameters).

// encapsulateCmd: TPM2_Encapsulate: keyHandle (no authorization).
func encapsulateCmd(key tpm2.NamedHandle) rawCmd {
	return rawCmd{cc: ccEncapsulate, handles: []tpm2.NamedHandle{key}}
}

// decapsulateCmd: TPM2_Decapsulate: @keyHandle (USER);
// ciphertext TPM2B_KEM_CIPHERTEXT.
func decapsulateCmd(key tpm2.AuthHandle, ciphertext []byte) rawCmd {
	return rawCmd{cc: ccDecapsulate, auth: []tpm2.AuthHandle{key}, params: [][]byte{appendTPM2B(nil, ciphertext)}}
}

// signSequenceStartCmd: TPM2_SignSequenceStart: keyHandle (no
// authorization); auth TPM2B_AUTH, context TPM2B_SIGNATURE_CTX; the
// response's handle is the sequence.
func signSequenceStartCmd(key tpm2.NamedHandle, auth, ctx []byte) rawCmd {
	return rawCmd{cc: ccSignSequenceStart, handles: []tpm2.NamedHandle{key},
		params: [][]byte{appendTPM2B(nil, auth), appendTPM2B(nil, ctx)}, rspHandles: 1}
}

// verifySequenceStartCmd: TPM2_VerifySequenceStart: keyHandle;
// auth TPM2B_AUTH, hint TPM2B_SIGNATURE_HINT (empty: only EdDSA has one),
// context TPM2B_SIGNATURE_CTX.
func verifySequenceStartCmd(key tpm2.NamedHandle, auth, ctx []byte) rawCmd {
	return rawCmd{cc: ccVerifySequenceStart, handles: []tpm2.NamedHandle{key},
		params: [][]byte{appendTPM2B(nil, auth), appendTPM2B(nil, nil), appendTPM2B(nil, ctx)}, rspHandles: 1}
}

// sequenceUpdateCmd: TPM2_SequenceUpdate: @sequenceHandle; buffer TPM2B_MAX_BUFFER.
func sequenceUpdateCmd(seq tpm2.AuthHandle, data []byte) rawCmd {
	return rawCmd{cc: tpm2.TPMCCSequenceUpdate, auth: []tpm2.AuthHandle{seq}, params: [][]byte{appendTPM2B(nil, data)}}
}

// signSequenceCompleteCmd: TPM2_SignSequenceComplete:
// @sequenceHandle, @keyHandle (both USER); buffer TPM2B_MAX_BUFFER.
func signSequenceCompleteCmd(seq, key tpm2.AuthHandle, last []byte) rawCmd {
	return rawCmd{cc: ccSignSequenceComplete, auth: []tpm2.AuthHandle{seq, key}, params: [][]byte{appendTPM2B(nil, last)}}
}

// verifySequenceCompleteCmd: TPM2_VerifySequenceComplete:
// @sequenceHandle, keyHandle; signature TPMT_SIGNATURE.
func verifySequenceCompleteCmd(seq tpm2.AuthHandle, key tpm2.NamedHandle, sig *PQCSignature) rawCmd {
	return rawCmd{cc: ccVerifySequenceComplete, auth: []tpm2.AuthHandle{seq}, handles: []tpm2.NamedHandle{key},
		params: [][]byte{sig.Marshal()}}
}

// signDigestCmd: TPM2_SignDigest: @keyHandle (USER); context
// TPM2B_SIGNATURE_CTX, digest TPM2B_DIGEST, validation TPMT_TK_HASHCHECK.
func signDigestCmd(key tpm2.AuthHandle, ctx, digest []byte) rawCmd {
	return rawCmd{cc: ccSignDigest, auth: []tpm2.AuthHandle{key},
		params: [][]byte{appendTPM2B(nil, ctx), appendTPM2B(nil, digest), nullHashCheck()}}
}

// verifyDigestSignatureCmd: TPM2_VerifyDigestSignature:
// keyHandle; context, digest, signature TPMT_SIGNATURE.
func verifyDigestSignatureCmd(key tpm2.NamedHandle, ctx, digest []byte, sig *PQCSignature) rawCmd {
	return rawCmd{cc: ccVerifyDigestSignature, handles: []tpm2.NamedHandle{key},
		params: [][]byte{appendTPM2B(nil, ctx), appendTPM2B(nil, digest), sig.Marshal()}}
}

// nullHashCheck is the NULL TPMT_TK_HASHCHECK: tag, TPM_RH_NULL, no digest.
func nullHashCheck() []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTHashCheck))
	b = binary.BigEndian.AppendUint32(b, uint32(tpm2.TPMRHNull))
	return binary.BigEndian.AppendUint16(b, 0)
}

// PQCCaps is what the TPM says of its post-quantum support.
type PQCCaps struct {
	// MLDSA, HashMLDSA, MLKEM: the algorithm is listed (TPM_CAP_ALGS).
	MLDSA, HashMLDSA, MLKEM bool
	// Sets is TPM_PT_ML_PARAMETER_SETS (0 if the TPM has no such property).
	Sets MLParameterSets
	// Commands lists the v1.85 commands the TPM implements (TPM_CAP_COMMANDS).
	Commands map[tpm2.TPMCC]bool
	// Hashes lists SHA-256, SHA-384 and SHA-512 where the TPM has them
	// (TPM_CAP_ALGS): the pre-hashes a HashML-DSA key may be bound to.
	Hashes map[tpm2.TPMAlgID]bool
}

// HasMLDSA reports whether the TPM makes and signs with ML-DSA keys of ps
// through the sign sequence commands.
func (c PQCCaps) HasMLDSA(ps MLDSAParams) bool {
	return c.MLDSA && c.Sets&ps.Bit() != 0 && c.Commands[ccSignSequenceStart] && c.Commands[ccSignSequenceComplete]
}

// HasHashMLDSA reports whether the TPM makes HashML-DSA keys of ps bound
// to the pre-hash hash and signs digests with them (TPM2_SignDigest).
func (c PQCCaps) HasHashMLDSA(ps MLDSAParams, hash tpm2.TPMAlgID) bool {
	return c.HashMLDSA && c.Sets&ps.Bit() != 0 && c.Commands[ccSignDigest] && c.Hashes[hash]
}

// HasMLKEM reports whether the TPM makes ML-KEM keys of ps and decapsulates.
func (c PQCCaps) HasMLKEM(ps MLKEMParams) bool {
	return c.MLKEM && c.Sets&ps.Bit() != 0 && c.Commands[ccDecapsulate]
}

// ProbePQC asks the TPM which algorithms, parameter sets and commands of
// v1.85 it has. A TPM without them (swtpm, today's hardware) answers with
// none: the caps are empty, not an error.
func (e *Engine) ProbePQC() (PQCCaps, error) {
	c := PQCCaps{Commands: map[tpm2.TPMCC]bool{}, Hashes: map[tpm2.TPMAlgID]bool{}}
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapAlgs, Property: uint32(AlgMLKEM), PropertyCount: 3}.Execute(e.tr())
	if err != nil {
		return c, err
	}
	algs, err := rsp.CapabilityData.Data.Algorithms()
	if err != nil {
		return c, err
	}
	for _, a := range algs.AlgProperties {
		switch a.Alg {
		case AlgMLKEM:
			c.MLKEM = true
		case AlgMLDSA:
			c.MLDSA = true
		case AlgHashMLDSA:
			c.HashMLDSA = true
		}
	}
	if !c.MLKEM && !c.MLDSA && !c.HashMLDSA {
		return c, nil
	}
	rsp, err = tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(ptMLParameterSets), PropertyCount: 1}.Execute(e.tr())
	if err != nil {
		return c, err
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return c, err
	}
	for _, p := range props.TPMProperty {
		if p.Property == ptMLParameterSets {
			c.Sets = MLParameterSets(p.Value) & mlSetsKnown
		}
	}
	rsp, err = tpm2.GetCapability{Capability: tpm2.TPMCapCommands, Property: uint32(ccVerifySequenceComplete), PropertyCount: 8}.Execute(e.tr())
	if err != nil {
		return c, err
	}
	cmds, err := rsp.CapabilityData.Data.Command()
	if err != nil {
		return c, err
	}
	for _, a := range cmds.CommandAttributes {
		cc := tpm2.TPMCC(a.CommandIndex)
		if cc >= ccVerifySequenceComplete && cc <= ccSignSequenceStart {
			c.Commands[cc] = true
		}
	}
	if !c.HashMLDSA {
		return c, nil
	}
	// SHA-256 (0x000B), SHA-384, SHA-512: the pre-hashes a HashML-DSA key
	// may name (fwTPM has the first two).
	rsp, err = tpm2.GetCapability{Capability: tpm2.TPMCapAlgs, Property: uint32(tpm2.TPMAlgSHA256), PropertyCount: 3}.Execute(e.tr())
	if err != nil {
		return c, err
	}
	if algs, err = rsp.CapabilityData.Data.Algorithms(); err != nil {
		return c, err
	}
	for _, a := range algs.AlgProperties {
		switch a.Alg {
		case tpm2.TPMAlgSHA256, tpm2.TPMAlgSHA384, tpm2.TPMAlgSHA512:
			c.Hashes[a.Alg] = true
		}
	}
	return c, nil
}
