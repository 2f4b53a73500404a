package store

import (
	"errors"
	"os"
	"path/filepath"
)

// RemoveToken deletes a token's record and every object it holds. The
// record goes first: Tokens skips a directory without one, so another
// process never sees a half-removed token.
func (s *Store) RemoveToken(serial string) error {
	if serial == "" || filepath.Base(serial) != serial {
		return errors.New("store: bad token serial")
	}
	dir := s.tokenDir(serial)
	if err := os.Remove(filepath.Join(dir, "token.json")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
