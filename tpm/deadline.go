package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// Deadlines bound how long one TPM command may take before the TPM is
// taken for dead (it is then reconnected for the next command). They are
// sized by what the command is: a signature, an unseal or a load takes
// milliseconds on any TPM, key generation (RSA above all, on a slow chip)
// can take a minute.
type Deadlines struct {
	// Command bounds every command that is not key generation.
	Command time.Duration
	// KeyGen bounds RSA key generation (TPM2_Create, TPM2_CreatePrimary
	// or TPM2_CreateLoaded of an RSA key), which searches for primes.
	KeyGen time.Duration
}

// DefaultDeadlines: 2 s for a command (no caller waits longer behind a stuck
// one), 2 min for RSA key generation.
var DefaultDeadlines = Deadlines{Command: 2 * time.Second, KeyGen: 2 * time.Minute}

// For is the deadline of the command cmd (a marshalled TPM command).
func (d Deadlines) For(cmd []byte) time.Duration {
	d = d.orDefault()
	if createsRSA(cmd) {
		return d.KeyGen
	}
	return d.Command
}

// createsRSA reports whether cmd creates an RSA key: TPM2_Create,
// TPM2_CreatePrimary or TPM2_CreateLoaded whose public template's type is
// TPM_ALG_RSA. Other keys (ECC, symmetric, sealed data) take no longer than
// a signature. A command that cannot be parsed counts as key generation:
// better wait too long than give up on a working TPM.
func createsRSA(cmd []byte) bool {
	h, ok := CommandHeader(cmd)
	if !ok {
		return false
	}
	switch h.CommandCode {
	case tpm2.TPMCCCreatePrimary, tpm2.TPMCCCreate, tpm2.TPMCCCreateLoaded:
	default:
		return false
	}
	// header, one handle (the parent or hierarchy), the authorization
	// area (its size, then the sessions), inSensitive (a TPM2B), then
	// inPublic: a TPM2B whose TPMT_PUBLIC starts with the key's type.
	p := cmd[HeaderSize:]
	if len(p) < 4 {
		return true
	}
	p = p[4:]
	if h.Tag == tpm2.TPMSTSessions {
		if len(p) < 4 {
			return true
		}
		n := int(binary.BigEndian.Uint32(p))
		if len(p) < 4+n {
			return true
		}
		p = p[4+n:]
	}
	if len(p) < 2 {
		return true
	}
	n := int(binary.BigEndian.Uint16(p))
	if len(p) < 2+n+4 {
		return true
	}
	p = p[2+n+2:] // inSensitive, inPublic's size
	return tpm2.TPMAlgID(binary.BigEndian.Uint16(p)) == tpm2.TPMAlgRSA
}

func (d Deadlines) orDefault() Deadlines {
	if d.Command <= 0 {
		d.Command = DefaultDeadlines.Command
	}
	if d.KeyGen <= 0 {
		d.KeyGen = DefaultDeadlines.KeyGen
	}
	return d
}

// TransportError is a failure to talk to the TPM at all: it could not be
// reached, did not answer within the command's deadline, or sent something
// that is not a TPM response. The connection is dropped; the next command
// opens a new one. Whatever the TPM held for this connection (loaded
// objects, sessions) must be taken as lost.
type TransportError struct {
	Op      string // connect, write, read, response
	Timeout bool   // the deadline passed
	Err     error
}

func (e *TransportError) Error() string {
	if e.Timeout {
		return fmt.Sprintf("TPM did not answer in time (%s): %v", e.Op, e.Err)
	}
	return fmt.Sprintf("TPM %s: %v", e.Op, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

func transportError(op string, err error) error {
	if err == nil {
		return nil
	}
	var te *TransportError
	if errors.As(err, &te) {
		return err
	}
	return &TransportError{Op: op, Err: err, Timeout: errors.Is(err, os.ErrDeadlineExceeded)}
}

// IsTransport reports whether err is a failure to talk to the TPM (as
// opposed to the TPM's answer, a response code).
func IsTransport(err error) bool {
	if err == nil {
		return false // every job's success asks: no errors.As target on the heap for it
	}
	var te *TransportError
	return errors.As(err, &te)
}

// IsTimeout reports whether err is a TPM that did not answer in time.
func IsTimeout(err error) bool {
	var te *TransportError
	return errors.As(err, &te) && te.Timeout
}
