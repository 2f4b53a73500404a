package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/atomicfile"
)

// The object index: one file (objects.idx, beside the objects directory)
// holding every object's record as it was in the object files, with each
// file's identity (size, mtime, inode), so a process starting on a token of
// thousands of objects reads one file instead of one per object. The
// object files stay the truth; the index is a cache of them that is used
// only when provably current, and is otherwise ignored and rebuilt.
//
// Currency is proved by a generation: the size of objects.gen, a file each
// writer appends one byte to, holding a shared lock on it, *before* it
// changes anything in the objects directory (Put, PutAll, Delete,
// ClearAll). An index records the generation it was built at, and is built
// only from a scan that began and ended with the lock taken exclusively
// (no writer in the middle of a change) at the same generation. A reader
// that finds the generation it recorded (and the directory's mtime and
// inode unchanged: a writer of an older release does not count) knows no
// change has begun since, so the index is exactly the directory; any other
// index only seeds the cache that a full scan checks file by file.
//
// A writer killed after its append leaves the generation moved: the next
// reader scans (and cleans up after it, atomicfile.Recover). A torn or
// corrupt index fails its checksum and is ignored. The index holds what the
// object files hold and nothing else (attributes that are never a secret in
// the clear, TPM-wrapped blobs, private data objects' values encrypted):
// 0600, like them; which objects a process shows before login is decided
// by tpmtoken exactly as for objects read from their files.

const (
	indexName = "objects.idx"
	genName   = "objects.gen"
)

var indexMagic = []byte("tpm11 object index 1\n")

// fileID is what tells one version of an object file from another: a
// rewrite is a new file (atomicfile renames a new inode over the old one).
type fileID struct {
	size, mtime int64
	ino         uint64
}

func idOf(info os.FileInfo) fileID {
	id := fileID{size: info.Size(), mtime: info.ModTime().UnixNano()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		id.ino = st.Ino
	}
	return id
}

// generation identifies the state of the objects directory: the gen file's
// inode and size, and the directory's mtime and inode.
type generation struct {
	genIno, gen uint64
	dirMtime    int64
	dirIno      uint64
}

// genFile is the objects.gen file, open for appending.
type genFile struct{ f *os.File }

// openGen opens the gen file for appending, or with read set, for its lock
// and size only (a user who may not change the token, perms.go, still
// reads it).
func (o *Objects) openGen(read bool) (*genFile, error) {
	path := filepath.Join(filepath.Dir(o.dir), genName)
	f, err := atomicfile.Open(path, syscall.O_RDWR|syscall.O_APPEND|syscall.O_CREAT, o.filePerm)
	if err != nil && read && (errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EROFS)) {
		f, err = atomicfile.Open(path, syscall.O_RDONLY, 0)
	}
	if err != nil {
		return nil, writeErr(err)
	}
	return &genFile{f}, nil
}

func (g *genFile) close() { _ = g.f.Close() }

