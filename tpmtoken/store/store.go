// Package store keeps tokens and their objects on disk: one small file per
// token and per object, each written atomically (temporary file, fsync,
// rename), so a killed process never leaves a half-written object and any
// number of processes can read while one writes, without locks. Readers
// notice other processes' changes from the directory's modification time.
//
// A file-per-object layout was chosen over an embedded database because a
// database file lock (bbolt) would serialize every process using the token,
// and SQLite would add megabytes to every host process for no gain at the
// token sizes PKCS#11 sees. Files are 0600 in 0700 directories, or
// group-readable in a store shared by a group (perms.go: who may change
// what).
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/atomicfile"
)

// Store is a directory of tokens.
type Store struct {
	Root string
	// shared: the root is set-group-ID (perms.go); rootUID its owner.
	shared  bool
	rootUID uint32
}

// Open creates root if needed, and cleans up after writers that were
// killed (see deadwriters.go).
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("store %s: %w", root, writeErr(err))
	}
	s := &Store{Root: root}
	if err := s.detectShared(); err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	if err := s.mkdir(s.tokensDir(), s.dirPerm(true)); err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	if err := s.checkTokensDir(); err != nil {
		return nil, err
	}
	s.recover()
	return s, nil
}

func (s *Store) tokensDir() string { return filepath.Join(s.Root, "tokens") }

// PINObject is a TPM object whose authValue is derived from a PIN and Salt.
// Neither the PIN nor anything that can check it offline is stored: the
// private blob is only usable inside the TPM that wrapped it.
type PINObject struct {
	// Scheme is how the authValue is derived from the PIN (0: the first
	// release's raw digest; 2: zero-free text). Never the PIN itself.
	Scheme  int    `json:"scheme,omitempty"`
	Salt    []byte `json:"salt"`
	Public  []byte `json:"public"`
	Private []byte `json:"private"`
}

// Token is a token's record. Storage is the parent of every key; its
// random authValue exists on disk only sealed under the SO PIN (SO) and,
// once C_InitPIN ran, under the user PIN (User).
type Token struct {
	Serial  string     `json:"serial"`
	Label   string     `json:"label"`
	Created time.Time  `json:"created"`
	Storage PINObject  `json:"storage"`
	SO      PINObject  `json:"so"`
	User    *PINObject `json:"user,omitempty"`
	// Public is the parent of the keys that need no PIN (CKA_PRIVATE
	// false): a storage key whose authValue is kept here, so the store's
	// file permissions and the TPM guard those keys, not a PIN.
	Public *KeyBlob `json:"public,omitempty"`
	// NoLogin makes a token whose keys need no login by default
	// (CKF_LOGIN_REQUIRED clear).
	NoLogin bool `json:"no_login,omitempty"`
	// TPMName is the name of the TPM's storage root key (SRK) the token
	// was made under: another TPM, or this one after TPM2_Clear, has
	// another (empty for tokens made before it was recorded).
	TPMName []byte `json:"tpm_name,omitempty"`
	// AKCertificates is the TPM's attestation key certificate and its
	// chain (PEM), as an attestation CA issued them.
	AKCertificates []string `json:"ak_certificates,omitempty"`
	// AKType is the type of the attestation key AKCertificates certify
	// ("rsa" or "ecc"; empty: "ecc", the only type before RSA).
	AKType string `json:"ak_type,omitempty"`
}

// KeyBlob is a TPM key's wrapped blobs and its authValue.
type KeyBlob struct {
	Public  []byte `json:"public"`
	Private []byte `json:"private"`
	Auth    []byte `json:"auth"`
}

func (s *Store) tokenDir(serial string) string { return filepath.Join(s.Root, "tokens", serial) }

// Tokens lists the tokens, oldest first, so slot numbers are stable.
func (s *Store) Tokens() ([]*Token, error) {
	if err := s.checkTokensDir(); err != nil {
		return nil, err
	}
	ents, err := atomicfile.ReadDir(s.tokensDir())
	if err != nil {
		return nil, err
	}
	var out []*Token
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		t, err := s.Token(e.Name())
		if err != nil {
			continue // a token being created or removed by another process
		}
		out = append(out, t)
	}
	sortTokens(out)
	return out, nil
}

