package tpmtoken

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/asyncq"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// Which TPM a token belongs to.
//
// A token's keys are wrapped under the TPM's storage root key (SRK), which
// the owner hierarchy's seed determines: another TPM, or the same one after
// TPM2_Clear, has another SRK and loads none of them (TPM_RC_INTEGRITY).
// A token records the SRK's name when it is made (store.Token.TPMName);
// when the library starts, a background job compares it with this TPM's,
// and, for a token from before the name was recorded, loads the token's
// storage key under the SRK (no PIN needed: the SRK's auth is empty),
// which succeeds on its TPM only. A token that does not belong is shown
// plainly: its slot description, the log, C_Login (CKR_DEVICE_ERROR with
// the reason, no PIN tried), tpm11 info (TPMCheck, Diagnose).

// TokenTPM is how a token relates to the TPM in use.
type TokenTPM struct {
	Serial, Label string
	// Known is false while the TPM could not be asked (yet).
	Known bool
	// Mismatch: the token was made on another TPM, or on this one before
	// it was cleared; its keys cannot be used here, ever.
	Mismatch bool
	// Recorded and Current are the storage root names (hex): the one the
	// token recorded (empty for a token made before names were recorded)
	// and this TPM's.
	Recorded, Current string
}

// Err is the plain-words error of a token that does not belong to this TPM.
func (t TokenTPM) Err() error {
	if !t.Mismatch {
		return nil
	}
	what := "its keys do not load under this TPM's storage root"
	if t.Recorded != "" {
		what = fmt.Sprintf("it was made under storage root %s, this TPM's is %s", short(t.Recorded), short(t.Current))
	}
	return ck.Errorf(ck.CKR_DEVICE_ERROR,
		"token %s (%q) belongs to another TPM, or this TPM was cleared since it was made: %s; its keys cannot be used here "+
			"(tpm11 can remove the token)", t.Serial, t.Label, what)
}

func short(name string) string {
	if len(name) > 16 {
		return name[:16] + "…"
	}
	return name
}

// identityCheck is the check of the tokens against this TPM: the last
// one started and the result of the first that succeeded.
type identityCheck struct {
	// mu is lock 2 (docs/design.md "Locks"): before Library.mu, never across a job.
	mu     sync.Mutex
	ticket *asyncq.Typed[map[string]TokenTPM]
	result map[string]TokenTPM
}

// startIdentityCheck queues the check of every token against this TPM,
// unless one is running or has succeeded. Callers hold l.identity.mu.
func (l *Library) startIdentityCheck() *asyncq.Typed[map[string]TokenTPM] {
	ic := &l.identity
	if ic.ticket != nil && !ic.ticket.Poll() {
		return ic.ticket
	}
	l.mu.RLock()
	var toks []*Token
	for _, s := range l.slots {
		if s.tok != nil {
			toks = append(toks, s.tok)
		}
	}
	l.mu.RUnlock()
	if len(toks) == 0 || l.q == nil {
		return nil
	}
	t := asyncq.Submit(l.q, 0, guard(l, func(e *tpm.Engine) (map[string]TokenTPM, error) {
		return l.checkIdentity(e, toks)
	}), nil)
	ic.ticket = &t
	go func() {
		<-t.Done()
		res, err := t.Result()
		if err != nil {
			return
		}
		ic.mu.Lock()
		if ic.result == nil {
			ic.result = res
		}
		ic.mu.Unlock()
		for _, r := range res {
			if r.Mismatch {
				l.log.Error("token does not belong to this TPM", "tpm", l.cfg.TPM, "err", r.Err())
			}
		}
	}()
	return ic.ticket
}

// identities is the result of the check, if there is one. With wait, a
// check that is running is waited for, and one is started if none is and
// the TPM answers; without, it never waits.
func (l *Library) identities(wait bool) map[string]TokenTPM {
	ic := &l.identity
	ic.mu.Lock()
	if ic.result != nil {
		defer ic.mu.Unlock()
		return ic.result
	}
	t := ic.ticket
	if wait && l.tpmDown() == nil {
		t = l.startIdentityCheck()
	}
	ic.mu.Unlock()
	if t == nil || (!wait && !t.Poll()) {
		return nil
	}
	<-t.Done()
	res, err := t.Result()
	if err != nil {
		return nil
	}
	return res
}

// checkIdentity runs on the worker.
func (l *Library) checkIdentity(e *tpm.Engine, toks []*Token) (map[string]TokenTPM, error) {
	srk, err := e.Handle(l.srk)
	if err != nil {
		return nil, err
	}
	cur := hex.EncodeToString(srk.Name.Buffer)
	out := map[string]TokenTPM{}
	for _, t := range toks {
		rec := t.record()
		t.mu.Lock()
		storage := t.storage
		t.mu.Unlock()
		r := TokenTPM{Serial: rec.Serial, Label: rec.Label, Known: true, Current: cur, Recorded: hex.EncodeToString(rec.TPMName)}
		if len(rec.TPMName) > 0 {
			r.Mismatch = !bytes.Equal(rec.TPMName, srk.Name.Buffer)
		} else if _, err := e.Handle(storage); err != nil {
			var rc tpm2.TPMRC
			if !errors.As(err, &rc) {
				return nil, err // the TPM could not be asked
			}
			r.Mismatch = errors.Is(err, tpm2.TPMRCIntegrity)
		}
		out[rec.Serial] = r
	}
	return out, nil
}

// srkName is this TPM's storage root name, recorded by a new token.
func (l *Library) srkName(e *tpm.Engine) []byte {
	h, err := e.Handle(l.srk)
	if err != nil {
		return nil
	}
	return h.Name.Buffer
}

// TPMCheck says whether the token in slot id belongs to this TPM (for
// tpm11 info: after a TPM clear it explains, and may offer to remove the
// token). It waits for the check made when the library opened.
func (l *Library) TPMCheck(id uint64) (TokenTPM, error) {
	s, err := l.slot(id)
	if err != nil {
		return TokenTPM{}, err
	}
	if s.tok == nil {
		return TokenTPM{}, ck.E(ck.CKR_TOKEN_NOT_RECOGNIZED)
	}
	return l.tokenTPM(s.tok, true), nil
}

// tokenTPM is what the check found for t (see identities for wait).
func (l *Library) tokenTPM(t *Token, wait bool) TokenTPM {
	rec := t.record()
	r, ok := l.identities(wait)[rec.Serial]
	// A token initialized again since the check is another token.
	if !ok || r.Recorded != hex.EncodeToString(rec.TPMName) {
		return TokenTPM{Serial: rec.Serial, Label: rec.Label}
	}
	return r
}

// tpmMismatch is the error of a login on a token of another TPM, or nil.
// It waits for the check (the login needs the TPM anyway), but not on a
// TPM that does not answer: the login finds that out itself.
func (l *Library) tpmMismatch(t *Token) error {
	return l.tokenTPM(t, true).Err()
}
