package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Loadable is a TPM object (a key or sealed data) as the Engine loads it on
// demand: the primary storage key (Parent == nil, re-created from its
// template) or an object whose wrapped blobs live in the store. It is the
// TPM's view of a key; tpmtoken.Object is the PKCS#11 object (attributes,
// handle) that may hold one. ID names it in the Engine's cache and must be
// stable for the object's lifetime.
type Loadable struct {
	ID      string
	Parent  *Loadable
	Public  tpm2.TPM2BPublic
	Private tpm2.TPM2BPrivate
	// Auth is the object's authValue, used when it authorizes a command:
	// as the parent of a Load, or to Sign. Read only by the job running on
	// the Engine (see the package doc).
	Auth []byte
	// Persistent, for a primary key, is a persistent handle where the TPM's
	// owner may have kept the same key (the TCG's well-known SRK handle):
	// used when its public area matches the template, it saves a
	// CreatePrimary (tens of ms on hardware) in every process.
	Persistent tpm2.TPMHandle
	// Hierarchy, for a primary key, is the hierarchy it is made in: the
	// owner's when zero, the endorsement hierarchy for the EK and the
	// attestation key (attest.go).
	Hierarchy tpm2.TPMHandle
	// Policy, if set, is how to satisfy the key's authPolicy when it is
	// used (policy.go); the key is then not used with its authValue.
	Policy *Policy
}

// hierarchy is the hierarchy a primary key is made in.
func (o *Loadable) hierarchy() tpm2.TPMHandle {
	if o.Hierarchy == 0 {
		return tpm2.TPMRHOwner
	}
	return o.Hierarchy
}

// Name computes the object's TPM name from its public area.
func (o *Loadable) Name() (tpm2.TPM2BName, error) {
	pub, err := o.Public.Contents()
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	n, err := tpm2.ObjectName(pub)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	return *n, nil
}

type slot struct {
	obj *Loadable
	pub tpm2.TPMTPublic // a primary's public area, as the TPM made it
	// persistent: the object lives at a persistent handle, takes no
	// transient slot, and is never saved, flushed or evicted.
	persistent bool
	// dropped: forgotten but still loaded (Drop); flushed, never saved,
	// when its room is needed or the TPM is let go of.
	dropped bool
	handle  tpm2.TPMHandle
	name    tpm2.TPM2BName
	loaded  bool
	// saved, once the object was first evicted, is its saved context,
	// kept while it is loaded again: evicting it again is a flush only
	// (context.go).
	saved   *savedContext
	lastUse uint64
}

// Engine runs TPM commands for one job at a time (see the package doc:
// asyncq decides whose, on whichever thread runs it) and keeps objects loaded
// across calls, swapping them out (ContextSave/FlushContext) and back in
// (ContextLoad) when the TPM's object slots are full, so that a key used
// again costs no Load and a full TPM never surfaces as TPM_RC_OBJECT_MEMORY.
type Engine struct {
	t        transport.TPM
	capacity int
	slots    map[string]*slot
	clock    uint64
	// Commands counts TPM commands sent, for diagnostics and benchmarks.
	Commands uint64
	// Salt, if set, is a primary key that salts the sessions carrying
	// secrets (see secret), so they never cross the TPM bus in the clear.
	Salt *Loadable
	// failed is the transport failure that ended the current job's use
	// of the TPM: its later commands fail at once (see Begin).
	failed error
	// hot is the buffer the hot commands are marshalled in (hot.go).
	hot pwCommand
	// kept is the session kept across commands (kept_session.go), if started.
	kept *keptSession
}

// Begin starts a job: the TPM is tried again even if the last job could not
// reach it. Within a job, once a command could not reach the TPM (it timed
// out, or the connection failed), every later command fails at once with
// the same error: a job never waits on a dead TPM twice.
func (e *Engine) Begin() { e.failed = nil }