func sortTokens(ts []*Token) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && (ts[j].Created.Before(ts[j-1].Created) ||
			ts[j].Created.Equal(ts[j-1].Created) && ts[j].Serial < ts[j-1].Serial); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

// Token reads one token's record: its owner's (perms.go), naming itself.
func (s *Store) Token(serial string) (*Token, error) {
	owner, err := ownerOf(s.tokenDir(serial))
	if err != nil {
		return nil, err
	}
	path := filepath.Join(s.tokenDir(serial), "token.json")
	b, st, err := atomicfile.ReadStat(path, maxToken)
	if err != nil {
		return nil, err
	}
	if !trusted(s.shared, st, owner) {
		return nil, fmt.Errorf("token %s: %w", serial, ErrUntrusted)
	}
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("token %s: %w", serial, err)
	}
	if t.Serial != serial {
		return nil, fmt.Errorf("token %s: the record of token %q: %w", serial, t.Serial, ErrUntrusted)
	}
	return &t, nil
}

// PutToken writes a token's record.
func (s *Store) PutToken(t *Token) error {
	dir := s.tokenDir(t.Serial)
	if err := s.mkdir(dir, s.dirPerm(false)); err != nil {
		return err
	}
	if err := s.mkdir(filepath.Join(dir, "objects"), s.dirPerm(false)); err != nil {
		return err
	}
	// A new label is checked against every other token's (claim.go).
	unlock, err := s.claimLabel(t)
	if err != nil {
		return err
	}
	if unlock != nil {
		defer unlock()
	}
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return writeErr(atomicfile.WritePerm(filepath.Join(dir, "token.json"), b, s.filePerm()))
}

