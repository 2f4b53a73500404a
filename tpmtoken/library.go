package tpmtoken

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tpm11/tpm11/asyncq"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// Library is everything one C_Initialize creates and C_Finalize destroys.
type Library struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store
	dev   *tpm.Device
	// devErr says why there is no TPM; slots then show no token.
	devErr error
	q      *asyncq.Queue[*tpm.Engine]
	srk    *tpm.Loadable

	// mu is lock 3 (docs/design.md "Locks"): after identity.mu, before
	// Session.mu and Token.mu; never held across a TPM job.
	mu       sync.RWMutex
	slots    []*Slot
	sessions map[uint64]*Session

	handles atomic.Uint64
	events  *slotEvents

	detached map[uint64]*detachedOp
	wg       sync.WaitGroup // detached operations still finishing
	// detachedRunning counts them too: the TPM is not given up while
	// one runs (see Closing).
	detachedRunning atomic.Int32

	// closing is the watch Closing starts; closeMu guards it.
	closeMu sync.Mutex
	closing chan struct{}
	closed  bool

	health   health        // what the last TPM job saw: see health.go
	identity identityCheck // which tokens belong to this TPM: see identity.go
	// capsMu guards capsVal and capsProbe (closed when the probe that is
	// running ends); a leaf lock, never held across the probe's TPM job.
	capsMu    sync.Mutex
	capsVal   *caps
	capsProbe chan struct{}
}

// Slot holds a token, or is the empty slot C_InitToken initializes.
type Slot struct {
	ID  uint64
	tok *Token
}

// Open starts the library: store, TPM, worker. A TPM that cannot be opened
// is not an error here: the host keeps running and the slot shows no token.
func Open(cfg Config) (*Library, error) {
	l := &Library{cfg: cfg, log: cfg.Logger(), sessions: map[uint64]*Session{}, detached: map[uint64]*detachedOp{}, events: newSlotEvents()}
	st, err := store.Open(cfg.Store)
	if err != nil {
		return nil, ck.Wrap(ck.CKR_FUNCTION_FAILED, err)
	}
	l.store = st
	l.dev, l.devErr = tpm.OpenWith(cfg.TPM, tpm.Options{StateDir: cfg.Store, Deadlines: cfg.Deadlines})
	if l.devErr != nil {
		l.log.Error("no TPM: slots show no token", "tpm", cfg.TPM, "err", l.devErr)
		l.slots = []*Slot{{ID: 0}}
		return l, nil
	}
	l.srk = &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	if l.dev.Hardware {
		l.srk.Persistent = tpm.SRKHandle // used only if it is this very key
	}
	eng := tpm.NewEngine(l.dev.TPM, l.dev.ObjectSlots)
	eng.Salt = l.srk // PINs, sealed values and keys never cross the bus in the clear
	l.q = asyncq.New(eng)
	if release := l.dev.Release; release != nil {
		// swtpm serves one connection at a time and has no resource
		// manager: when idle, hand the TPM back empty so other processes
		// on the same token can use it.
		l.q.OnIdle(ReleaseAfter, func(e *tpm.Engine) {
			e.SaveAll()
			e.Disconnected()
			_ = release()
		})
		// A process that is never idle hands it over now and then too,
		// soon when other processes wait for their turn (tpm/turns.go),
		// now and then when none does (a client that does not queue).
		// Whether others wait is a stat of the turns directory: asked at
		// most every contendedEvery (it was before every job, a system
		// call per signature), so a
		// waiting process is let in at most that much later.
		dev := l.dev
		contended := everyAtMost(contendedEvery, dev.Contended)
		l.q.YieldWhen(func() bool {
			held := dev.Held()
			return held > YieldAfter || held > YieldContended && contended()
		})
	}
	recs, err := st.Tokens()
	if err != nil {
		l.Close()
		return nil, ck.Wrap(ck.CKR_FUNCTION_FAILED, err)
	}
	for i, rec := range recs {
		l.slots = append(l.slots, &Slot{ID: uint64(i), tok: l.newToken(rec)})
	}
	l.slots = append(l.slots, &Slot{ID: uint64(len(recs))})
	// Ask the TPM whether it answers and who it is, once, now: slot and
	// token queries never wait on it (see health.go).
	if _, err := do(l, 0, l.start); err != nil {
		l.log.Error("TPM not readable: the empty slot shows no token until it is", "tpm", cfg.TPM, "err", err)
	} else {
		l.identity.mu.Lock()
		l.startIdentityCheck() // in the background
		l.identity.mu.Unlock()
	}
	l.log.Info("initialized", "tpm", cfg.TPM, "store", cfg.Store, "tokens", len(recs), "simulated", l.dev.Simulated)
	return l, nil
}

