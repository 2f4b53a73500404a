// Package atomicfile writes files crash-safely: one file, or several as
// one step, and cleans up after writers that were killed.
//
// A file is written to a temporary file that has no name while it is
// written (O_TMPFILE: a writer killed then leaves nothing), is locked
// (flock) by its writer from birth until the writer is done, is synced,
// given a temporary name (.tmp-*) and renamed over its target; the
// directory is synced. Several files written as one step (a key pair) get
// their temporary names first, then an intent (.txn-*) listing the renames
// is written (the commit point), then the renames run and the intent goes.
// Recover, run when a store is opened, completes the renames of an intent
// whose writer died and removes temporary files whose writer died: a dead
// writer's lock is gone, a live writer's is not.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Prefixes of the names a writer gives its temporary files and intents.
const (
	TempPrefix   = ".tmp-"
	IntentPrefix = ".txn-"
)

// File is one file of a WriteAll: a name in the directory and its contents.
type File struct {
	Name string
	Data []byte
}

// Write writes data to path so that readers see either the old file or the
// whole new one, never a torn write, even if the process dies. The file is
// 0600: it may hold TPM-wrapped key material.
func Write(path string, data []byte) error {
	return WriteAllPerm(filepath.Dir(path), []File{{filepath.Base(path), data}}, 0o600)
}

// WritePerm is Write of a file with permissions perm (a store shared by a
// group makes its files readable by the group).
func WritePerm(path string, data []byte, perm uint32) error {
	return WriteAllPerm(filepath.Dir(path), []File{{filepath.Base(path), data}}, perm)
}

// WriteAll writes files into dir as one step: after a crash at any point,
// once Recover has run, either all of them have their new contents or none
// has changed. The files are 0600.
func WriteAll(dir string, files []File) error { return WriteAllPerm(dir, files, 0o600) }

// WriteAllPerm is WriteAll of files with permissions perm.
func WriteAllPerm(dir string, files []File, perm uint32) error {
	var temps []*temp
	defer func() {
		for _, t := range temps {
			t.close()
		}
	}()
	for _, f := range files {
		t, err := newTemp(dir, f.Data, perm)
		if err != nil {
			return err
		}
		temps = append(temps, t)
	}
	var intent string
	if len(files) > 1 {
		// The temporary names must be on disk before an intent names them.
		if err := SyncDir(dir); err != nil {
			return err
		}
		var moves [][2]string
		for i, t := range temps {
			moves = append(moves, [2]string{t.name, files[i].Name})
		}
		b, err := json.Marshal(moves)
		if err != nil {
			return err
		}
		it, err := newTemp(dir, b, 0o600)
		if err != nil {
			return err
		}
		intent = IntentPrefix + strings.TrimPrefix(it.name, TempPrefix)
		err = os.Rename(filepath.Join(dir, it.name), filepath.Join(dir, intent))
		it.renamed = err == nil
		it.close()
		if err != nil {
			return err
		}
		if err := SyncDir(dir); err != nil {
			return err
		}
		// Committed: the intent is on disk. From here a temporary file
		// is never removed; what this writer does not rename, Recover does.
		for _, t := range temps {
			t.renamed = true
		}
	}
	for i, t := range temps {
		if err := os.Rename(filepath.Join(dir, t.name), filepath.Join(dir, files[i].Name)); err != nil {
			return err
		}
		t.renamed = true
		if hookAfterRename != nil {
			hookAfterRename(i)
		}
	}
	if err := SyncDir(dir); err != nil {
		return err
	}
	if intent != "" {
		// Done: a leftover intent would name no temporary file and be dropped.
		_ = os.Remove(filepath.Join(dir, intent))
	}
	return nil
}

// temp is a file being written: locked, synced, with a temporary name.
type temp struct {
	f       *os.File
	dir     string
	name    string
	renamed bool
}

func (t *temp) close() {
	if !t.renamed && t.name != "" {
		_ = os.Remove(filepath.Join(t.dir, t.name))
	}
	_ = t.f.Close() // releases the lock
	t.renamed = true
}

