package tpm

import (
	"errors"

	"github.com/google/go-tpm/tpm2"
)

// send sends one command. Besides counting it:
//
//   - A failed connection (a TransportError: the TPM restarted, was
//     unplugged, or stopped answering) takes everything this Engine had
//     loaded with it, as far as the Engine can know: those objects are
//     marked not loaded, so each is loaded again (from its saved context if
//     that still loads, else from its blobs) on the new connection. Had the
//     TPM kept them, they are orphans now, which the next full TPM flushes
//     (flushOrphans); never are stale handles used, which would name no
//     object (TPM_RC_REFERENCE_H0) or, after a restart, another one.
//   - A response saying a handle names nothing loaded means the same: the
//     TPM lost what it held (a reset without a broken connection). The
//     command fails; the caller may run it again (IsStale).
//   - A TPM with no room for one more session (TPM_RC_SESSION_MEMORY or
//     _HANDLES) when this Engine starts one holds sessions of processes that
//     died in mid-command: see reclaimSessions. It is emptied of them and
//     the command sent once more.
func (e *Engine) send(cmd []byte) ([]byte, error) {
	if e.failed != nil {
		return nil, e.failed
	}
	e.Commands++
	rsp, err := e.t.Send(cmd)
	if err != nil {
		if IsTransport(err) {
			e.lost()
			e.failed = err
		}
		return rsp, err
	}
	switch rc := responseCode(rsp); {
	case isReference(rc):
		e.lost()
	case (rc == tpm2.TPMRCSessionMemory || rc == tpm2.TPMRCSessionHandles) && commandCode(cmd) == tpm2.TPMCCStartAuthSession:
		if e.reclaimSessions(rc == tpm2.TPMRCSessionHandles) > 0 {
			e.Commands++
			rsp, err = e.t.Send(cmd)
			if err != nil && IsTransport(err) {
				e.lost()
				e.failed = err
			}
		}
	}
	return rsp, err
}

// lost marks every object this Engine had loaded as gone with the
// connection. Persistent objects stay: they live in the TPM's NV.
func (e *Engine) lost() {
	e.dropKept(false)
	for id, s := range e.slots {
		if s.dropped {
			delete(e.slots, id)
		}
		if s.loaded && !s.persistent {
			s.loaded = false
		}
	}
}

// IsStale reports whether err says the TPM no longer held what a command
// named (it restarted, or the connection to it was lost and made again):
// the Engine has forgotten those objects, and the same work run again
// loads them afresh. A TPM that did not answer in time is not stale: run
// again, it would most likely keep the caller waiting as long again.
func IsStale(err error) bool {
	if err == nil {
		return false
	}
	if IsTransport(err) {
		return !IsTimeout(err)
	}
	if errors.Is(err, errGone) {
		return true
	}
	var rc tpm2.TPMRC
	return errors.As(err, &rc) && isReference(rc)
}

// isReference: TPM_RC_REFERENCE_H0..H6, a handle names nothing loaded.
func isReference(rc tpm2.TPMRC) bool {
	return rc >= tpm2.TPMRCReferenceH0 && rc <= tpm2.TPMRCReferenceH6
}
