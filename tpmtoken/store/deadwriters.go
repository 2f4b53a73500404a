package store

import (
	"os"
	"path/filepath"

	"github.com/tpm11/tpm11/internal/atomicfile"
)

// recover cleans up after writers that were killed: in the store's root
// (the simulator's seed), each token's directory (its record) and its
// results of detached operations, a temporary file whose writer is gone is
// removed and a committed multi-file write is completed. Object
// directories, which may be large, are done on their first read
// (Objects.Sync), which lists them anyway. Live writers' files are left
// alone (they hold a lock on them); errors are left for the writes and
// reads that follow to meet.
func (s *Store) recover() {
	_, _ = atomicfile.Recover(s.Root)
	tokens := filepath.Join(s.Root, "tokens")
	_, _ = atomicfile.Recover(tokens)
	ents, err := os.ReadDir(tokens)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			dir := filepath.Join(tokens, e.Name())
			_, _ = atomicfile.Recover(dir)
			_, _ = atomicfile.Recover(filepath.Join(dir, "async"))
		}
	}
}