// YieldAfter is how long a busy library holds a one-client TPM (swtpm)
// before handing it over between two jobs when no process of this library
// waits for it (clients that do not queue, e.g. tpm2-tools, get in then):
// each hand-over costs a save and a reload of the loaded objects and a
// reconnection, ~2–3 ms on swtpm, 1–1.5% of throughput at 200 ms.
var YieldAfter = 500 * time.Millisecond

// YieldContended is how long a busy library holds a one-client TPM when
// other processes wait for it: with four processes, none waits more than
// three such turns for a signature.
var YieldContended = 50 * time.Millisecond

// contendedEvery bounds how often a process holding the TPM asks whether
// others wait for it.
const contendedEvery = time.Millisecond

// everyAtMost is f asked at most once per d; in between, its last answer.
// Safe for concurrent use (a caller may see an answer d old). Its lock is
// taken before whatever f takes (for dev.Contended, the Stream's), and
// never held by anything f calls.
func everyAtMost(d time.Duration, f func() bool) func() bool {
	var mu sync.Mutex
	var at time.Time
	var last bool
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); at.IsZero() || now.Sub(at) >= d {
			at, last = now, f()
		}
		return last
	}
}

// ReleaseAfter is how long a swtpm connection stays with an idle process.
var ReleaseAfter = 20 * time.Millisecond

// FinalizeGrace is how long a command may go unanswered while the library
// closes before the TPM is given up (see Closing), at least.
var FinalizeGrace = 50 * time.Millisecond

// DetachedWait bounds how long C_Finalize waits for detached operations.
var DetachedWait = 60 * time.Second

// Close cancels all sessions' work, empties the TPM of what we loaded and
// stops the worker.
func (l *Library) Close() {
	l.Closing()
	defer l.closeWatch()
	l.events.close() // first: a blocked C_WaitForSlotEvent returns now
	l.mu.Lock()
	sessions := l.sessions
	l.sessions = map[uint64]*Session{}
	l.mu.Unlock()
	for _, s := range sessions {
		s.close()
	}
	// Detached operations were promised to outlive C_Finalize: wait for
	// them to finish and be recorded, within a bound.
	finished := make(chan struct{})
	go func() { l.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(DetachedWait):
		l.log.Error("detached operations still running at finalize")
	}
	// The next process to start reads one index file, not every object
	// file (store/index.go), if this one changed objects.
	l.mu.RLock()
	for _, s := range l.slots {
		if s.tok != nil {
			s.tok.mu.Lock()
			objs := s.tok.objs
			s.tok.mu.Unlock()
			objs.Flush()
		}
	}
	l.mu.RUnlock()
	if l.q != nil {
		var storages []*tpm.Loadable
		l.mu.RLock()
		for _, s := range l.slots {
			if s.tok != nil {
				storages = append(storages, s.tok.storage)
			}
		}
		l.mu.RUnlock()
		_, _ = asyncq.Do(l.q, 0, func(e *tpm.Engine) (struct{}, error) {
			e.FlushAll()
			for _, st := range storages {
				clear(st.Auth) // unsealed values are wiped, not left to the GC
				st.Auth = nil
			}
			return struct{}{}, nil
		})
		// Nothing may run now; whatever still does is given up.
		l.q.Stop(l.abortTPM, 10*time.Second)
	}
	if l.dev != nil {
		_ = l.dev.Close()
	}
}