// Disconnected tells the Engine the connection was let go of: whatever it
// still had loaded is no longer its own (another process may flush it).
func (e *Engine) Disconnected() { e.lost() }

// NewEngine returns an Engine over t that keeps at most capacity objects loaded.
func NewEngine(t transport.TPM, capacity int) *Engine {
	if capacity < 2 {
		capacity = 2
	}
	return &Engine{t: t, capacity: capacity, slots: map[string]*slot{}}
}

// tr is the transport every command of the Engine goes through: it counts
// commands and keeps the cache of loaded objects true to the TPM (see send).
func (e *Engine) tr() transport.TPM { return engineTransport{e} }

type engineTransport struct{ e *Engine }

func (t engineTransport) Send(b []byte) ([]byte, error) { return t.e.send(b) }

func (e *Engine) loadedCount() int {
	n := 0
	for _, s := range e.slots {
		if s.loaded {
			n++
		}
	}
	return n
}

// evictOne flushes the least recently used loaded object not in keep,
// saving its context first unless it is saved already; a dropped object
// goes first, flushed only.
func (e *Engine) evictOne(keep map[string]bool) error {
	var victim *slot
	for id, s := range e.slots {
		if s.dropped {
			if s.loaded {
				_ = e.flush(s.handle)
			}
			delete(e.slots, id)
			return nil
		}
	}
	for id, s := range e.slots {
		if s.loaded && !keep[id] && (victim == nil || s.lastUse < victim.lastUse) {
			victim = s
		}
	}
	if victim == nil {
		return errors.New("no TPM object slot can be freed")
	}
	if victim.saved == nil {
		saved, err := e.contextSave(victim.handle)
		if err != nil {
			return fmt.Errorf("context save: %w", err)
		}
		victim.saved = saved
	}
	if err := e.flush(victim.handle); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	victim.loaded = false
	return nil
}

// withRoom runs load after making room for one more object, and once more
// after evicting if the TPM still reports it is out of object memory (objects
// left by another process or a crashed one).
func (e *Engine) withRoom(keep map[string]bool, load func() error) error {
	for e.loadedCount() >= e.capacity {
		if err := e.evictOne(keep); err != nil {
			return err
		}
	}
	err := load()
	orphans := false
	for tries := 0; err != nil && errors.Is(err, tpm2.TPMRCObjectMemory) && tries < e.capacity+1; tries++ {
		if e.evictOne(keep) != nil {
			if orphans {
				break
			}
			e.flushOrphans()
			orphans = true
		}
		err = load()
	}
	return err
}

// flushOrphans flushes transient objects that are not this Engine's. It is
// only reached on a TPM without a resource manager (swtpm, /dev/tpm0),
// where whoever holds the connection is its only user and every process
// saves and flushes its objects before letting go of it: what is left was
// left by a process that died mid-operation, and would fill the TPM's few
// slots for good.
func (e *Engine) flushOrphans() {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(tpm2.TPMHTTransient) << 24,
		PropertyCount: 64,
	}.Execute(e.tr())
	if err != nil {
		return
	}
	hs, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		return
	}
	ours := map[tpm2.TPMHandle]bool{}
	for _, s := range e.slots {
		if s.loaded {
			ours[s.handle] = true
		}
	}
	for _, h := range hs.Handle {
		if !ours[h] {
			_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(e.tr())
		}
	}
}

// Handle makes obj loaded and returns its handle and name.
func (e *Engine) Handle(obj *Loadable) (tpm2.NamedHandle, error) {
	return e.handle(obj, map[string]bool{})
}

