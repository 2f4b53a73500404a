package tpmtoken

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// Token is an initialized token: its record, its objects and login state.
// Login state is per application, shared by all its sessions (the spec).
type Token struct {
	lib *Library

	// mu is lock 5 (docs/design.md "Locks"): after Session.mu, before the
	// store's Objects.mu; TPM jobs may take it (no caller waits for a job
	// while holding it).
	mu       sync.Mutex
	rec      *store.Token
	storage  *tpm.Loadable // parent of private keys; Auth known only while logged in
	public   *tpm.Loadable // parent of keys that need no PIN (public.go); nil until made
	loggedIn ck.UserType
	isLogged bool
	objs     *store.Objects
	objects  map[uint64]*Object
	byUID    map[string]uint64
	idx      objIndex
	// authKey, while the user is logged in, opens migrated keys'
	// authValues (migrate.go).
	authKey []byte

	// pinFailures counts wrong PINs since the last success, by user type
	// (CKU_SO, CKU_USER): see pin.go.
	pinFailures [2]int
}

func (l *Library) newToken(rec *store.Token) *Token {
	t := &Token{lib: l, objects: map[uint64]*Object{}, byUID: map[string]uint64{}}
	t.setRecord(rec)
	return t
}

func (t *Token) setRecord(rec *store.Token) {
	t.rec = rec
	t.objs = t.lib.store.Objects(rec.Serial)
	t.storage = &tpm.Loadable{
		ID: "storage:" + rec.Serial, Parent: t.lib.srk,
		Public:  tpm2.BytesAs2B[tpm2.TPMTPublic](rec.Storage.Public),
		Private: tpm2.TPM2BPrivate{Buffer: rec.Storage.Private},
	}
	t.public = t.publicLoadable(rec)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func padLabel(label []byte) string {
	return strings.TrimRight(string(label), " \x00")
}

// InitToken initializes the token in slot id: a new token on the empty slot,
// or, given the right SO PIN, a fresh start of an existing one (all its
// objects destroyed).
func (l *Library) InitToken(id uint64, soPIN, label []byte) error {
	if err := checkPINLen(soPIN); err != nil {
		return err
	}
	s, err := l.slot(id)
	if err != nil {
		return err
	}
	if l.dev == nil {
		return ck.Wrap(ck.CKR_TOKEN_NOT_PRESENT, l.devErr)
	}
	l.mu.RLock()
	for _, ss := range l.sessions {
		if ss.slot == s {
			l.mu.RUnlock()
			return ck.E(ck.CKR_SESSION_EXISTS)
		}
	}
	l.mu.RUnlock()
	rec := &store.Token{Serial: hex.EncodeToString(randBytes(8)), Created: time.Now().UTC()}
	if s.tok != nil {
		old := s.tok.record()
		rec.Serial, rec.Created = old.Serial, old.Created
		_, err := l.run(0, func(e *tpm.Engine) (any, error) {
			if _, err := s.tok.unsealPIN(e, ck.CKU_SO, &old.SO, soPIN); err != nil {
				return nil, err
			}
			// The old keys and their parent are gone with the token.
			for _, parent := range []string{"storage:", "public:"} {
				e.ForgetChildren(parent + old.Serial)
				e.Forget(parent + old.Serial)
			}
			return nil, nil
		})
		s.tok.notePINCheck(ck.CKU_SO, err)
		if err != nil {
			return err
		}
	}
	rec.Label = padLabel(label)
	storageAuth := authText(randBytes(16))
	_, err = l.run(0, func(e *tpm.Engine) (any, error) {
		pub, priv, err := e.Create(l.srk, tpm.StorageTemplate(), storageAuth, nil)
		if err != nil {
			return nil, err
		}
		rec.Storage = store.PINObject{Public: pub.Bytes(), Private: priv.Buffer}
		rec.TPMName = l.srkName(e) // which TPM the token belongs to: see identity.go
		if rec.Public, err = newPublicParent(e, l.srk); err != nil {
			return nil, err
		}
		rec.SO, err = sealPIN(e, l.srk, storageAuth, soPIN)
		e.Forget("storage:" + rec.Serial)
		return nil, err
	})
	if err != nil {
		return err
	}
	if s.tok != nil {
		if err := s.tok.objs.ClearAll(); err != nil {
			return storeErr(ck.CKR_FUNCTION_FAILED, err)
		}
	}
	if err := l.store.PutToken(rec); err != nil {
		return storeErr(ck.CKR_FUNCTION_FAILED, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.tok != nil {
		s.tok.mu.Lock()
		s.tok.setRecord(rec)
		s.tok.objects, s.tok.byUID, s.tok.isLogged = map[uint64]*Object{}, map[string]uint64{}, false
		s.tok.pinFailures = [2]int{} // a new token: no failures yet
		s.tok.invalidate()
		s.tok.mu.Unlock()
		l.events.set(s.ID) // a new token in the same slot
		return nil
	}
	s.tok = l.newToken(rec)
	l.slots = append(l.slots, &Slot{ID: uint64(len(l.slots))})
	l.events.set(s.ID)
	return nil
}

func (t *Token) record() *store.Token {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rec
}

// login checks pin for userType in the TPM and, for the user, makes the
// storage key usable.
func (t *Token) login(userType ck.UserType, pin []byte) error {
	rec := t.record()
	var p *store.PINObject
	switch userType {
	case ck.CKU_SO:
		p = &rec.SO
	case ck.CKU_USER:
		if rec.User == nil {
			return ck.E(ck.CKR_USER_PIN_NOT_INITIALIZED)
		}
		p = rec.User
	default:
		return ck.E(ck.CKR_USER_TYPE_INVALID)
	}
	if !pinLenOK(pin) {
		return errPINOutOfRange() // never tried in the TPM: see pin.go
	}
	storage := t.storage
	var authKey []byte
	_, err := t.lib.run(0, func(e *tpm.Engine) (any, error) {
		secret, err := t.unsealPIN(e, userType, p, pin)
		if err != nil {
			return nil, err
		}
		storage.Auth = secret
		if userType == ck.CKU_USER {
			authKey = keyAuthKey(secret) // migrate.go
		}
		return nil, nil
	})
	t.notePINCheck(userType, err)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.isLogged, t.loggedIn = true, userType
	t.mu.Unlock()
	if authKey != nil {
		t.unlockKeyAuths(authKey) // migrate.go
	}
	return nil
}

// logout forgets the storage key's authValue and flushes every user key.
func (t *Token) logout() {
	storage := t.storage
	migrated := t.lockKeyAuths() // migrate.go
	_, _ = t.lib.run(0, func(e *tpm.Engine) (any, error) {
		for _, k := range migrated {
			clear(k.Auth)
			k.Auth = nil
			e.Forget(k.ID)
		}
		clear(storage.Auth) // the unsealed value: wiped, not left to the GC
		storage.Auth = nil
		e.ForgetChildren(storage.ID)
		e.Forget(storage.ID)
		return nil, nil
	})
	t.mu.Lock()
	t.isLogged = false
	t.mu.Unlock()
}

// loginState returns who is logged in.
func (t *Token) loginState() (ck.UserType, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.loggedIn, t.isLogged
}

func (t *Token) userLoggedIn() bool {
	u, ok := t.loginState()
	return ok && u == ck.CKU_USER
}

// initPIN (SO) seals the storage key's authValue under a new user PIN: the
// user's keys survive a PIN reset.
func (t *Token) initPIN(pin []byte) error {
	if err := checkPINLen(pin); err != nil {
		return err
	}
	rec := *t.record()
	storage := t.storage
	_, err := t.lib.run(0, func(e *tpm.Engine) (any, error) {
		p, err := sealPIN(e, t.lib.srk, storage.Auth, pin)
		rec.User = &p
		return nil, err
	})
	if err != nil {
		return err
	}
	return t.putRecord(&rec)
}

func (t *Token) putRecord(rec *store.Token) error {
	if err := t.lib.store.PutToken(rec); err != nil {
		return storeErr(ck.CKR_FUNCTION_FAILED, err)
	}
	t.mu.Lock()
	t.rec = rec
	t.mu.Unlock()
	return nil
}

// setPIN re-wraps the logged-in user's (or SO's) PIN object with a new PIN
// (TPM2_ObjectChangeAuth): no key is regenerated.
func (t *Token) setPIN(userType ck.UserType, oldPIN, newPIN []byte) error {
	if err := checkPINLen(newPIN); err != nil {
		return err
	}
	if !pinLenOK(oldPIN) {
		return errPINOutOfRange()
	}
	rec := *t.record()
	p := &rec.SO // rec is a copy: changes land only with putRecord
	if userType == ck.CKU_USER {
		if rec.User == nil {
			return ck.E(ck.CKR_USER_PIN_NOT_INITIALIZED)
		}
		u := *rec.User
		rec.User = &u
		p = rec.User
	}
	_, err := t.lib.run(0, func(e *tpm.Engine) (any, error) {
		obj := t.pinObject(userType, p, oldPIN)
		newSalt := randBytes(16)
		priv, err := e.ChangeAuth(obj, pinAuth(pinScheme, newSalt, newPIN))
		e.Forget(obj.ID)
		if err != nil {
			return nil, err
		}
		p.Scheme, p.Salt, p.Private = pinScheme, newSalt, priv.Buffer
		return nil, nil
	})
	t.notePINCheck(userType, err)
	if err != nil {
		return err
	}
	return t.putRecord(&rec)
}