func (g *genFile) flock(how int) error {
	for {
		err := syscall.Flock(int(g.f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

// stat returns the gen file's inode and the generation (its size).
func (g *genFile) stat() (ino, gen uint64, err error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(g.f.Fd()), &st); err != nil {
		return 0, 0, err
	}
	return st.Ino, uint64(st.Size), nil
}

// change runs f, a change to the objects directory, announced by a new
// generation under the shared lock. It returns the generation its own
// append made, and the gen file's size once f returned (equal when no
// other writer began meanwhile).
func (o *Objects) change(f func() error) (mine, after uint64, err error) {
	g, err := o.openGen(false)
	if err != nil {
		return 0, 0, err
	}
	defer g.close()
	if err := g.flock(syscall.LOCK_SH); err != nil {
		return 0, 0, err
	}
	// Closing the file releases the lock.
	if _, err := g.f.Write([]byte{0}); err != nil {
		return 0, 0, err
	}
	_, mine, err = g.stat()
	if err != nil {
		return 0, 0, err
	}
	if err := f(); err != nil {
		return 0, 0, err
	}
	_, after, err = g.stat()
	return mine, after, err
}

// quiet reads the generation while no writer is changing the directory
// (the lock taken exclusively, without waiting: ok is false if a writer
// holds it). With recover set, dead writers' leftovers are cleaned up
// first, under the same lock.
func (o *Objects) quiet(recover bool) (gen generation, ok bool) {
	g, err := o.openGen(true)
	if err != nil {
		return gen, false
	}
	defer g.close()
	if g.flock(syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return gen, false
	}
	if recover {
		_, _ = atomicfile.Recover(o.dir)
	}
	if gen.genIno, gen.gen, err = g.stat(); err != nil {
		return gen, false
	}
	var st syscall.Stat_t
	if err := syscall.Stat(o.dir, &st); err != nil {
		return gen, false
	}
	gen.dirMtime, gen.dirIno = st.Mtim.Nano(), st.Ino
	return gen, true
}

// current reads the generation as it is now, without the lock.
func (o *Objects) current() (gen generation, err error) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(filepath.Dir(o.dir), genName), &st); err != nil {
		return gen, err
	}
	gen.genIno, gen.gen = st.Ino, uint64(st.Size)
	if err := syscall.Stat(o.dir, &st); err != nil {
		return gen, err
	}
	gen.dirMtime, gen.dirIno = st.Mtim.Nano(), st.Ino
	return gen, nil
}

func (o *Objects) indexPath() string { return filepath.Join(filepath.Dir(o.dir), indexName) }

// writeIndex writes the cache, exact at gen, as the index.
func (o *Objects) writeIndex(gen generation, cache *entries) error {
	return atomicfile.WritePerm(o.indexPath(), encodeIndex(gen, cache), o.filePerm)
}

// readIndex reads the index; a missing, torn or corrupt one is an error.
func (o *Objects) readIndex() (generation, []*cached, error) {
	// One replaced meanwhile is read whole or not at all (rename).
	b, st, err := atomicfile.ReadStat(o.indexPath(), maxIndex)
	if err != nil {
		return generation{}, nil, err
	}
	if !trusted(o.shared, st, o.owner) {
		return generation{}, nil, ErrUntrusted
	}
	return decodeIndex(b)
}

// The index format: magic, generation, count, then the objects in chunks
// (a table of each chunk's offset and count first, so chunks decode in
// parallel), each object its file's identity and its record; a SHA-256 of
// all that ends the file.
const indexChunk = 512

// minEncoded is the fewest bytes an object takes in the index: three
// varints, five strings' lengths and the attribute count.
const minEncoded = 9

func encodeIndex(gen generation, cache *entries) []byte {
	var ents []byte
	var offs []uint64
	str := func(s string) {
		ents = binary.AppendUvarint(ents, uint64(len(s)))
		ents = append(ents, s...)
	}
	i := 0
	cache.each(func(c *cached) {
		if i%indexChunk == 0 {
			offs = append(offs, uint64(len(ents)))
		}
		i++
		ents = binary.AppendVarint(ents, c.id.size)
		ents = binary.AppendVarint(ents, c.id.mtime)
		ents = binary.AppendUvarint(ents, c.id.ino)
		obj := c.obj
		str(obj.UID)
		str(obj.Parent)
		str(string(obj.Public))
		str(string(obj.Private))
		str(string(obj.Sealed))
		ents = binary.AppendUvarint(ents, uint64(len(obj.Attrs)))
		for typ, v := range obj.Attrs {
			ents = binary.AppendUvarint(ents, uint64(typ))
			str(string(v))
		}
	})
	b := make([]byte, 0, len(indexMagic)+48+8*len(offs)+len(ents)+sha256.Size)
	b = append(b, indexMagic...)
	b = binary.LittleEndian.AppendUint64(b, gen.genIno)
	b = binary.LittleEndian.AppendUint64(b, gen.gen)
	b = binary.LittleEndian.AppendUint64(b, uint64(gen.dirMtime))
	b = binary.LittleEndian.AppendUint64(b, gen.dirIno)
	b = binary.LittleEndian.AppendUint64(b, uint64(cache.len()))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(offs)))
	for _, off := range offs {
		b = binary.LittleEndian.AppendUint64(b, off)
	}
	b = append(b, ents...)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

