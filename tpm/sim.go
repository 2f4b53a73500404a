//go:build !nosimulator

package tpm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/tpm11/tpm11/internal/atomicfile"
)

// simOpen guards the process-wide simulator: a second simulator.Get before
// Close blocks forever, so a second open is refused instead.
var simOpen sync.Mutex // a leaf (docs/design.md "Locks")
var simInUse bool

func init() { simulatorOpener, simulatorKeepDA = openSimulator, keepDA }

type simCloser struct {
	*simulator.Simulator
}

func (s simCloser) Close() error {
	err := s.Simulator.Close()
	simOpen.Lock()
	simInUse = false
	simOpen.Unlock()
	return err
}

// openSimulator starts the Microsoft reference TPM in this process with
// hierarchy seeds derived from a seed kept in stateDir, so the SRK is the same
// in every process and key blobs saved on disk load again. The seed file is
// as secret as the keys: anyone holding it can load them in their own simulator.
func openSimulator(stateDir string) (io.ReadWriteCloser, error) {
	simOpen.Lock()
	defer simOpen.Unlock()
	if simInUse {
		return nil, errors.New("the TPM simulator is already open in this process")
	}
	seed, err := simSeed(stateDir)
	if err != nil {
		return nil, err
	}
	s, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		return nil, fmt.Errorf("start simulator: %w", err)
	}
	simInUse = true
	return simCloser{s}, nil
}

func simSeed(dir string) (int64, error) {
	path := filepath.Join(dir, "simulator-seed")
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 8 {
		return int64(binary.BigEndian.Uint64(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	b = make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	if err := atomicfile.Write(path, b); err != nil {
		return 0, err
	}
	// Another process may have won the race: use what is on disk.
	b, err = os.ReadFile(path)
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("read simulator seed: %v", err)
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}
