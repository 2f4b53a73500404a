package tpmtoken

import (
	"sync"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// Session is one PKCS#11 session. Its operation state is its own: sessions
// on other threads never contend for it.
type Session struct {
	Handle uint64
	slot   *Slot
	tok    *Token
	flags  ck.Flags

	// mu is lock 4 (docs/design.md "Locks"): after Library.mu, before
	// Token.mu (FindObjects). It is never held across a TPM command: a call
	// running an operation marks it busy instead (see drive).
	mu      sync.Mutex
	find    []uint64
	finding bool
	// ops is the table of active operations, one per kind (operation.go).
	ops     map[OpKind]operation
	pending *pending
	// call is an async session's reused record of its TPM call in flight
	// (async.go's callOp), made with the session.
	call *callOp
}

func (s *Session) rw() bool { return s.flags&ck.CKF_RW_SESSION != 0 }

// close ends the session's operations and destroys its session objects.
func (s *Session) close() {
	s.mu.Lock()
	if s.pending != nil {
		s.pending.cancel()
	}
	s.find, s.pending, s.ops = nil, nil, nil
	s.mu.Unlock()
	if s.tok != nil {
		s.tok.dropSessionObjects(s.Handle)
	}
}

// OpenSession opens a session on slot id.
func (l *Library) OpenSession(id uint64, flags ck.Flags) (uint64, error) {
	return l.openSession(id, flags, true)
}

// OpenSyncSession is OpenSession for a caller that cannot use asynchronous
// sessions (one that came through a function list older than 3.2, which has
// no C_AsyncComplete): CKF_ASYNC_SESSION is CKR_SESSION_ASYNC_NOT_SUPPORTED,
// as from a token without them.
func (l *Library) OpenSyncSession(id uint64, flags ck.Flags) (uint64, error) {
	return l.openSession(id, flags, false)
}

func (l *Library) openSession(id uint64, flags ck.Flags, asyncOK bool) (uint64, error) {
	if flags&ck.CKF_SERIAL_SESSION == 0 {
		return 0, ck.E(ck.CKR_SESSION_PARALLEL_NOT_SUPPORTED)
	}
	s, err := l.slot(id)
	if err != nil {
		return 0, err
	}
	if err := l.present(s); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.tok == nil {
		return 0, ck.E(ck.CKR_TOKEN_NOT_INITIALIZED)
	}
	if flags&ck.CKF_ASYNC_SESSION != 0 && !asyncOK {
		return 0, ck.E(ck.CKR_SESSION_ASYNC_NOT_SUPPORTED)
	}
	if flags&ck.CKF_RW_SESSION == 0 {
		if u, ok := s.tok.loginState(); ok && u == ck.CKU_SO {
			return 0, ck.E(ck.CKR_SESSION_READ_WRITE_SO_EXISTS)
		}
	}
	ss := &Session{Handle: l.handles.Add(1), slot: s, tok: s.tok, flags: flags}
	if flags&ck.CKF_ASYNC_SESSION != 0 && l.q != nil {
		ss.call = newCallOp(l, ss)
	}
	l.sessions[ss.Handle] = ss
	return ss.Handle, nil
}

// session returns session h for a call that may change its state: while an
// asynchronous operation is pending, that is CKR_OPERATION_ACTIVE.
func (l *Library) session(h uint64) (*Session, error) {
	s, err := l.anySession(h)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	busy := s.pending != nil
	s.mu.Unlock()
	if busy {
		return nil, ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	return s, nil
}

// anySession returns session h for the calls allowed while one pends.
func (l *Library) anySession(h uint64) (*Session, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	s := l.sessions[h]
	if s == nil {
		return nil, ck.E(ck.CKR_SESSION_HANDLE_INVALID)
	}
	return s, nil
}

// CloseSession closes h; closing the token's last session logs out.
func (l *Library) CloseSession(h uint64) error {
	l.mu.Lock()
	s := l.sessions[h]
	if s == nil {
		l.mu.Unlock()
		return ck.E(ck.CKR_SESSION_HANDLE_INVALID)
	}
	delete(l.sessions, h)
	last := true
	for _, o := range l.sessions {
		if o.tok == s.tok {
			last = false
			break
		}
	}
	l.mu.Unlock()
	s.close()
	if last {
		if _, ok := s.tok.loginState(); ok {
			s.tok.logout()
		}
	}
	return nil
}

// CloseAllSessions closes every session on slot id.
func (l *Library) CloseAllSessions(id uint64) error {
	s, err := l.slot(id)
	if err != nil {
		return err
	}
	l.mu.RLock()
	var hs []uint64
	for h, ss := range l.sessions {
		if ss.slot == s {
			hs = append(hs, h)
		}
	}
	l.mu.RUnlock()
	for _, h := range hs {
		_ = l.CloseSession(h)
	}
	return nil
}

// SessionInfo is CK_SESSION_INFO.
type SessionInfo struct {
	Slot  uint64
	State ck.State
	Flags ck.Flags
}

func (l *Library) SessionInfo(h uint64) (SessionInfo, error) {
	s, err := l.anySession(h)
	if err != nil {
		return SessionInfo{}, err
	}
	u, logged := s.tok.loginState()
	state := ck.CKS_RO_PUBLIC_SESSION
	switch {
	case logged && u == ck.CKU_SO:
		state = ck.CKS_RW_SO_FUNCTIONS
	case logged && s.rw():
		state = ck.CKS_RW_USER_FUNCTIONS
	case logged:
		state = ck.CKS_RO_USER_FUNCTIONS
	case s.rw():
		state = ck.CKS_RW_PUBLIC_SESSION
	}
	return SessionInfo{Slot: s.slot.ID, State: state, Flags: s.flags}, nil
}

// Login logs userType in on the session's token.
func (l *Library) Login(h uint64, userType ck.UserType, pin []byte) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	if userType != ck.CKU_SO && userType != ck.CKU_USER {
		if userType == ck.CKU_CONTEXT_SPECIFIC {
			return l.contextLogin(s, pin)
		}
		return ck.E(ck.CKR_USER_TYPE_INVALID)
	}
	if u, ok := s.tok.loginState(); ok {
		if u == userType {
			return ck.E(ck.CKR_USER_ALREADY_LOGGED_IN)
		}
		return ck.E(ck.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
	}
	if userType == ck.CKU_SO {
		l.mu.RLock()
		for _, o := range l.sessions {
			if o.tok == s.tok && !o.rw() {
				l.mu.RUnlock()
				return ck.E(ck.CKR_SESSION_READ_ONLY_EXISTS)
			}
		}
		l.mu.RUnlock()
	}
	if err := l.tpmMismatch(s.tok); err != nil {
		return err // no PIN tried: it could never be right here
	}
	return s.tok.login(userType, pin)
}

// Logout logs out of the session's token.
func (l *Library) Logout(h uint64) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	if _, ok := s.tok.loginState(); !ok {
		return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	s.tok.logout()
	return nil
}

// InitPIN sets the user PIN; the SO must be logged in on a R/W session.
func (l *Library) InitPIN(h uint64, pin []byte) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	if u, ok := s.tok.loginState(); !ok || u != ck.CKU_SO {
		return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	if !s.rw() {
		return ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	return s.tok.initPIN(pin)
}

// SetPIN changes the PIN of whoever is logged in (the user when nobody is).
func (l *Library) SetPIN(h uint64, oldPIN, newPIN []byte) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	if !s.rw() {
		return ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	u, ok := s.tok.loginState()
	if !ok {
		u = ck.CKU_USER
	}
	return s.tok.setPIN(u, oldPIN, newPIN)
}

// FindObjectsInit starts a search.
func (l *Library) FindObjectsInit(h uint64, tmpl []Attr) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	busy := s.finding
	s.mu.Unlock()
	if busy {
		return ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	found, err := s.tok.find(tmpl)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.find, s.finding = found, true
	s.mu.Unlock()
	return nil
}

// FindObjects returns up to max more handles.
func (l *Library) FindObjects(h uint64, max int) ([]uint64, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.finding {
		return nil, ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	// A search started while logged in stops returning private objects
	// after C_Logout: each handle is checked as it is handed out.
	var out []uint64
	for len(out) < max && len(s.find) > 0 {
		h := s.find[0]
		s.find = s.find[1:]
		if _, err := s.tok.object(h); err == nil {
			out = append(out, h)
		}
	}
	return out, nil
}

// FindObjectsFinal ends the search.
func (l *Library) FindObjectsFinal(h uint64) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.finding {
		return ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	s.find, s.finding = nil, false
	return nil
}

// GetAttributeValue answers for each type; see AttrResult.
func (l *Library) GetAttributeValue(h, obj uint64, types []ck.AttributeType) ([]AttrResult, error) {
	s, o, err := l.sessionObject(h, obj)
	if err != nil {
		return nil, err
	}
	res := getAttributes(o, types)
	if err := s.tok.attestationAttr(h, o, types, res); err != nil {
		return nil, err
	}
	return res, s.tok.valueOf(o, types, res)
}

// DestroyObject destroys obj.
func (l *Library) DestroyObject(h, obj uint64) error {
	s, o, err := l.changeableObject(h, obj, ck.CKA_DESTROYABLE)
	if err != nil {
		return err
	}
	return s.tok.destroy(o)
}

// GenerateRandom returns n bytes from the TPM's RNG. No login needed.
func (l *Library) GenerateRandom(h uint64, n int, dst Dest) ([]byte, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, err
	}
	if n > RandomChunk && (s.flags&ck.CKF_ASYNC_SESSION == 0 || dst.Wait) {
		// One job per chunk: between two, the TPM goes to other
		// processes waiting for it (1 MiB in one job held it for
		// seconds: 32,768 commands).
		out := make([]byte, 0, n)
		for len(out) < n {
			ask := min(n-len(out), RandomChunk)
			b, err := do(l, s.Handle, func(e *tpm.Engine) ([]byte, error) { return e.Random(ask) })
			if err != nil {
				clear(out)
				return nil, err
			}
			out = append(out, b...)
		}
		return out, nil
	}
	res, err := start(l, s, "C_GenerateRandom", ^ck.Flags(0), // no mechanism flag: any flags cancel it
		func(e *tpm.Engine) ([]byte, error) { return e.Random(n) },
		dataResult, nil, dst)
	return res.Data, err
}

// RandomChunk is the most random bytes one TPM job of C_GenerateRandom
// asks for on a synchronous session (128 TPM2_GetRandom of 32 bytes).
var RandomChunk = 4096

// SeedRandom mixes seed into the TPM's RNG (TPM2_StirRandom). No login needed.
func (l *Library) SeedRandom(h uint64, seed []byte) error {
	if _, err := l.session(h); err != nil {
		return err
	}
	_, err := l.run(h, func(e *tpm.Engine) (any, error) { return nil, e.StirRandom(seed) })
	return err
}