// UpdateToken changes a token's record under an exclusive lock shared by
// every process on the store: change sees the current record, and its
// result is written before the next process reads it.
func (s *Store) UpdateToken(serial string, change func(*Token) error) (*Token, error) {
	f, err := atomicfile.Open(filepath.Join(s.tokenDir(serial), "lock"), syscall.O_CREAT|syscall.O_RDWR, s.filePerm())
	if err != nil {
		return nil, writeErr(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	t, err := s.Token(serial)
	if err != nil {
		return nil, err
	}
	if err := change(t); err != nil {
		return nil, err
	}
	return t, s.PutToken(t)
}

// Objects is the object directory of a token.
func (s *Store) Objects(serial string) *Objects {
	o := &Objects{dir: filepath.Join(s.tokenDir(serial), "objects"), shared: s.shared,
		filePerm: s.filePerm(), dirPerm: s.dirPerm(false), store: s}
	o.owner, _ = ownerOf(s.tokenDir(serial))
	return o
}

// Object is an object's record: its attributes (never a secret in the clear)
// and, for keys, the TPM-wrapped blobs. On disk it is JSON of the format
// record.go describes (versioned, typed attributes).
type Object struct {
	UID string
	// Attrs are the attributes in their C encoding, as the token uses
	// them; Attributes, when the token gives them, the same typed for
	// the disk (record.go). Read back, only Attrs is set.
	Attrs      map[ck.AttributeType][]byte
	Attributes []Attribute
	Public     []byte
	Private    []byte
	// Sealed is a private data object's value, encrypted under the data
	// key whose TPM blobs are Public and Private.
	Sealed []byte
	// Parent is "public" for a key under the token's public storage key
	// (a key that needs no PIN); empty for the user's storage key; see
	// tpmtoken for the others (a TSS2 key file's, tpm2-pkcs11's primary).
	Parent string
	// Auth is a key's own authValue when it has one (a key taken over from
	// tpm2-pkcs11), encrypted under a key only the user PIN unlocks
	// (tpmtoken/migrate.go).
	Auth []byte
}

type cached struct {
	id  fileID
	obj *Object
}

// entries is the cache: by UID, or (read from an index, until a change or
// a scan needs it by UID) a list, which is quicker to make.
type entries struct {
	m    map[string]*cached
	list []*cached
}

func (e *entries) byUID() map[string]*cached {
	if e.m == nil {
		e.m = make(map[string]*cached, len(e.list))
		for _, c := range e.list {
			e.m[c.obj.UID] = c
		}
		e.list = nil
	}
	return e.m
}

func (e *entries) len() int { return len(e.m) + len(e.list) }

func (e *entries) each(f func(*cached)) {
	for _, c := range e.m {
		f(c)
	}
	for _, c := range e.list {
		f(c)
	}
}

// Objects caches a token's object files and re-reads only what changed
// (index.go: a process's first look reads the index when it is current).
// Safe for concurrent use.
type Objects struct {
	dir string
	// What the store is (perms.go): files used only if owner's (or root's).
	store             *Store
	shared            bool
	owner             uint32
	filePerm, dirPerm uint32

	mu     sync.Mutex // lock 6 (docs/design.md "Locks"): after Token.mu; a leaf
	mod    time.Time  // the directory's mtime at the last scan
	synced bool
	cache  entries
	// unreported: the cache was filled without a Sync returning it.
	unreported bool
	// exact: the cache is the directory at gen (no change began since
	// the scan or index it came from, but this process's own, noted).
	exact bool
	gen   generation
	// indexGen is the generation of the index on disk, as far as known;
	// wrote is set by a change of this process the index lacks.
	indexGen uint64
	wrote    bool
	// filesRead counts object files read (for tests).
	filesRead int
}

// IndexMin is the fewest objects worth an index: below it, reading the
// object files is as quick.
var IndexMin = 64

// ClearAll removes every object (C_InitToken over an existing token).
func (o *Objects) ClearAll() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _, err := o.change(func() error {
		_ = os.Remove(o.indexPath())
		ents, err := atomicfile.ReadDir(o.dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, e := range ents {
			_ = os.Remove(filepath.Join(o.dir, e.Name()))
		}
		if len(ents) > 0 {
			_ = atomicfile.SyncDir(o.dir)
		}
		return nil
	})
	o.cache = entries{}
	o.synced, o.exact, o.unreported, o.wrote, o.indexGen = false, false, false, false, 0
	return err
}

// Sync brings the cache up to date with the disk and, when anything changed
// since the last Sync, returns all objects (nil otherwise: the caller's
// view is current).
func (o *Objects) Sync() ([]*Object, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	changed, err := o.syncLocked()
	if err != nil || !changed {
		return nil, false, err
	}
	out := make([]*Object, 0, o.cache.len())
	o.cache.each(func(c *cached) { out = append(out, c.obj) })
	return out, true, nil
}

func (o *Objects) syncLocked() (bool, error) {
	if !o.synced && o.fromIndex() {
		o.unreported = true
	}
	changed := o.unreported
	o.unreported = false
	st, err := os.Stat(o.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			changed = changed || o.cache.len() > 0
			o.cache = entries{}
			o.synced, o.exact = true, false
			return changed, nil
		}
		return false, err
	}
	if o.synced && st.ModTime().Equal(o.mod) {
		return changed, nil
	}
	first := !o.synced
	// The first look reports everything, even when it read nothing (the
	// cache seeded from an index that was not current).
	changed = changed || first && o.cache.len() > 0
	// Writers are quiet at the start and the end of the scan, at the same
	// generation: the scan saw the directory as it was then, exactly.
	// The first look at the directory finishes or undoes what killed
	// writers left in it first.
	gen1, quiet1 := o.quiet(first)
	if first && !quiet1 {
		_, _ = atomicfile.Recover(o.dir)
	}
	if st, err = os.Stat(o.dir); err != nil {
		return false, err
	}
	o.synced, o.mod = true, st.ModTime()
	ents, err := atomicfile.ReadDir(o.dir)
	if err != nil {
		return false, err
	}
	cache := o.cache.byUID()
	seen := make(map[string]bool, len(ents))
	type todo struct {
		uid, path string
		info      os.FileInfo
		obj       *Object
	}
	var reads []*todo
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".obj") {
			continue
		}
		uid := strings.TrimSuffix(name, ".obj")
		seen[uid] = true
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if c := cache[uid]; c != nil && c.id == idOf(info) {
			continue
		}
		reads = append(reads, &todo{uid: uid, path: filepath.Join(o.dir, name), info: info})
	}
	// Reading is syscall- and JSON-bound: spread a cold start (every
	// object at once) over the CPUs.
	parallel(len(reads), func(i int) { reads[i].obj, _ = o.readObject(reads[i].path, reads[i].uid) })
	o.filesRead += len(reads)
	for _, r := range reads {
		if r.obj != nil {
			cache[r.uid] = &cached{id: idOf(r.info), obj: r.obj}
			changed = true
		}
	}
	for uid := range cache {
		if !seen[uid] {
			delete(cache, uid)
			changed = true
		}
	}
	gen2, quiet2 := o.quiet(false)
	o.exact = quiet1 && quiet2 && gen1 == gen2
	o.gen = gen1
	if o.exact && gen1.gen != o.indexGen && o.cache.len() >= IndexMin &&
		(len(reads) >= IndexMin || o.indexGen == 0) {
		o.putIndex()
	}
	return changed, nil
}

