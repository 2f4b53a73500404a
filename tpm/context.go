package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Swapping objects in and out of the TPM's few object slots (3 on swtpm):
// an object the Engine evicts is saved once (TPM2_ContextSave) and its
// saved context kept, in memory only, for as long as the Engine knows the
// object; from then on evicting it costs one TPM2_FlushContext and using
// it again one TPM2_ContextLoad, never a TPM2_Load under its parent (which
// needs the parent loaded, and its authorization). So a key the TPM does
// not hold costs a flush, a context load and its own command: three, as
// few as a TPM with full slots allows (nothing frees a slot but a flush).
//
// A saved object context may be loaded any number of times (TPM 2.0 Part 1,
// 30.3: unlike a session's, it is not consumed by loading). It is
// encrypted and integrity-protected by the TPM with a key only the TPM
// holds, like the wrapped private area in the store, so holding it in
// memory exposes nothing the store does not; it is never written to disk.
// It stops loading when the TPM is reset (TPM2_Startup(CLEAR): swtpm or the
// machine restarted) or, for an object with stClear, restarted, or when
// its hierarchy's proof changes (TPM2_Clear): the ContextLoad then fails
// and the Engine loads the object from its blobs (engine.go, handle).
// Other processes' commands in between do not touch it: swtpm's other
// users flush the object from its slot at most, never its saved context.
//
// The two commands run once or twice per signature with many keys, so they
// are marshalled here by hand as hot.go's are (go-tpm's reflection cost
// more CPU than the TPM's ContextLoad on swtpm); TPM2_ContextSave, once per
// object and TPM lifetime, goes through go-tpm.

// savedContext is an object's saved context, kept as the whole
// TPM2_ContextLoad command that loads it again.
type savedContext struct{ load []byte }

// contextSave saves the context of the loaded object h.
func (e *Engine) contextSave(h tpm2.TPMHandle) (*savedContext, error) {
	rsp, err := tpm2.ContextSave{SaveHandle: h}.Execute(e.tr())
	if err != nil {
		return nil, err
	}
	cmd := newCommand(nil, tpm2.TPMSTNoSessions, tpm2.TPMCCContextLoad)
	return &savedContext{load: finish(append(cmd, tpm2.Marshal(rsp.Context)...))}, nil
}

// contextLoad loads the saved context c and returns the object's new handle.
func (e *Engine) contextLoad(c *savedContext) (tpm2.TPMHandle, error) {
	rsp, err := e.send(c.load)
	if err != nil {
		return 0, err
	}
	return handleResponse(rsp, "TPM2_ContextLoad")
}

// errGone is a flush of an object the Engine had loaded that found no
// object there: the TPM lost what it held (it was reset, and the transport
// reconnected to it without a failed command to say so). The handle is a
// parameter of TPM2_FlushContext, so the TPM answers TPM_RC_HANDLE, not the
// TPM_RC_REFERENCE_H0 send takes as the same news.
var errGone = errors.New("the TPM no longer holds an object loaded in it")

// flush runs TPM2_FlushContext of h, an object the Engine loaded. Finding
// none, the Engine takes everything it had loaded as lost, before any of
// its stale handles can name an object loaded since (IsStale: the job may
// run again).
func (e *Engine) flush(h tpm2.TPMHandle) error {
	c := &e.hot
	c.b = newCommand(c.b, tpm2.TPMSTNoSessions, tpm2.TPMCCFlushContext)
	c.u32(uint32(h))
	rsp, err := e.send(c.bytes())
	if err == nil {
		var r reader
		if r, err = response(rsp, tpm2.TPMSTNoSessions); err == nil {
			err = r.end("TPM2_FlushContext")
		}
	}
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) { // its one parameter, the handle
			e.lost()
			return fmt.Errorf("%w: %w", errGone, err)
		}
		return err
	}
	return nil
}

// handleResponse reads a response without sessions whose only content is
// a handle.
func handleResponse(rsp []byte, what string) (tpm2.TPMHandle, error) {
	r, err := response(rsp, tpm2.TPMSTNoSessions)
	if err != nil {
		return 0, err
	}
	h := tpm2.TPMHandle(r.u32())
	if err := r.end(what); err != nil {
		return 0, err
	}
	return h, nil
}

// refused reports whether err is the TPM refusing a saved context because
// it was reset since (TPM_RC_INTEGRITY: the context's integrity key came
// from the TPM's state before the reset). Any other refusal (fwTPM answers
// TPM_RC_HANDLE to some contexts) costs only that context: the object is
// loaded from its blobs, and everything else the Engine holds stays (so
// it is still flushed at the end, not leaked).
func refused(err error) bool {
	return errors.Is(err, tpm2.TPMRCIntegrity) && !errors.Is(err, errGone)
}

// reset is what the Engine knows once the TPM refuses a context it saved
// (TPM_RC_INTEGRITY after a reset): the TPM keeps nothing of before, so
// every object the Engine had loaded is gone, and every other saved
// context is refused too. Both are forgotten now, before a stale handle
// can name an object loaded since (the transport may have reconnected to
// the restarted TPM without a failed command to say so: then the first
// news is this refusal) and before each saved context costs a refused
// ContextLoad of its own.
func (e *Engine) reset() {
	e.lost()
	for _, s := range e.slots {
		s.saved = nil
	}
}
