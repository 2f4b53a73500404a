package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tpm11/tpm11/ck"
)

func indexStore(t *testing.T, n int) (*Store, string) {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok := &Token{Serial: "00112233aabbccdd"}
	if err := s.PutToken(tok); err != nil {
		t.Fatal(err)
	}
	o := s.Objects(tok.Serial)
	for i := range n {
		if err := o.Put(obj(i, "v")); err != nil {
			t.Fatal(err)
		}
	}
	o.Flush()
	return s, tok.Serial
}

func obj(i int, label string) *Object {
	return &Object{UID: fmt.Sprintf("%032x", i), Attrs: map[ck.AttributeType][]byte{
		ck.CKA_CLASS: {0, 0, 0, 0, 0, 0, 0, 0}, ck.CKA_LABEL: []byte(label + fmt.Sprint(i))}}
}

// labels is what a fresh reader sees: UID to label.
func labels(t *testing.T, o *Objects) map[string]string {
	t.Helper()
	recs, changed, err := o.Sync()
	if err != nil || !changed {
		t.Fatalf("first sync: changed %v, %v", changed, err)
	}
	m := map[string]string{}
	for _, r := range recs {
		m[r.UID] = string(r.Attrs[ck.CKA_LABEL])
	}
	return m
}

func TestIndexIsReadInsteadOfTheObjectFiles(t *testing.T) {
	s, serial := indexStore(t, 100)
	st, err := os.Stat(filepath.Join(s.tokenDir(serial), indexName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("index mode %v, want 0600", st.Mode().Perm())
	}
	o := s.Objects(serial)
	if got := labels(t, o); len(got) != 100 || got[obj(7, "").UID] != "v7" {
		t.Fatalf("got %d objects", len(got))
	}
	if o.filesRead != 0 {
		t.Errorf("%d object files read with a current index", o.filesRead)
	}
	// The index holds what the object files hold, no more.
	idx, _ := os.ReadFile(filepath.Join(s.tokenDir(serial), indexName))
	if bytes.Contains(idx, []byte("sopin")) || bytes.Contains(idx, []byte(`"so"`)) {
		t.Error("index holds token secrets")
	}
}

// Another writer's changes behind the index's back: a new object is not
// hidden, a removed one not resurrected, a rewritten one (same size) not
// shown as it was.
func TestStaleIndexNeverHidesOrResurrects(t *testing.T) {
	s, serial := indexStore(t, 100)
	other := s.Objects(serial) // another process, which never flushes
	if err := other.Delete(obj(3, "").UID); err != nil {
		t.Fatal(err)
	}
	if err := other.Put(obj(1000, "new")); err != nil {
		t.Fatal(err)
	}
	if err := other.Put(obj(5, "w")); err != nil { // same length as "v5"
		t.Fatal(err)
	}
	o := s.Objects(serial)
	got := labels(t, o)
	if _, ok := got[obj(3, "").UID]; ok {
		t.Error("removed object resurrected")
	}
	if got[obj(1000, "").UID] != "new1000" {
		t.Error("new object hidden")
	}
	if got[obj(5, "").UID] != "w5" {
		t.Errorf("rewritten object read as %q", got[obj(5, "").UID])
	}
	if len(got) != 100 {
		t.Errorf("%d objects, want 100", len(got))
	}
	if o.filesRead > 2 {
		t.Errorf("%d files read: the stale index should still spare the unchanged ones", o.filesRead)
	}
	// The reader that scanned wrote no index (2 files read); a later
	// flush by the writer makes one that is current again.
	other.Flush()
	o2 := s.Objects(serial)
	if got2 := labels(t, o2); len(got2) != 100 || o2.filesRead != 0 {
		t.Errorf("after the writer's flush: %d objects, %d files read", len(got2), o2.filesRead)
	}
}

// A writer of an older release (no generation) changes the directory:
// its mtime tells.
func TestIndexIgnoredAfterAWriterThatKeepsNoGeneration(t *testing.T) {
	s, serial := indexStore(t, 100)
	b := []byte(`{"uid":"old-writer","attrs":{}}`)
	if err := os.WriteFile(filepath.Join(s.tokenDir(serial), "objects", "old-writer.obj"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := labels(t, s.Objects(serial))["old-writer"]; !ok {
		t.Error("object of an older writer hidden by the index")
	}
}

// A writer killed after announcing its change: the index is not trusted.
func TestIndexIgnoredAfterAKilledWriter(t *testing.T) {
	s, serial := indexStore(t, 100)
	o := s.Objects(serial)
	g, err := o.openGen(false)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = g.f.Write([]byte{0})
	g.close()
	r := s.Objects(serial)
	if got := labels(t, r); len(got) != 100 {
		t.Errorf("%d objects", len(got))
	}
	if r.exact && r.filesRead == 0 && r.indexGen == r.gen.gen {
		t.Error("index trusted after a generation it does not know")
	}
}

func TestCorruptOrTruncatedIndexIsIgnoredAndRebuilt(t *testing.T) {
	for name, damage := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
		"flipped":   func(b []byte) []byte { b[len(b)/3] ^= 0x40; return b },
		"empty":     func([]byte) []byte { return nil },
		"garbage":   func(b []byte) []byte { return bytes.Repeat([]byte{0xff}, len(b)) },
	} {
		t.Run(name, func(t *testing.T) {
			s, serial := indexStore(t, 100)
			path := filepath.Join(s.tokenDir(serial), indexName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			o := s.Objects(serial)
			if got := labels(t, o); len(got) != 100 || got[obj(42, "").UID] != "v42" {
				t.Fatalf("%d objects", len(got))
			}
			if o.filesRead != 100 {
				t.Errorf("%d files read", o.filesRead)
			}
			// Rebuilt: the next reader reads it alone.
			o2 := s.Objects(serial)
			if got := labels(t, o2); len(got) != 100 || o2.filesRead != 0 {
				t.Errorf("after rebuild: %d objects, %d files read", len(got), o2.filesRead)
			}
		})
	}
}

// A process's own changes keep its view exact: no rescan of the
// directory, and its index at Flush is current.
func TestOwnChangesKeepTheIndexCurrent(t *testing.T) {
	s, serial := indexStore(t, 100)
	o := s.Objects(serial)
	labels(t, o)
	if err := o.Put(obj(500, "mine")); err != nil {
		t.Fatal(err)
	}
	if err := o.Delete(obj(0, "").UID); err != nil {
		t.Fatal(err)
	}
	if _, changed, _ := o.Sync(); changed {
		t.Error("own changes reported as another's")
	}
	if o.filesRead != 0 {
		t.Errorf("%d files read after own changes", o.filesRead)
	}
	o.Flush()
	r := s.Objects(serial)
	got := labels(t, r)
	if r.filesRead != 0 || len(got) != 100 || got[obj(500, "").UID] != "mine500" {
		t.Errorf("after flush: %d objects, %d files read", len(got), r.filesRead)
	}
	if _, ok := got[obj(0, "").UID]; ok {
		t.Error("deleted object in the index")
	}
}

func TestClearAllRemovesTheIndex(t *testing.T) {
	s, serial := indexStore(t, 100)
	o := s.Objects(serial)
	if err := o.ClearAll(); err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.Objects(serial).Sync()
	if err != nil || len(recs) != 0 {
		t.Errorf("%d objects after ClearAll, %v", len(recs), err)
	}
}

// Writers and readers (each its own Objects, as separate processes would
// be) at once, readers flushing indexes as they go: a fresh reader then
// sees exactly the object files, whatever index was left.
func TestIndexUnderConcurrentWritersAndReaders(t *testing.T) {
	s, serial := indexStore(t, 80)
	done := make(chan struct{})
	errs := make(chan error, 8)
	for w := range 3 {
		go func() {
			o := s.Objects(serial)
			for i := range 60 {
				id := 1000 + w*100 + i
				if err := o.Put(obj(id, "w")); err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					if err := o.Delete(obj(w*20+i/3, "").UID); err != nil {
						errs <- err
						return
					}
				}
				if i%10 == 0 {
					o.Flush()
				}
			}
			errs <- nil
		}()
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				o := s.Objects(serial)
				_, _, _ = o.Sync()
				o.wrote = true // flush what it saw, as a writer would
				o.Flush()
			}
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	readers.Wait()
	ents, _ := os.ReadDir(filepath.Join(s.tokenDir(serial), "objects"))
	want := map[string]bool{}
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".obj" {
			want[e.Name()[:len(e.Name())-4]] = true
		}
	}
	for range 2 { // with whatever index was left, and after a rebuild
		got := labels(t, s.Objects(serial))
		if len(got) != len(want) {
			t.Errorf("%d objects seen, %d on disk", len(got), len(want))
		}
		for uid := range want {
			if _, ok := got[uid]; !ok {
				t.Errorf("object %s hidden", uid)
			}
		}
		s.Objects(serial).Flush()
	}
}