// fromIndex fills the cache from the index. It reports whether the index
// is current (the cache is then the directory); a stale one only seeds
// the cache, which the scan that follows checks file by file.
func (o *Objects) fromIndex() bool {
	gen, cache, err := o.readIndex()
	if err != nil {
		return false
	}
	o.indexGen = gen.gen
	cur, err := o.current()
	if err != nil || cur != gen {
		if o.cache.len() == 0 {
			o.cache = entries{list: cache}
		}
		return false
	}
	o.cache = entries{list: cache}
	o.synced, o.mod = true, time.Unix(0, gen.dirMtime)
	o.exact, o.gen = true, gen
	return true
}

// putIndex writes the cache as the index; callers checked it is exact.
func (o *Objects) putIndex() {
	if o.writeIndex(o.gen, &o.cache) == nil {
		o.indexGen, o.wrote = o.gen.gen, false
	}
}

// Flush writes the index if this process changed objects since it was
// written (run at C_Finalize: the next process to start reads one file).
func (o *Objects) Flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.wrote {
		return
	}
	if !o.exact {
		o.synced = false // a full look, with the index's help
		if _, err := o.syncLocked(); err != nil {
			return
		}
		o.unreported = true
	}
	if o.exact && o.gen.gen != o.indexGen && o.cache.len() >= IndexMin {
		o.putIndex()
	}
}

// parallel runs f(0..n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, f func(int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// readObject reads the object file at path: its token owner's (perms.go),
// the record of the object it is named for.
func (o *Objects) readObject(path, uid string) (*Object, error) {
	b, st, err := atomicfile.ReadStat(path, maxObject)
	if err != nil {
		return nil, err
	}
	if !trusted(o.shared, st, o.owner) {
		return nil, ErrUntrusted
	}
	var obj Object
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	if obj.UID != uid {
		return nil, ErrUntrusted // another object's file, renamed
	}
	return &obj, nil
}

// Put writes obj.
func (o *Objects) Put(obj *Object) error { return o.PutAll(obj) }

// PutAll writes objs as one step (a key pair): after a crash, every one
// of them is in the store or none is.
func (o *Objects) PutAll(objs ...*Object) error {
	if err := o.store.mkdir(o.dir, o.dirPerm); err != nil {
		return err
	}
	files := make([]atomicfile.File, len(objs))
	for i, obj := range objs {
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		files[i] = atomicfile.File{Name: obj.UID + ".obj", Data: b}
	}
	return o.write(files, nil)
}

// Delete removes the object with uid, durably (the directory is synced).
func (o *Objects) Delete(uid string) error {
	return o.write(nil, []string{uid})
}

