package tpmtoken

import (
	"os"
	"path/filepath"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// What the tpm11 command needs beyond the PKCS#11 functions, kept apart
// from them.

// Lockout reads the TPM's dictionary-attack state (TPM-wide): failures
// counted, failures allowed, lockout. tpm11 says how many PIN tries are left.
func (l *Library) Lockout() (tpm.DAState, error) {
	return do(l, 0, (*tpm.Engine).DAState)
}

// PrivateObjects counts the token objects in slot id that only a logged-in
// user sees (CKA_PRIVATE is kept in the clear in the store): tpm11 list asks
// for the PIN only when there are some.
func (l *Library) PrivateObjects(id uint64) (int, error) {
	s, err := l.slot(id)
	if err != nil {
		return 0, err
	}
	if s.tok == nil {
		return 0, ck.E(ck.CKR_TOKEN_NOT_RECOGNIZED)
	}
	t := s.tok
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refresh(); err != nil {
		return 0, err
	}
	n := 0
	for _, o := range t.objects {
		if o.session == 0 && o.private() {
			n++
		}
	}
	return n, nil
}

// DestroyToken removes the token in slot id with all its objects, given
// its SO PIN, checked in the TPM. With unchecked the SO PIN is not asked
// for: only for a token the TPM can no longer open (the TPM was cleared),
// whose files anyone allowed to delete them could remove anyway. No
// session may be open on it. The slot is empty until the next Open.
func (l *Library) DestroyToken(id uint64, soPIN []byte, unchecked bool) error {
	s, err := l.slot(id)
	if err != nil {
		return err
	}
	if s.tok == nil {
		return ck.E(ck.CKR_TOKEN_NOT_RECOGNIZED)
	}
	l.mu.RLock()
	for _, ss := range l.sessions {
		if ss.slot == s {
			l.mu.RUnlock()
			return ck.E(ck.CKR_SESSION_EXISTS)
		}
	}
	l.mu.RUnlock()
	t := s.tok
	rec := t.record()
	if !unchecked {
		if l.dev == nil {
			return ck.Wrap(ck.CKR_TOKEN_NOT_PRESENT, l.devErr)
		}
		if !pinLenOK(soPIN) {
			return errPINOutOfRange()
		}
		_, err := l.run(0, func(e *tpm.Engine) (any, error) {
			_, err := t.unsealPIN(e, ck.CKU_SO, &rec.SO, soPIN)
			e.Forget(pinID(ck.CKU_SO, rec.Serial))
			return nil, err
		})
		t.notePINCheck(ck.CKU_SO, err)
		if err != nil {
			return err
		}
	}
	if l.dev != nil {
		_, _ = l.run(0, func(e *tpm.Engine) (any, error) {
			for _, parent := range []string{"storage:", "public:"} {
				e.ForgetChildren(parent + rec.Serial)
				e.Forget(parent + rec.Serial)
			}
			return nil, nil
		})
	}
	if err := l.store.RemoveToken(rec.Serial); err != nil {
		return ck.Wrap(ck.CKR_FUNCTION_FAILED, err)
	}
	l.mu.Lock()
	s.tok = nil
	l.mu.Unlock()
	return nil
}

// ConfigKeys are the keys a config file may set; LogLevels the values of
// TPM11_LOG / log that turn logging on.
var (
	ConfigKeys = []string{"tpm", "store", "log", "timeout", "keygen_timeout"}
	LogLevels  = []string{"error", "warn", "info", "debug"}
)

// ConfigFile is the config file LoadConfig reads with env, whether or not
// it exists: TPM11_CONFIG, else $XDG_CONFIG_HOME/tpm11/config (or
// ~/.config/tpm11/config) if that exists, else /etc/tpm11/config.
func ConfigFile(env func(string) string) string {
	if p := env("TPM11_CONFIG"); p != "" {
		return p
	}
	base := env("XDG_CONFIG_HOME")
	if base == "" && env("HOME") != "" {
		base = filepath.Join(env("HOME"), ".config")
	}
	p := filepath.Join(base, "tpm11", "config")
	if _, err := os.Stat(p); err != nil {
		return "/etc/tpm11/config"
	}
	return p
}

// Claim runs f as one step against other processes that Claim the token in
// slot id (the tpm11 command: a free key ID is looked for and the key made
// under it before another process looks).
func (l *Library) Claim(id uint64, f func() error) error {
	s, err := l.slot(id)
	if err != nil {
		return err
	}
	if s.tok == nil {
		return ck.E(ck.CKR_TOKEN_NOT_RECOGNIZED)
	}
	return l.store.Claim(s.tok.record().Serial, f)
}

// ULongAttr is a template entry of a CK_ULONG (or a typed kind: class,
// key type, mechanism) as the library takes it: the encoding lives here,
// so the tpm11 command has none of its own.
func ULongAttr[T ~uint64 | ~int](t ck.AttributeType, v T) Attr {
	return Attr{Type: t, Value: ulongBytes(uint64(v))}
}

// BoolAttr is a template entry of a CK_BBOOL.
func BoolAttr(t ck.AttributeType, b bool) Attr { return Attr{Type: t, Value: boolBytes(b)} }
