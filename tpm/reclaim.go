package tpm

import (
	"github.com/google/go-tpm/tpm2"
)

// reclaimSessions flushes the sessions in the TPM, loaded ones (and, with
// saved, context-saved ones too), and returns how many it flushed.
//
// It runs only when this Engine is starting a session and the TPM has no
// room: this Engine holds no session then (each of its commands uses at
// most one, started just before it and ended by it) but its kept one
// (kept_session.go), which is started again when next needed. On a TPM without a
// resource manager (swtpm, /dev/tpm0) whoever holds the connection is its
// only user, and every library lets go of it between commands only, so a
// loaded session there was left by a process killed between starting a
// session and using it: nobody alive can use it. Sessions saved by some
// other program (a context file of tpm2-tools) go only when the TPM is out
// of session handles altogether. Behind a resource manager (/dev/tpmrm0)
// the TPM shows each client its own sessions only.
func (e *Engine) reclaimSessions(saved bool) int {
	types := []tpm2.TPMHT{tpm2.TPMHTHMACSession} // TPM_HT_LOADED_SESSION: loaded HMAC and policy sessions
	if saved {
		types = append(types, tpm2.TPMHTPolicySession) // TPM_HT_SAVED_SESSION
	}
	e.dropKept(false) // flushed below with every other loaded session
	n := 0
	for _, ht := range types {
		for _, h := range e.handlesOf(ht) {
			e.Commands++
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(e.t); err == nil {
				n++
			}
		}
	}
	return n
}

// handlesOf lists the TPM's handles of type ht (every page).
func (e *Engine) handlesOf(ht tpm2.TPMHT) []tpm2.TPMHandle {
	var all []tpm2.TPMHandle
	next := uint32(ht) << 24
	for {
		e.Commands++
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      next,
			PropertyCount: 64,
		}.Execute(e.t)
		if err != nil {
			return all
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return all
		}
		for _, h := range hs.Handle {
			if uint32(h)>>24 == uint32(ht) {
				all = append(all, h)
			}
		}
		if !rsp.MoreData || len(hs.Handle) == 0 {
			return all
		}
		next = uint32(hs.Handle[len(hs.Handle)-1]) + 1
	}
}