// write makes a change of this process's (files written, uids removed)
// and, if the cache was exact before it and no other writer began
// meanwhile, keeps the cache exact: the files' identities are read back
// between the change and the check that no one else changed anything.
func (o *Objects) write(files []atomicfile.File, gone []string) error {
	o.mu.Lock()
	if !o.synced {
		// The first change: learn the directory's state now (from the
		// index, if current), so the change can be noted in it.
		if _, err := o.syncLocked(); err == nil {
			o.unreported = true
		}
	}
	o.mu.Unlock()
	var pre, post generation
	var unknown error // the change is made, but not known exactly
	ids := make([]os.FileInfo, len(files))
	mine, after, err := o.change(func() error {
		pre, _ = o.current()
		var err error
		if len(files) > 0 {
			err = atomicfile.WriteAllPerm(o.dir, files, o.filePerm)
		} else {
			for _, uid := range gone {
				if err = atomicfile.Remove(filepath.Join(o.dir, uid+".obj")); err != nil {
					break
				}
			}
		}
		if err != nil {
			return writeErr(err)
		}
		for i, f := range files {
			if ids[i], unknown = os.Lstat(filepath.Join(o.dir, f.Name)); unknown != nil {
				return nil
			}
		}
		post, unknown = o.current()
		return nil
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	o.wrote = true
	if err != nil || unknown != nil || !o.exact || mine != o.gen.gen+1 || after != mine ||
		pre.dirMtime != o.gen.dirMtime || pre.dirIno != o.gen.dirIno || post.genIno != o.gen.genIno {
		o.exact = false
		return err
	}
	for i, f := range files {
		var obj Object
		if json.Unmarshal(f.Data, &obj) != nil {
			o.exact = false
			return nil
		}
		o.cache.byUID()[strings.TrimSuffix(f.Name, ".obj")] = &cached{id: idOf(ids[i]), obj: &obj}
	}
	for _, uid := range gone {
		delete(o.cache.byUID(), uid)
	}
	post.gen = mine
	wasCurrent := o.mod.Equal(time.Unix(0, o.gen.dirMtime))
	o.gen = post
	if wasCurrent {
		o.mod = time.Unix(0, post.dirMtime)
	}
	return nil
}

func (s *Store) resultPath(serial string, id uint64) string {
	return filepath.Join(s.tokenDir(serial), "async", fmt.Sprintf("%016x.json", id))
}

// PutResult keeps a detached operation's result (never a secret) under its ID.
func (s *Store) PutResult(serial string, id uint64, v any) error {
	if err := s.mkdir(filepath.Dir(s.resultPath(serial, id)), s.dirPerm(false)); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeErr(atomicfile.WritePerm(s.resultPath(serial, id), b, s.filePerm()))
}

// Result reads a detached operation's result into v.
func (s *Store) Result(serial string, id uint64, v any) error {
	b, err := atomicfile.Read(s.resultPath(serial, id), maxResult)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// DeleteResult forgets a result (joined, or expired).
func (s *Store) DeleteResult(serial string, id uint64) error {
	return atomicfile.Remove(s.resultPath(serial, id))
}

// Bounds on what each kind of store file can hold (atomicfile.Read
// checks them before allocating): a file larger is refused, not read.
const (
	maxToken  = 4 << 20  // seals, public parent, attestation certificates
	maxObject = 16 << 20 // the largest certificate or data object
	maxResult = 1 << 20  // a detached operation's result (a signature)
	// maxTPMInfo: a few TPMs' identities.
	maxTPMInfo = 64 << 10
	// maxIndex: every object's record; a larger index is ignored, and
	// the object files are read instead.
	maxIndex = 1 << 30
)

// TPMInfo is a TPM's identity as a library last read it: kept so the next
// process need not ask (tpmtoken: C_Initialize), by the name of the TPM's
// storage root key, which no other TPM (nor this one after TPM2_Clear) has.
type TPMInfo struct {
	Manufacturer                 string
	VendorString                 string
	FirmwareMajor, FirmwareMinor uint8
}

const tpmInfoFile = "tpm-info.json"

func (s *Store) tpmInfos() map[string]TPMInfo {
	m := map[string]TPMInfo{}
	if b, err := atomicfile.Read(filepath.Join(s.Root, tpmInfoFile), maxTPMInfo); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

// TPMInfo is what was kept of the TPM whose SRK is named srkName (hex).
func (s *Store) TPMInfo(srkName string) (TPMInfo, bool) {
	i, ok := s.tpmInfos()[srkName]
	return i, ok
}

// PutTPMInfo keeps info for the TPM whose SRK is named srkName, if it is
// news (a few TPMs are kept: a store moved between machines, or a TPM
// cleared, leaves one behind).
func (s *Store) PutTPMInfo(srkName string, info TPMInfo) {
	m := s.tpmInfos()
	if old, ok := m[srkName]; ok && old == info {
		return
	}
	if len(m) >= 8 {
		clear(m)
	}
	m[srkName] = info
	if b, err := json.Marshal(m); err == nil {
		_ = atomicfile.WritePerm(filepath.Join(s.Root, tpmInfoFile), b, s.filePerm())
	}
}
