package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/tpm11/tpm11/internal/atomicfile"
)

// Uniqueness under concurrency: what one process checks is free and then
// takes (a token's label, a key's ID) must not be taken by another process
// in between. Each is claimed under an exclusive lock every process on the
// store takes for it: labels.lock for labels (PutToken checks a new or
// changed label against every other token's while holding it), a token's
// claim file for what a caller chooses in the token (Claim: the tpm11
// command's free key ID, from the look to the write). A lock file is
// opened read-only, so a user who may not change the token still locks
// it. Lock order: a token's claim file, then its lock file (UpdateToken),
// then labels.lock (PutToken of a new label), then objects.gen (Objects).

// ErrLabelTaken is a token label another token has.
var ErrLabelTaken = errors.New("store: another token has this label")

// lockFile takes an exclusive flock on path (made if missing) and returns
// its release.
func (s *Store) lockFile(path string) (func(), error) {
	f, err := atomicfile.Open(path, syscall.O_RDONLY|syscall.O_CREAT, s.filePerm())
	if err != nil {
		return nil, writeErr(err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Claim runs f holding the token's claim lock: no other process's f on
// the same token runs meanwhile (tpm11 keygen without --id: the free ID is
// looked for and the key written as one step).
func (s *Store) Claim(serial string, f func() error) error {
	unlock, err := s.lockFile(filepath.Join(s.tokenDir(serial), "claim"))
	if err != nil {
		return err
	}
	defer unlock()
	return f()
}

// claimLabel checks, holding labels.lock until the returned release, that
// no token other than t has t's label. A record whose label is the one on
// disk needs no check (nil release).
func (s *Store) claimLabel(t *Token) (func(), error) {
	if old, err := s.Token(t.Serial); err == nil && old.Label == t.Label {
		return nil, nil
	}
	unlock, err := s.lockFile(filepath.Join(s.Root, "labels.lock"))
	if err != nil {
		return nil, err
	}
	ents, err := atomicfile.ReadDir(s.tokensDir())
	if err != nil {
		unlock()
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == t.Serial {
			continue
		}
		if other, err := s.Token(e.Name()); err == nil && other.Label == t.Label {
			unlock()
			return nil, fmt.Errorf("%w: %q (serial %s)", ErrLabelTaken, t.Label, other.Serial)
		}
	}
	return unlock, nil
}