func (e *Engine) handle(obj *Loadable, keep map[string]bool) (tpm2.NamedHandle, error) {
	e.clock++
	// Kept from here on whether loaded already or not: making room for a
	// child must never evict its parent (which left the child's load
	// naming a flushed handle, TPM_RC_REFERENCE_H0, when dead processes'
	// objects filled swtpm's slots).
	keep[obj.ID] = true
	s := e.slots[obj.ID]
	if s != nil && s.obj != obj {
		// Same ID, new blobs (e.g. after a PIN change): the new ones win.
		e.Forget(obj.ID)
		s = nil
	}
	if s != nil && (s.loaded || s.persistent) {
		s.lastUse = e.clock
		return tpm2.NamedHandle{Handle: s.handle, Name: s.name}, nil
	}
	if s != nil && s.saved != nil {
		err := e.withRoom(keep, func() error {
			h, err := e.contextLoad(s.saved)
			if err != nil {
				return err
			}
			s.handle = h
			return nil
		})
		if err == nil {
			s.loaded, s.lastUse = true, e.clock
			return tpm2.NamedHandle{Handle: s.handle, Name: s.name}, nil
		}
		// A saved context does not survive a TPM reset (context.go):
		// load from the blobs, and save afresh when next evicted.
		if refused(err) {
			e.reset()
		}
		delete(e.slots, obj.ID)
	}
	s = &slot{obj: obj}
	if obj.Parent == nil && obj.Persistent != 0 && e.usePersistent(obj, s) {
		e.slots[obj.ID] = s
		return tpm2.NamedHandle{Handle: s.handle, Name: s.name}, nil
	}
	var err error
	if obj.Parent == nil {
		err = e.withRoom(keep, func() error {
			rsp, err := tpm2.CreatePrimary{
				PrimaryHandle: obj.hierarchy(),
				InPublic:      obj.Public,
			}.Execute(e.tr())
			if err != nil {
				return err
			}
			s.handle, s.name = rsp.ObjectHandle, rsp.Name
			pub, err := rsp.OutPublic.Contents()
			if err != nil {
				return err
			}
			s.pub = *pub
			return nil
		})
	} else {
		var parent tpm2.NamedHandle
		parent, err = e.handle(obj.Parent, keep)
		if err != nil {
			return tpm2.NamedHandle{}, err
		}
		err = e.withRoom(keep, func() error {
			pa, err := e.secret(parent, obj.Parent.Auth, keep)
			if err != nil {
				return err
			}
			rsp, err := tpm2.Load{
				ParentHandle: pa,
				InPrivate:    obj.Private,
				InPublic:     obj.Public,
			}.Execute(e.tr())
			if err != nil {
				return err
			}
			s.handle, s.name = rsp.ObjectHandle, rsp.Name
			return nil
		})
	}
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	s.loaded, s.lastUse = true, e.clock
	e.slots[obj.ID] = s
	return tpm2.NamedHandle{Handle: s.handle, Name: s.name}, nil
}

// usePersistent fills s from obj.Persistent if the key there is the one
// obj's template makes: same type, name algorithm, attributes, policy and
// parameters (a primary key is determined by those and the hierarchy's seed;
// only keys of obj's hierarchy are looked at).
func (e *Engine) usePersistent(obj *Loadable, s *slot) bool {
	rsp, err := tpm2.ReadPublic{ObjectHandle: obj.Persistent}.Execute(e.tr())
	if err != nil {
		return false
	}
	have, err := rsp.OutPublic.Contents()
	if err != nil {
		return false
	}
	want, err := obj.Public.Contents()
	if err != nil {
		return false
	}
	h, w := *have, *want
	h.Unique, w.Unique = tpm2.TPMUPublicID{}, tpm2.TPMUPublicID{}
	if !bytes.Equal(tpm2.Marshal(h), tpm2.Marshal(w)) || !primaryOf(obj.hierarchy(), have.NameAlg, rsp.Name, rsp.QualifiedName) {
		return false
	}
	s.handle, s.name, s.pub, s.persistent = obj.Persistent, rsp.Name, *have, true
	return true
}

