package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// rawCmd is one command marshalled here (the v1.85 ones go-tpm has no
// struct for, and TPM2_ECDH_ZGen and TPM2_Create over the kept session,
// where go-tpm's reflection cost too much) and run with go-tpm's sessions (tpm2.Session is exported:
// password, HMAC, salted, parameter encryption all work as for go-tpm's own
// commands). It follows Part 1 §18 (the command and response areas) as
// go-tpm's execute does.
type rawCmd struct {
	cc tpm2.TPMCC
	// auth are the handles with an authorization, in order: in every v1.85
	// command they come before the handles without one.
	auth []tpm2.AuthHandle
	// handles are the handles without an authorization, after auth.
	handles []tpm2.NamedHandle
	// extra are sessions for no handle, after auth's: present only to
	// encrypt parameters (Part 1 §19.6.1), or to audit.
	extra []tpm2.Session
	// params are the parameters, each marshalled; the first, if a session
	// decrypts, must be a TPM2B.
	params [][]byte
	// rspHandles is how many handles the response carries.
	rspHandles int
}

// rawResponse is a successful response: its handles and parameter area
// (decrypted if a session encrypted it).
type rawResponse struct {
	handles []tpm2.TPMHandle
	params  []byte
}

func (e *Engine) execRaw(c rawCmd) (*rawResponse, error) {
	var sess []tpm2.Session
	for _, a := range c.auth {
		if a.Auth == nil {
			return nil, errors.New("missing authorization")
		}
		sess = append(sess, a.Auth)
	}
	sess = append(sess, c.extra...)
	if len(sess) > 3 {
		return nil, fmt.Errorf("too many sessions: %d", len(sess))
	}
	t := e.tr()
	for i, s := range sess {
		if err := s.Init(t); err != nil {
			return nil, fmt.Errorf("initializing session %d: %w", i, err)
		}
		if err := s.NewNonceCaller(); err != nil {
			return nil, err
		}
	}
	var names []tpm2.TPM2BName
	handles := make([]byte, 0, 12)
	for _, a := range c.auth {
		handles = binary.BigEndian.AppendUint32(handles, uint32(a.Handle))
		names = append(names, a.Name)
	}
	for _, h := range c.handles {
		handles = binary.BigEndian.AppendUint32(handles, uint32(h.Handle))
		names = append(names, h.Name)
	}
	// The parameters, and below the command, may hold a secret in the
	// clear (a password session's authValue, a parameter no session
	// encrypts): wiped once sent.
	n := 0
	for _, p := range c.params {
		n += len(p)
	}
	parms := make([]byte, 0, n) // no copy left behind by a growing append
	defer clear(parms[:n])
	for i, p := range c.params {
		parms = append(parms, p...)
		if i != 0 {
			continue
		}
		for _, s := range sess { // the first parameter, encrypted in place
			if !s.IsDecryption() {
				continue
			}
			if len(p) < 2 {
				return nil, errors.New("the first parameter is not a TPM2B")
			}
			if err := s.Encrypt(parms[2:len(p)]); err != nil {
				return nil, err
			}
		}
	}
	var authArea []byte
	if len(sess) > 0 {
		var err error
		if authArea, err = authorizations(sess, c.cc, names, parms); err != nil {
			return nil, err
		}
	}
	tag := tpm2.TPMSTNoSessions
	if len(sess) > 0 {
		tag = tpm2.TPMSTSessions
	}
	cmd := newCommand(make([]byte, 0, HeaderSize+len(handles)+len(authArea)+len(parms)), tag, c.cc)
	cmd = append(cmd, handles...)
	cmd = append(cmd, authArea...)
	cmd = append(cmd, parms...)

	rsp, err := t.Send(finish(cmd))
	clear(cmd)
	clear(authArea)
	if err != nil {
		return nil, err
	}
	h, ok := ResponseHeader(rsp)
	if !ok || int64(h.Length) != int64(len(rsp)) {
		return nil, errMalformed
	}
	if rc := h.ResponseCode; rc != tpm2.TPMRCSuccess {
		for _, s := range sess {
			_ = s.CleanupFailure(t)
		}
		return nil, rc
	}
	r := reader{b: rsp[HeaderSize:]}
	out := &rawResponse{}
	for range c.rspHandles {
		out.handles = append(out.handles, tpm2.TPMHandle(r.u32()))
	}
	if len(sess) == 0 {
		out.params = r.b
		if r.bad {
			return nil, errMalformed
		}
		return out, nil
	}
	out.params = r.take(int(r.u32()))
	rparms := out.params
	for i, s := range sess {
		var a tpm2.TPMSAuthResponse
		a.Nonce.Buffer = r.tpm2b()
		attrs := r.u8()
		a.Authorization.Buffer = r.tpm2b()
		if r.bad {
			return nil, errMalformed
		}
		a.Attributes = sessionAttrsOf(attrs)
		if err := s.Validate(tpm2.TPMRCSuccess, c.cc, rparms, names, i, &a); err != nil {
			return nil, fmt.Errorf("validating session %d: %w", i, err)
		}
	}
	if err := r.end("response sessions"); err != nil {
		return nil, err
	}
	out.params = append([]byte(nil), rparms...)
	for _, s := range sess {
		if !s.IsEncryption() {
			continue
		}
		if len(out.params) < 2 {
			return nil, errors.New("the first response parameter is not a TPM2B")
		}
		if err := s.Decrypt(out.params[2:]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// authorizations is the command's authorization area: its size, then each
// session's TPMS_AUTH_COMMAND. The first session's HMAC also covers the
// nonces of the other sessions that encrypt or decrypt (Part 1 §19.6.5).
func authorizations(sess []tpm2.Session, cc tpm2.TPMCC, names []tpm2.TPM2BName, parms []byte) ([]byte, error) {
	var encNonce, decNonce []byte
	for _, s := range sess[1:] {
		switch {
		case s.IsEncryption():
			encNonce = s.NonceTPM().Buffer
		case s.IsDecryption():
			decNonce = s.NonceTPM().Buffer
		}
	}
	area := []byte{0, 0, 0, 0}
	for i, s := range sess {
		var add []byte
		if i == 0 {
			add = append(append(add, decNonce...), encNonce...)
		}
		a, err := s.Authorize(cc, parms, add, names, i)
		if err != nil {
			return nil, fmt.Errorf("session %d: %w", i, err)
		}
		// TPMS_AUTH_COMMAND, by hand (go-tpm's reflection costs more than
		// the rest of the command).
		area = binary.BigEndian.AppendUint32(area, uint32(a.Handle))
		area = appendTPM2B(area, a.Nonce.Buffer)
		area = append(area, sessionAttrs(a.Attributes))
		area = appendTPM2B(area, a.Authorization.Buffer)
	}
	binary.BigEndian.PutUint32(area, uint32(len(area)-4))
	return area, nil
}

// sessionAttrs is TPMA_SESSION's byte (Part 2 §8.4).
func sessionAttrs(a tpm2.TPMASession) byte {
	var b byte
	for i, set := range []bool{a.ContinueSession, a.AuditExclusive, a.AuditReset, false, false, a.Decrypt, a.Encrypt, a.Audit} {
		if set {
			b |= 1 << i
		}
	}
	return b
}

// sessionAttrsOf is the TPMA_SESSION of a byte (reserved bits dropped).
func sessionAttrsOf(b byte) tpm2.TPMASession {
	return tpm2.TPMASession{ContinueSession: b&1 != 0, AuditExclusive: b&2 != 0, AuditReset: b&4 != 0,
		Decrypt: b&0x20 != 0, Encrypt: b&0x40 != 0, Audit: b&0x80 != 0}
}