func randomName() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return TempPrefix + hex.EncodeToString(b)
}

// newTemp writes data to a new locked, synced file in dir with a
// temporary name.
func newTemp(dir string, data []byte, perm uint32) (*temp, error) {
	if t, err := newAnonymousTemp(dir, data, perm); err == nil {
		return t, nil
	}
	// No O_TMPFILE on this filesystem, or no /proc to name the file by: a
	// named file, locked at once.
	t := &temp{dir: dir, name: randomName()}
	f, err := os.OpenFile(filepath.Join(dir, t.name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	t.f = f
	if err := fill(f, data, perm); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// newAnonymousTemp writes data to a file that has no name until it is
// whole and synced: a writer killed before that leaves nothing.
func newAnonymousTemp(dir string, data []byte, perm uint32) (*temp, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)"))
	if err := fill(f, data, perm); err != nil {
		f.Close()
		return nil, err
	}
	name := randomName()
	proc := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, filepath.Join(dir, name), unix.AT_SYMLINK_FOLLOW); err != nil {
		f.Close()
		return nil, err
	}
	return &temp{f: f, dir: dir, name: name}, nil
}

// fill locks f (for good: until it is closed), sets its permissions and
// writes and syncs data.
func fill(f *os.File, data []byte, perm uint32) error {
	if err := lock(f); err != nil {
		return err
	}
	if err := f.Chmod(os.FileMode(perm)); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

func lock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

// writerGone reports whether the file at path exists and no live writer
// holds it (its lock can be taken). A missing file is not gone: it was
// renamed or removed by someone else.
func writerGone(path string) bool {
	f, err := Open(path, syscall.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	return err == nil
}

// Recover completes or undoes in dir what writers that died left: an
// intent whose writer is gone has its remaining renames done (the step
// was committed); a temporary file whose writer is gone (no intent names
// it) is removed. Files of live writers are left alone. It reports whether
// anything changed. A missing dir is nothing to recover.
func Recover(dir string) (bool, error) {
	ents, err := ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	changed := false
	claimed := map[string]bool{} // temporary files a live writer's intent names
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), IntentPrefix) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := Read(path, maxIntent)
		if err != nil {
			continue // finished meanwhile, or no intent of ours
		}
		var moves [][2]string
		if json.Unmarshal(b, &moves) != nil {
			// Intents are written whole (temporary file, rename): this
			// one is no intent of ours.
			continue
		}
		alive := false
		for _, m := range moves {
			if !safeName(m[0]) || !safeName(m[1]) {
				alive = true // not ours: leave it
				break
			}
			if _, err := os.Stat(filepath.Join(dir, m[0])); err == nil && !writerGone(filepath.Join(dir, m[0])) {
				alive = true
			}
		}
		if alive {
			for _, m := range moves {
				claimed[m[0]] = true
			}
			continue
		}
		for _, m := range moves {
			err := os.Rename(filepath.Join(dir, m[0]), filepath.Join(dir, m[1]))
			if err == nil {
				changed = true
			} else if !errors.Is(err, os.ErrNotExist) {
				return changed, err
			}
		}
		if err := SyncDir(dir); err != nil {
			return changed, err
		}
		if os.Remove(path) == nil {
			changed = true
		}
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, TempPrefix) || claimed[name] {
			continue
		}
		path := filepath.Join(dir, name)
		if writerGone(path) && os.Remove(path) == nil {
			changed = true
		}
	}
	if changed {
		return true, SyncDir(dir)
	}
	return false, nil
}

// maxIntent bounds an intent's size: a few renames of short names.
const maxIntent = 1 << 20

// safeName is a plain file name in the directory itself.
func safeName(n string) bool {
	return n != "" && n != "." && n != ".." && filepath.Base(n) == n
}

// Remove removes path and syncs its directory, so the removal survives a
// crash. A missing file is no error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// hookAfterRename, in tests, runs after each rename of WriteAll.
var hookAfterRename func(i int)

// SyncDir makes dir's entries (creations, renames, removals) durable. A
// variable so tests can watch it.
var SyncDir = func(dir string) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