// run executes a job whose value is not needed on the TPM worker and
// classifies its error; do is the typed form.
func (l *Library) run(owner uint64, job func(e *tpm.Engine) (any, error)) (any, error) {
	return do(l, owner, job)
}

// do runs job on the TPM worker for owner and waits for its value.
func do[T any](l *Library, owner uint64, job func(e *tpm.Engine) (T, error)) (T, error) {
	if l.q == nil {
		var zero T
		return zero, ck.Wrap(ck.CKR_DEVICE_ERROR, l.devErr)
	}
	v, err := asyncq.Do(l.q, owner, guard(l, job))
	return v, tpmError(err)
}

// Simulated reports whether the token runs on the software simulator.
func (l *Library) Simulated() bool { return l.dev != nil && l.dev.Simulated }

// tpmInfo is the TPM's identity as last read (at C_Initialize, or later in
// the background if the TPM could not be read then); never waits.
func (l *Library) tpmInfo() tpm.Info {
	l.refreshSoon()
	l.health.mu.Lock()
	defer l.health.mu.Unlock()
	return l.health.info
}

// caps is what this TPM supports, asked once on first need (not at load,
// so starting and logging in cost no extra TPM commands).
type caps struct{ tpm.Caps }

// One probe runs at a time and the callers that come meanwhile wait for
// its end, not for capsMu: no lock is held across the TPM job. A failed
// probe is not kept: the next call asks again.
func (l *Library) caps() caps {
	for {
		l.capsMu.Lock()
		if v := l.capsVal; v != nil {
			l.capsMu.Unlock()
			return *v
		}
		if running := l.capsProbe; running != nil {
			l.capsMu.Unlock()
			<-running
			continue // its value, or a probe of our own if it failed
		}
		done := make(chan struct{})
		l.capsProbe = done
		l.capsMu.Unlock()
		v, err := do(l, 0, func(e *tpm.Engine) (tpm.Caps, error) { return e.Probe(candidates()) })
		l.capsMu.Lock()
		if err == nil {
			l.capsVal = &caps{v}
		}
		l.capsProbe = nil
		l.capsMu.Unlock()
		close(done)
		if err != nil {
			return caps{}
		}
		return caps{v}
	}
}

// SlotList lists slot IDs; with tokenPresent, only slots holding a token
// (the empty slot counts: it holds an uninitialized token).
func (l *Library) SlotList(tokenPresent bool) []uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var ids []uint64
	for _, s := range l.slots {
		if tokenPresent && l.present(s) != nil {
			continue
		}
		ids = append(ids, s.ID)
	}
	return ids
}

func (l *Library) slot(id uint64) (*Slot, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if id >= uint64(len(l.slots)) {
		return nil, ck.E(ck.CKR_SLOT_ID_INVALID)
	}
	return l.slots[id], nil
}

// SlotInfo is CK_SLOT_INFO.
type SlotInfo struct {
	Description, Manufacturer string
	Flags                     ck.Flags
	HW, FW                    [2]uint8
}

