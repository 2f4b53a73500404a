package store

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tpm11/tpm11/internal/atomicfile"
)

// Backups: a token's directory as a tar stream. The copy is consistent
// while other processes use the token: it is taken holding the token
// record's lock (UpdateToken's) and, exclusively, the objects generation
// lock every object writer holds shared while it changes the directory
// (index.go), in that order, so no record or object change is half done
// in it. Writers wait for the copy (a few milliseconds per hundred objects).

// maxBackup bounds what Restore reads.
const maxBackup = 1 << 30

// Backup writes token serial's directory to w as a tar stream.
func (s *Store) Backup(serial string, w io.Writer) error {
	dir := s.tokenDir(serial)
	lock, err := atomicfile.Open(filepath.Join(dir, "lock"), syscall.O_CREAT|syscall.O_RDWR, s.filePerm())
	if err != nil {
		return writeErr(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	g, err := s.Objects(serial).openGen(true)
	if err != nil {
		return err
	}
	defer g.close()
	if err := g.flock(syscall.LOCK_EX); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		// The lock, and the index and its generation (a cache, rebuilt
		// from the object files), are not part of a backup.
		if rel == "." || rel == "lock" || rel == "objects.idx" || rel == genName || !(fi.IsDir() || fi.Mode().IsRegular()) || strings.Contains(filepath.Base(p), ".tmp") {
			return nil
		}
		h := &tar.Header{Name: path.Join(serial, filepath.ToSlash(rel)), Mode: 0o600, ModTime: fi.ModTime()}
		if fi.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o700
			return tw.WriteHeader(h)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Typeflag, h.Size = tar.TypeReg, int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ReadBackup reads a backup: its token record and its files by name
// (relative to the token directory).
func ReadBackup(r io.Reader) (*Token, map[string][]byte, error) {
	tr := tar.NewReader(io.LimitReader(r, maxBackup))
	files := map[string][]byte{}
	serial := ""
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("not a tpm11 backup: %v", err)
		}
		name := path.Clean(h.Name)
		first, rel, _ := strings.Cut(name, "/")
		if serial == "" {
			serial = first
		}
		if first != serial || strings.HasPrefix(name, "/") || strings.Contains(name, "..") || !validSerial(serial) {
			return nil, nil, fmt.Errorf("not a tpm11 backup: unexpected entry %q", h.Name)
		}
		if h.Typeflag != tar.TypeReg || rel == "" {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxObject+1))
		if err != nil || len(b) > maxObject {
			return nil, nil, fmt.Errorf("not a tpm11 backup: entry %q", h.Name)
		}
		files[rel] = b
	}
	var t Token
	if err := json.Unmarshal(files["token.json"], &t); err != nil || t.Serial != serial {
		return nil, nil, errors.New("not a tpm11 backup: no token record")
	}
	return &t, files, nil
}

func validSerial(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Restore writes a backup's files as token t.Serial, which must not exist.
func (s *Store) Restore(t *Token, files map[string][]byte) error {
	if _, err := os.Stat(s.tokenDir(t.Serial)); err == nil {
		return fmt.Errorf("token serial %s exists in this store: delete it first (tpm11 delete-token) to restore it", t.Serial)
	}
	if err := s.mkdir(s.tokensDir(), s.dirPerm(true)); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	tmp := s.tokenDir(t.Serial) + ".restore"
	_ = os.RemoveAll(tmp)
	if err := s.mkdir(tmp, s.dirPerm(false)); err != nil {
		return err
	}
	if err := s.mkdir(filepath.Join(tmp, "objects"), s.dirPerm(false)); err != nil {
		return err
	}
	for rel, b := range files {
		if strings.Count(rel, "/") > 1 || (strings.Contains(rel, "/") && !strings.HasPrefix(rel, "objects/")) {
			continue
		}
		if err := atomicfile.WritePerm(filepath.Join(tmp, filepath.FromSlash(rel)), bytes.Clone(b), s.filePerm()); err != nil {
			_ = os.RemoveAll(tmp)
			return writeErr(err)
		}
	}
	if err := os.Rename(tmp, s.tokenDir(t.Serial)); err != nil {
		_ = os.RemoveAll(tmp)
		return writeErr(err)
	}
	return nil
}