// primaryOf reports whether qualified name qn says the object named name
// is a primary key of hierarchy: QN = nameAlg || H(hierarchy || name).
// The same template under another hierarchy is another key.
func primaryOf(hierarchy tpm2.TPMHandle, alg tpm2.TPMIAlgHash, name, qn tpm2.TPM2BName) bool {
	hf, err := alg.Hash()
	if err != nil || len(qn.Buffer) < 2 {
		return false
	}
	d := hf.New()
	d.Write(binary.BigEndian.AppendUint32(nil, uint32(hierarchy)))
	d.Write(name.Buffer)
	return bytes.Equal(qn.Buffer[2:], d.Sum(nil))
}

func auth(h tpm2.NamedHandle, value []byte) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(value)}
}

// secret authorizes h with value without sending value: an HMAC session
// salted to e.Salt (so only this TPM can derive the session key), with
// parameter encryption in dir when the command or response carries a
// secret (a PIN-sealed value, new auth, key material). An empty value has
// nothing to hide and uses a password session; so does an Engine without
// a Salt, and the salt key itself.
func (e *Engine) secret(h tpm2.NamedHandle, value []byte, keep map[string]bool, dir ...tpm2.AuthOption) (tpm2.AuthHandle, error) {
	if e.Salt == nil || (len(value) == 0 && len(dir) == 0) || bytes.IndexByte(value, 0) >= 0 {
		// (go-tpm cuts an HMAC key at a zero byte: such a value, which the
		// token never makes, can only go as a password.)
		return auth(h, value), nil
	}
	keep[e.Salt.ID] = true
	sh, err := e.handle(e.Salt, keep)
	if err != nil {
		return tpm2.AuthHandle{}, err
	}
	opts := append([]tpm2.AuthOption{tpm2.Auth(value), tpm2.Salted(sh.Handle, e.slots[e.Salt.ID].pub)}, dir...)
	return tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, opts...)}, nil
}

// Parameter encryption directions for secret.
var (
	encryptIn  = tpm2.AESEncryption(128, tpm2.EncryptIn)
	encryptOut = tpm2.AESEncryption(128, tpm2.EncryptOut)
)

// Forget flushes obj's TPM copy, if any, and drops it from the cache.
func (e *Engine) Forget(id string) {
	s := e.slots[id]
	if s == nil {
		return
	}
	if s.loaded {
		_ = e.flush(s.handle)
	}
	delete(e.slots, id)
}

// Drop forgets obj like Forget but leaves its TPM copy loaded until the
// room is needed or the TPM is let go of (SaveAll, FlushAll): an object used
// once (an unsealed PIN seal) costs no FlushContext on the way to the
// caller. Its Loadable (and authValue) is let go of at once.
func (e *Engine) Drop(id string) {
	s := e.slots[id]
	if s == nil {
		return
	}
	delete(e.slots, id)
	if !s.loaded || s.persistent {
		return
	}
	s.obj, s.dropped, s.saved = nil, true, nil
	e.slots["\x00dropped:"+strconv.FormatUint(uint64(s.handle), 16)] = s
}

// ForgetChildren forgets every cached object whose ancestry includes parent.
func (e *Engine) ForgetChildren(parentID string) {
	for id, s := range e.slots {
		if s.obj == nil {
			continue // dropped
		}
		for p := s.obj.Parent; p != nil; p = p.Parent {
			if p.ID == parentID {
				e.Forget(id)
				break
			}
		}
	}
}

// SaveAll saves (unless saved already) and flushes every loaded object,
// leaving the TPM's slots to other processes; each comes back by
// ContextLoad when next used.
func (e *Engine) SaveAll() {
	e.dropKept(true)
	for e.loadedCount() > 0 {
		if e.evictOne(nil) != nil {
			return
		}
	}
}

// FlushAll empties the TPM of everything this Engine loaded.
func (e *Engine) FlushAll() {
	e.dropKept(true)
	for id := range e.slots {
		e.Forget(id)
	}
}

// Loaded reports whether obj is currently resident in the TPM.
func (e *Engine) Loaded(id string) bool {
	s := e.slots[id]
	return s != nil && s.loaded
}