func (l *Library) SlotInfo(id uint64) (SlotInfo, error) {
	s, err := l.slot(id)
	if err != nil {
		return SlotInfo{}, err
	}
	// The empty slot's token comes and goes with the TPM (see present).
	info := SlotInfo{Manufacturer: "tpm11", HW: [2]uint8{0, 1}, FW: [2]uint8{0, 1}, Flags: ck.CKF_REMOVABLE_DEVICE}
	if l.dev == nil {
		info.Description = "tpm11: no TPM: " + shortCause(l.devErr)
		if l.cfg.TPM != "" {
			info.Description = "tpm11: no TPM (" + l.cfg.TPM + ")"
		}
		return info, nil
	}
	if l.present(s) == nil {
		info.Flags |= ck.CKF_TOKEN_PRESENT
	}
	ti := l.tpmInfo()
	if l.dev.Simulated {
		info.Description = "tpm11 on a software TPM simulator (no hardware protection)"
	} else {
		info.Flags |= ck.CKF_HW_SLOT
		info.Description = "tpm11 on " + l.cfg.TPM
		info.Manufacturer = ti.Manufacturer
		info.FW = [2]uint8{ti.FirmwareMajor, ti.FirmwareMinor}
	}
	switch down := l.tpmDown(); {
	case down != nil:
		info.Description = "tpm11: TPM " + shortCause(down) + " (" + l.cfg.TPM + ")"
	case s.tok != nil && l.tokenTPM(s.tok, false).Mismatch:
		info.Description = "tpm11: token of another TPM (or this TPM was cleared)"
	case s.tok == nil:
		info.Description += " [uninitialized]"
	}
	return info, nil
}

// TokenInfo is CK_TOKEN_INFO.
type TokenInfo struct {
	Label, Manufacturer, Model, Serial string
	Flags                              ck.Flags
	Sessions, RWSessions               uint64
	MinPIN, MaxPIN                     uint64
	HW, FW                             [2]uint8
}

// PIN length limits, in bytes.
const (
	MinPINLen = 4
	MaxPINLen = 128
)

func (l *Library) TokenInfo(id uint64) (TokenInfo, error) {
	s, err := l.slot(id)
	if err != nil {
		return TokenInfo{}, err
	}
	if err := l.present(s); err != nil {
		return TokenInfo{}, err
	}
	ti := l.tpmInfo()
	info := TokenInfo{
		Manufacturer: ti.Manufacturer, Model: "TPM 2.0 " + ti.VendorString,
		Flags:  ck.CKF_RNG | ck.CKF_LOGIN_REQUIRED | ck.CKF_ASYNC_SESSION_SUPPORTED | ck.CKF_DUAL_CRYPTO_OPERATIONS,
		MinPIN: MinPINLen, MaxPIN: MaxPINLen,
		HW: [2]uint8{0, 0}, FW: [2]uint8{ti.FirmwareMajor, ti.FirmwareMinor},
	}
	if l.dev.Simulated {
		info.Manufacturer = "tpm11 simulator"
		info.Model = "SOFTWARE (no HW)"
	}
	if s.tok == nil {
		return info, nil
	}
	info.Flags |= l.pinFlags(s.tok)
	t := s.tok
	t.mu.Lock()
	info.Label, info.Serial = t.rec.Label, t.rec.Serial
	info.Flags |= ck.CKF_TOKEN_INITIALIZED
	if t.rec.NoLogin {
		info.Flags &^= ck.CKF_LOGIN_REQUIRED
	}
	if t.rec.User != nil {
		info.Flags |= ck.CKF_USER_PIN_INITIALIZED
	}
	serial := t.rec.Serial
	t.mu.Unlock()
	if !l.store.Writable(serial) {
		info.Flags |= ck.CKF_WRITE_PROTECTED // another user's token in a shared store
	}
	l.mu.RLock()
	for _, ss := range l.sessions {
		if ss.tok == t {
			info.Sessions++
			if ss.rw() {
				info.RWSessions++
			}
		}
	}
	l.mu.RUnlock()
	return info, nil
}

// TPMCommands is how many TPM commands this library has sent: for
// diagnostics and benchmarks.
func (l *Library) TPMCommands() uint64 {
	if l.q == nil {
		return 0
	}
	n, _ := asyncq.Do(l.q, 0, func(e *tpm.Engine) (uint64, error) { return e.Commands, nil })
	return n
}
