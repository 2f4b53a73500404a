package store

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tpm11/tpm11/ck"
)

// sharedStore is a store whose root is set-group-ID (perms.go).
func sharedStore(t *testing.T) *Store {
	t.Helper()
	root := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(root, syscall.S_ISGID|0o770); err != nil {
		t.Fatal(err)
	}
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if !s.shared {
		t.Fatal("a set-group-ID root is not taken for shared")
	}
	return s
}

// The store sets the modes of what it writes in a shared store.
func TestSharedStoreModes(t *testing.T) {
	s := sharedStore(t)
	tok := &Token{Serial: "00000000000000aa"}
	if err := s.PutToken(tok); err != nil {
		t.Fatal(err)
	}
	o := s.Objects(tok.Serial)
	if err := o.Put(obj(1, "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateToken(tok.Serial, func(*Token) error { return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{
		s.tokensDir():          sharedTokensDir,
		s.tokenDir(tok.Serial): sharedDir,
		o.dir:                  sharedDir,
		filepath.Join(s.tokenDir(tok.Serial), "token.json"): sharedFile,
		filepath.Join(s.tokenDir(tok.Serial), genName):      sharedFile,
		filepath.Join(s.tokenDir(tok.Serial), "lock"):       sharedFile,
		filepath.Join(o.dir, obj(1, "").UID+".obj"):         sharedFile,
	}
	for p, m := range want {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o7777 != m {
			t.Errorf("%s: mode %o, want %o", p, st.Mode&0o7777, m)
		}
	}
}

// In a shared store, a token's record, objects and index written by
// another user than the token's owner, or writable by the group, or
// naming another token or object, are not used.
func TestSubstitutedFilesAreRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to make files of another user")
	}
	s := sharedStore(t)
	tok := &Token{Serial: "00000000000000aa", Label: "a"}
	other := &Token{Serial: "00000000000000bb", Label: "b"}
	for _, tk := range []*Token{tok, other} {
		if err := s.PutToken(tk); err != nil {
			t.Fatal(err)
		}
	}
	o := s.Objects(tok.Serial)
	if err := o.PutAll(obj(1, "a"), obj(2, "b"), obj(3, "c")); err != nil {
		t.Fatal(err)
	}
	dir := s.tokenDir(tok.Serial)
	// The token belongs to nobody; root's files in it stay trusted.
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(tok.Serial); err != nil {
		t.Fatalf("root's record in nobody's token: %v", err)
	}
	// Another user's object file; one group-writable; one renamed over
	// another's name.
	if err := os.Chown(filepath.Join(o.dir, obj(1, "").UID+".obj"), 12345, 12345); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(o.dir, obj(2, "").UID+".obj"), 0o660); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(o.dir, obj(3, "").UID+".obj"))
	if err := os.WriteFile(filepath.Join(o.dir, obj(4, "").UID+".obj"), b, 0o640); err != nil {
		t.Fatal(err)
	}
	objs, _, err := s.Objects(tok.Serial).Sync()
	if err != nil || len(objs) != 1 || objs[0].UID != obj(3, "").UID {
		t.Errorf("objects: %d, %v; want only the one untouched", len(objs), err)
	}
	// A record of another user; a record of another token.
	if err := os.Chown(filepath.Join(dir, "token.json"), 12345, 12345); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(tok.Serial); !errors.Is(err, ErrUntrusted) {
		t.Errorf("another user's record: %v", err)
	}
	b, _ = os.ReadFile(filepath.Join(s.tokenDir(other.Serial), "token.json"))
	if err := os.WriteFile(filepath.Join(dir, "token.json"), b, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(tok.Serial); !errors.Is(err, ErrUntrusted) {
		t.Errorf("another token's record: %v", err)
	}
	toks, err := s.Tokens()
	if err != nil || len(toks) != 1 || toks[0].Serial != other.Serial {
		t.Errorf("tokens: %v, %v", toks, err)
	}
	// tokens/ replaced by another user's.
	if err := os.Chown(s.tokensDir(), 12345, 12345); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tokens(); !errors.Is(err, ErrUntrusted) {
		t.Errorf("another user's tokens/: %v", err)
	}
}

// A full store is CKR_DEVICE_MEMORY, a read-only one
// CKR_TOKEN_WRITE_PROTECTED (a small tmpfs, remounted read-only).
func TestFullAndReadOnlyStore(t *testing.T) {
	dir := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).Run(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	s, err := Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	tok := &Token{Serial: "00000000000000aa"}
	if err := s.PutToken(tok); err != nil {
		t.Fatal(err)
	}
	o := s.Objects(tok.Serial)
	if err := o.Put(obj(1, "a")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write(make([]byte, 64<<10))
	f.Close()
	big := obj(2, "b")
	big.Sealed = make([]byte, 16<<10)
	if err := o.Put(big); ck.ToRV(err) != ck.CKR_DEVICE_MEMORY {
		t.Errorf("full store: %v (%s), want CKR_DEVICE_MEMORY", err, ck.RVName(ck.ToRV(err)))
	}
	if err := exec.Command("mount", "-o", "remount,ro", dir).Run(); err != nil {
		t.Fatal(err)
	}
	if err := o.Put(obj(3, "c")); ck.ToRV(err) != ck.CKR_TOKEN_WRITE_PROTECTED {
		t.Errorf("read-only store: %v (%s), want CKR_TOKEN_WRITE_PROTECTED", err, ck.RVName(ck.ToRV(err)))
	}
	if err := o.Delete(obj(1, "").UID); ck.ToRV(err) != ck.CKR_TOKEN_WRITE_PROTECTED {
		t.Errorf("delete in a read-only store: %v, want CKR_TOKEN_WRITE_PROTECTED", err)
	}
	if _, err := s.UpdateToken(tok.Serial, func(*Token) error { return nil }); ck.ToRV(err) != ck.CKR_TOKEN_WRITE_PROTECTED {
		t.Errorf("token update in a read-only store: %v, want CKR_TOKEN_WRITE_PROTECTED", err)
	}
}

// Tokens made at once with one label: one is made, the others refused.
func TestOneTokenPerLabelAtOnce(t *testing.T) {
	root := t.TempDir()
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			s, err := Open(root) // a store of its own, as another process has
			if err == nil {
				err = s.PutToken(&Token{Serial: fmt.Sprintf("%016x", i+1), Label: "twin"})
			}
			errs <- err
		}()
	}
	made := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			made++
		case !errors.Is(err, ErrLabelTaken):
			t.Errorf("refused with %v", err)
		}
	}
	s, _ := Open(root)
	toks, _ := s.Tokens()
	if made != 1 || len(toks) != 1 {
		t.Errorf("%d made, %d tokens; want one", made, len(toks))
	}
	// The made token's record is written again (a PIN change) freely.
	if err := s.PutToken(toks[0]); err != nil {
		t.Error(err)
	}
}