var errBadIndex = errors.New("store: object index corrupt")

func decodeIndex(b []byte) (gen generation, cache []*cached, err error) {
	if len(b) < len(indexMagic)+48+sha256.Size || !bytes.HasPrefix(b, indexMagic) {
		return gen, nil, errBadIndex
	}
	body := b[:len(b)-sha256.Size]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], b[len(body):]) {
		return gen, nil, errBadIndex
	}
	d := decoder{b: body[len(indexMagic):]}
	gen.genIno, gen.gen = d.u64(), d.u64()
	gen.dirMtime, gen.dirIno = int64(d.u64()), d.u64()
	n, nchunks := d.u64(), d.u64()
	// Sizes are checked before anything is allocated for them: every
	// object takes at least minEncoded bytes, every chunk 8 in the table.
	if d.err != nil || n > uint64(len(d.b))/minEncoded || nchunks != (n+indexChunk-1)/indexChunk ||
		nchunks*8 > uint64(len(d.b)) || n*minEncoded > uint64(len(d.b))-nchunks*8 {
		return gen, nil, errBadIndex
	}
	offs := make([]uint64, nchunks+1)
	for i := range nchunks {
		offs[i] = d.u64()
	}
	ents := d.b
	offs[nchunks] = uint64(len(ents))
	// One string holds every UID (substrings of it share its memory), one
	// array every record and cache entry: a few allocations, not three
	// per object.
	all := string(ents)
	objs := make([]Object, n)
	cs := make([]cached, n)
	errs := make([]bool, nchunks)
	parallel(int(nchunks), func(k int) {
		if offs[k] > offs[k+1] || offs[k+1] > uint64(len(ents)) {
			errs[k] = true
			return
		}
		d := decoder{b: ents[offs[k]:offs[k+1]], s: all[offs[k]:offs[k+1]]}
		for i := k * indexChunk; i < min((k+1)*indexChunk, int(n)) && d.err == nil; i++ {
			c := &cs[i]
			c.id = fileID{size: d.varint(), mtime: d.varint(), ino: d.uvarint()}
			obj := &objs[i]
			obj.UID, obj.Parent = d.str(), d.str()
			obj.Public, obj.Private, obj.Sealed = d.blob(), d.blob(), d.blob()
			na := d.uvarint()
			if na > uint64(len(d.b))/2 { // a type and a length at least
				d.err = errBadIndex
				break
			}
			obj.Attrs = make(map[ck.AttributeType][]byte, na)
			for j := uint64(0); j < na && d.err == nil; j++ {
				typ := ck.AttributeType(d.uvarint())
				obj.Attrs[typ] = d.bytes()
			}
			c.obj = obj
		}
		errs[k] = d.err != nil || len(d.b) != 0
	})
	for _, bad := range errs {
		if bad {
			return gen, nil, errBadIndex
		}
	}
	cache = make([]*cached, n)
	for i := range cs {
		cache[i] = &cs[i]
	}
	return gen, cache, nil
}

// decoder reads b; s, when set, is the same bytes as a string.
type decoder struct {
	b   []byte
	s   string
	err error
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadIndex
		return ""
	}
	off := len(d.s) - len(d.b)
	v := d.s[off : off+int(n)]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.err = errBadIndex
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadIndex
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadIndex
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns the next length-prefixed value, as a slice of the index
// that cannot grow into its neighbour (never nil, like a JSON "").
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadIndex
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// blob is bytes for the record's omitempty fields: empty is nil, as JSON
// would read it.
func (d *decoder) blob() []byte {
	if v := d.bytes(); len(v) > 0 {
		return v
	}
	return nil
}
