package tpmtoken

import (
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// Keys that need no PIN. A private or secret key made with CKA_PRIVATE
// false is a child of the token's public storage key instead of the user's
// storage key. The public storage key's authValue is random and kept in the
// token record (a 0600 file), so such a key is usable by whoever can read
// the store and reach the TPM — the guard of an sshd host key or a TLS
// server's key file, not a PIN — and, like every key, it never leaves the
// TPM: a copy of the store is useless on another machine. Its
// authorization never comes from the user PIN, so a PIN change or reset
// does not touch it. docs/design.md has the threat model.

// newPublicParent makes a token's public storage key under srk.
func newPublicParent(e *tpm.Engine, srk *tpm.Loadable) (*store.KeyBlob, error) {
	auth := authText(randBytes(16))
	pub, priv, err := e.Create(srk, tpm.StorageTemplate(), auth, nil)
	if err != nil {
		return nil, err
	}
	return &store.KeyBlob{Public: pub.Bytes(), Private: priv.Buffer, Auth: auth}, nil
}

// publicParent returns the parent of keys that need no PIN. A token made
// before it existed gets one now, under the store's lock, so that two
// processes doing this at once agree on one.
func (t *Token) publicParent() (*tpm.Loadable, error) {
	t.mu.Lock()
	p, serial := t.public, t.rec.Serial
	t.mu.Unlock()
	if p != nil {
		return p, nil
	}
	rec, err := t.lib.store.UpdateToken(serial, func(r *store.Token) error {
		if r.Public != nil {
			return nil // another process made it first
		}
		blob, err := do(t.lib, 0, func(e *tpm.Engine) (*store.KeyBlob, error) { return newPublicParent(e, t.lib.srk) })
		r.Public = blob
		return err
	})
	if err != nil {
		return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.public == nil && rec.Public != nil {
		r := *t.rec
		r.Public = rec.Public
		t.rec, t.public = &r, t.publicLoadable(&r)
	}
	if t.public == nil {
		return nil, ck.Errorf(ck.CKR_DEVICE_ERROR, "the token's public parent could not be made")
	}
	return t.public, nil
}

// readPublicLocked picks up a public parent another process made. Callers
// hold t.mu.
func (t *Token) readPublicLocked() {
	rec, err := t.lib.store.Token(t.rec.Serial)
	if err != nil || rec.Public == nil {
		return
	}
	r := *t.rec
	r.Public = rec.Public
	t.rec, t.public = &r, t.publicLoadable(&r)
}

// publicLoadable is the public parent of record rec, nil if it has none.
func (t *Token) publicLoadable(rec *store.Token) *tpm.Loadable {
	if rec.Public == nil {
		return nil
	}
	return &tpm.Loadable{
		ID: "public:" + rec.Serial, Parent: t.lib.srk,
		Public:  tpm2.BytesAs2B[tpm2.TPMTPublic](rec.Public.Public),
		Private: tpm2.TPM2BPrivate{Buffer: rec.Public.Private},
		Auth:    rec.Public.Auth,
	}
}

// parentFor returns the parent of a new key: the user's storage key for a
// private one, which needs the user logged in, the public parent otherwise.
func (t *Token) parentFor(private bool) (*tpm.Loadable, error) {
	if !private {
		return t.publicParent()
	}
	if !t.userLoggedIn() {
		return nil, ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	return t.storage, nil
}

// isPublicParent says whether a key blob's parent is a public storage key.
func isPublicParent(k *tpm.Loadable) bool {
	return k != nil && k.Parent != nil && strings.HasPrefix(k.Parent.ID, "public:")
}

// usable checks, when an operation runs, that key o may still be used:
// after C_Logout a private key is CKR_USER_NOT_LOGGED_IN, never a TPM
// authorization failure.
func (t *Token) usable(o *Object) error {
	if o.private() && !t.userLoggedIn() {
		return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	return nil
}

// loginRequired says whether the token's keys are private by default
// (CKF_LOGIN_REQUIRED).
func (t *Token) loginRequired() bool { return !t.record().NoLogin }

// SetLoginRequired (the SO, logged in on session h) makes new keys of the
// token private by default or not, and sets CKF_LOGIN_REQUIRED to match:
// a token with no login is one whose keys services use without a PIN.
// Keys already made keep their CKA_PRIVATE.
func (l *Library) SetLoginRequired(h uint64, required bool) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	if u, ok := s.tok.loginState(); !ok || u != ck.CKU_SO {
		return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	rec := *s.tok.record()
	rec.NoLogin = !required
	return s.tok.putRecord(&rec)
}

// keyAuthError: a key's parent that no longer authorizes (the user logged
// out while the operation was on its way) is CKR_USER_NOT_LOGGED_IN, never
// CKR_PIN_INCORRECT: no PIN was tried.
func keyAuthError(err error) error {
	if ck.ToRV(err) == ck.CKR_PIN_INCORRECT {
		return ck.Wrap(ck.CKR_USER_NOT_LOGGED_IN, err)
	}
	return err
}

// keyDefaults are a token's defaults for a new key: on a token with no
// login, keys are not private unless asked to be.
func (t *Token) keyDefaults() buildOpts {
	if !t.loginRequired() {
		return buildOpts{defaults: Attrs{ck.CKA_PRIVATE: vFalse}}
	}
	return buildOpts{}
}
