package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/tpm11/tpm11/internal/atomicfile"
)

// within fails t if f does not return within a bound that only catches a
// hang (an open of a FIFO, a read of /dev/zero).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: hangs", what)
	}
}

// plant puts at path, in place of a store file: a FIFO, a symlink to
// /dev/zero, or a sparse file larger than any store file may be.
func plant(t *testing.T, kind, path string) {
	t.Helper()
	_ = os.Remove(path)
	var err error
	switch kind {
	case "fifo":
		err = syscall.Mkfifo(path, 0o600)
	case "symlink":
		err = os.Symlink("/dev/zero", path)
	case "huge":
		var f *os.File
		if f, err = os.Create(path); err == nil {
			err = f.Truncate(maxIndex + 1)
			f.Close()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Every file the store reads, planted as a FIFO, a symlink to /dev/zero
// or a huge file, is an error (a missing token, an object not there),
// never a hang or an allocation of its size; the good files beside it are
// still read.
func TestPlantedFilesAreRefusedNotRead(t *testing.T) {
	for _, kind := range []string{"fifo", "symlink", "huge"} {
		t.Run(kind, func(t *testing.T) {
			root := t.TempDir()
			s, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			good := &Token{Serial: "00000000000000aa", Label: "good"}
			bad := &Token{Serial: "00000000000000bb", Label: "bad"}
			for _, tok := range []*Token{good, bad} {
				if err := s.PutToken(tok); err != nil {
					t.Fatal(err)
				}
			}
			o := s.Objects(good.Serial)
			if err := o.PutAll(obj(1, "a"), obj(2, "b")); err != nil {
				t.Fatal(err)
			}
			if err := s.PutResult(good.Serial, 7, map[string]int{"x": 1}); err != nil {
				t.Fatal(err)
			}
			s.PutTPMInfo("srk", TPMInfo{Manufacturer: "x"})

			plant(t, kind, filepath.Join(s.tokenDir(bad.Serial), "token.json"))
			plant(t, kind, filepath.Join(o.dir, obj(2, "").UID+".obj"))
			plant(t, kind, filepath.Join(o.dir, ".txn-planted"))
			plant(t, kind, filepath.Join(o.dir, ".tmp-planted"))
			plant(t, kind, o.indexPath())
			plant(t, kind, s.resultPath(good.Serial, 7))
			plant(t, kind, filepath.Join(root, tpmInfoFile))

			within(t, "store", func() {
				s, err := Open(root)
				if err != nil {
					t.Error(err)
					return
				}
				toks, err := s.Tokens()
				if err != nil || len(toks) != 1 || toks[0].Label != "good" {
					t.Errorf("tokens: %v, %v; want only the good one", toks, err)
				}
				if _, err := s.Token(bad.Serial); !errors.Is(err, atomicfile.ErrNotRegular) && !errors.Is(err, atomicfile.ErrTooLarge) {
					t.Errorf("planted token record: %v", err)
				}
				objs, _, err := s.Objects(good.Serial).Sync()
				if err != nil || len(objs) != 1 || objs[0].UID != obj(1, "").UID {
					t.Errorf("objects: %d, %v; want the one good object", len(objs), err)
				}
				var v map[string]int
				if err := s.Result(good.Serial, 7, &v); err == nil {
					t.Error("a planted result was read")
				}
				if _, ok := s.TPMInfo("srk"); ok {
					t.Error("a planted tpm-info was read")
				}
			})
		})
	}
}

// The gen file and the token lock, opened for writing, refuse a FIFO or a
// symlink in their place (an open for writing of a FIFO with no reader
// would block, a symlink would let the writer append to another file).
func TestPlantedLockAndGenFilesAreRefused(t *testing.T) {
	for _, kind := range []string{"fifo", "symlink"} {
		t.Run(kind, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			tok := &Token{Serial: "00000000000000aa"}
			if err := s.PutToken(tok); err != nil {
				t.Fatal(err)
			}
			o := s.Objects(tok.Serial)
			plant(t, kind, filepath.Join(s.tokenDir(tok.Serial), genName))
			plant(t, kind, filepath.Join(s.tokenDir(tok.Serial), "lock"))
			within(t, "writes", func() {
				if err := o.Put(obj(1, "a")); !errors.Is(err, atomicfile.ErrNotRegular) {
					t.Errorf("put with a planted gen file: %v", err)
				}
				if _, err := s.UpdateToken(tok.Serial, func(*Token) error { return nil }); !errors.Is(err, atomicfile.ErrNotRegular) {
					t.Errorf("update with a planted lock: %v", err)
				}
			})
		})
	}
}

// A forged index (a valid checksum over counts far beyond its size) is
// refused before anything is allocated for its counts.
func TestForgedIndexCountsAreCheckedBeforeAllocating(t *testing.T) {
	s, serial := indexStore(t, 100)
	o := s.Objects(serial)
	b, err := os.ReadFile(o.indexPath())
	if err != nil {
		t.Fatal(err)
	}
	head := len(indexMagic) + 32
	for _, n := range []uint64{1 << 40, uint64(len(b)) / 2} {
		forged := append([]byte(nil), b[:len(b)-32]...)
		binary.LittleEndian.PutUint64(forged[head:], n)
		binary.LittleEndian.PutUint64(forged[head+8:], (n+indexChunk-1)/indexChunk)
		forged = encodeSum(forged)
		var before, after runtimeMem
		before.read()
		_, _, err := decodeIndex(forged)
		after.read()
		if !errors.Is(err, errBadIndex) {
			t.Errorf("count %d: %v, want a corrupt index", n, err)
		}
		if grew := after.total - before.total; grew > uint64(4*len(b)) {
			t.Errorf("count %d: %d bytes allocated for a %d-byte index", n, grew, len(b))
		}
	}
}

// encodeSum appends the index's checksum to body.
func encodeSum(body []byte) []byte {
	sum := sha256.Sum256(body)
	return append(body, sum[:]...)
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var st runtime.MemStats
	runtime.ReadMemStats(&st)
	m.total = st.TotalAlloc
}
