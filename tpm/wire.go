package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The header every TPM command and response starts with (TPM 2.0 Part 1,
// 18.2 and 18.4): a tag, the size of the whole, and the command code of a
// command or the response code of a response. It is read here and nowhere
// else, into go-tpm's types, by hand: a transport reads it for every
// command, where go-tpm's reflection would cost more than the rest.

// HeaderSize is the size of a command's or a response's header.
const HeaderSize = 10

// maxResponse is the largest response a TPM sends (TPM2_PT_MAX_RESPONSE_SIZE
// is 4096 on every TPM seen; leave room).
const maxResponse = 1 << 16

// CommandHeader reads the header of cmd; false when cmd is too short to
// have one.
func CommandHeader(cmd []byte) (tpm2.TPMCmdHeader, bool) {
	tag, size, code, ok := header(cmd)
	return tpm2.TPMCmdHeader{Tag: tag, Length: size, CommandCode: tpm2.TPMCC(code)}, ok
}

// ResponseHeader reads the header of rsp; false when rsp is too short to
// have one.
func ResponseHeader(rsp []byte) (tpm2.TPMRspHeader, bool) {
	tag, size, code, ok := header(rsp)
	return tpm2.TPMRspHeader{Tag: tag, Length: size, ResponseCode: tpm2.TPMRC(code)}, ok
}

func header(b []byte) (tpm2.TPMST, uint32, uint32, bool) {
	if len(b) < HeaderSize {
		return 0, 0, 0, false
	}
	return tpm2.TPMST(binary.BigEndian.Uint16(b)), binary.BigEndian.Uint32(b[2:6]), binary.BigEndian.Uint32(b[6:10]), true
}

// commandCode is cmd's command code (0 when cmd has no header).
func commandCode(cmd []byte) tpm2.TPMCC {
	h, _ := CommandHeader(cmd)
	return h.CommandCode
}

// responseCode is rsp's response code (success when rsp has no header:
// the transport has already refused a response that short).
func responseCode(rsp []byte) tpm2.TPMRC {
	h, _ := ResponseHeader(rsp)
	return h.ResponseCode
}

// ResponseSize checks that hdr starts a TPM response and returns the
// size its header gives: a TPM that answers garbage is not a TPM.
func ResponseSize(hdr []byte) (int, error) {
	h, ok := ResponseHeader(hdr)
	if !ok {
		return 0, fmt.Errorf("short TPM response (%d bytes)", len(hdr))
	}
	switch h.Tag {
	case tpm2.TPMSTNoSessions, tpm2.TPMSTSessions, tpm2.TPMSTRspCommand: // the last: a TPM 1.2 answering
	default:
		return 0, fmt.Errorf("not a TPM response (tag %#04x)", uint16(h.Tag))
	}
	if h.Length < HeaderSize || h.Length > maxResponse {
		return 0, fmt.Errorf("bad TPM response size %d", h.Length)
	}
	return int(h.Length), nil
}

// newCommand starts a command of code cc in b (reused): a header whose
// size finish fills in.
func newCommand(b []byte, tag tpm2.TPMST, cc tpm2.TPMCC) []byte {
	b = binary.BigEndian.AppendUint16(b[:0], uint16(tag))
	b = binary.BigEndian.AppendUint32(b, 0)
	return binary.BigEndian.AppendUint32(b, uint32(cc))
}

// finish writes the size of the command b into its header.
func finish(b []byte) []byte {
	binary.BigEndian.PutUint32(b[2:6], uint32(len(b)))
	return b
}

// checkRC is the error of a command whose response carries nothing the
// caller reads: its response code as go-tpm returns it (a tpm2.TPMRC).
func checkRC(rsp []byte, err error) error {
	if err != nil {
		return err
	}
	h, ok := ResponseHeader(rsp)
	if !ok {
		return errors.New("short TPM response")
	}
	if h.ResponseCode != tpm2.TPMRCSuccess {
		return h.ResponseCode
	}
	return nil
}

// errMalformed is a response that does not parse as the command's: a TPM
// that answers so is broken, not a caller's mistake.
var errMalformed = errors.New("malformed TPM response")

// response checks rsp's header and returns a reader of what follows it. A
// response code other than success is returned as go-tpm returns it (a
// tpm2.TPMRC), so callers test it the same way; a tag other than tag, or a
// size other than rsp's, is malformed.
func response(rsp []byte, tag tpm2.TPMST) (reader, error) {
	h, ok := ResponseHeader(rsp)
	if !ok {
		return reader{}, errMalformed
	}
	if h.ResponseCode != tpm2.TPMRCSuccess {
		return reader{}, h.ResponseCode
	}
	if h.Tag != tag || int64(h.Length) != int64(len(rsp)) {
		return reader{}, errMalformed
	}
	return reader{b: rsp[HeaderSize:]}, nil
}

// appendTPM2B appends v as a TPM2B: its size, then its bytes.
func appendTPM2B(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// reader reads what the hand-marshalled commands get back (and the
// structures inside); a read past the end sets bad and yields zeros, so a
// caller checks once, with end.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.bad, r.b = true, nil
		return make([]byte, max(n, 0))
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte      { return r.take(1)[0] }
func (r *reader) u16() uint16   { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32   { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) tpm2b() []byte { return r.take(int(r.u16())) }

// end is the error of a read that did not consume exactly the area.
func (r *reader) end(what string) error {
	if r.bad || len(r.b) != 0 {
		return fmt.Errorf("%w: %s", errMalformed, what)
	}
	return nil
}
