package store

import (
	"os"
	"path/filepath"
	"testing"
)

// What killed writers leave (a temporary file nobody holds, a committed
// pair half renamed) is cleaned when the store is opened: the token
// directory at Open, an objects directory at its first read.
func TestOpenCleansDeadWritersLeftovers(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	tok := &Token{Serial: "0011223344556677", Label: "t"}
	if err := s.PutToken(tok); err != nil {
		t.Fatal(err)
	}
	objs := s.Objects(tok.Serial)
	if err := objs.PutAll(&Object{UID: "priv"}, &Object{UID: "pub"}); err != nil {
		t.Fatal(err)
	}
	tokDir := filepath.Join(root, "tokens", tok.Serial)
	objDir := filepath.Join(tokDir, "objects")
	// Leftovers: temporary files of dead writers, and a committed pair
	// whose second rename never happened.
	for _, p := range []string{filepath.Join(root, ".tmp-dead1"), filepath.Join(tokDir, ".tmp-dead2"), filepath.Join(objDir, ".tmp-dead3")} {
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(objDir, ".tmp-half"), []byte(`{"uid":"half-b"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(objDir, "half-a.obj"), []byte(`{"uid":"half-a"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(objDir, ".txn-x"), []byte(`[[".tmp-gone","half-a.obj"],[".tmp-half","half-b.obj"]]`), 0o600); err != nil {
		t.Fatal(err)
	}

	s, err = Open(root)
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.Objects(tok.Serial).Sync()
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	for _, r := range recs {
		all[r.UID] = true
	}
	for _, uid := range []string{"priv", "pub", "half-a", "half-b"} {
		if !all[uid] {
			t.Errorf("object %s missing", uid)
		}
	}
	for _, dir := range []string{root, tokDir, objDir} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if n := e.Name(); n[0] == '.' {
				t.Errorf("left in %s: %s", dir, n)
			}
		}
	}
}
