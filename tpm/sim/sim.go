// Package sim is the TPM simulator: the Microsoft reference TPM
// (go-tpm-tools' simulator, C code linked with OpenSSL's libcrypto) with
// hierarchy seeds kept in the store, so keys made on it load again in
// another process, and a lockout counter that outlives the process.
//
// It gives no hardware protection and is for demos and CI. It is a
// package of its own so that only the programs that choose to carry it do:
// the tpm11 command (whose `tpm11 simulator` serves it on a socket) and
// tests. The PKCS#11 module does not import it, so the library an
// application loads links no libcrypto; it reaches a served simulator
// through the socket backend (simulator:unix:PATH). Importing the package
// also makes the "simulator" backend of package tpm open one in this
// process.
package sim

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
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm11/tpm11/internal/atomicfile"
	"github.com/tpm11/tpm11/tpm"
)

// simOpen guards the process-wide simulator: a second simulator.Get before
// Close blocks forever, so a second open is refused instead.
var simOpen sync.Mutex // a leaf (docs/design.md "Locks")
var simInUse bool

func init() { tpm.RegisterSimulator(Open) }

// Open starts the simulator in this process from the seed kept in stateDir
// (made there the first time) and puts back the lockout state kept beside
// it. Only one can be open in a process at a time.
func Open(stateDir string) (transport.TPM, func() error, error) {
	rwc, err := openSimulator(stateDir)
	if err != nil {
		return nil, nil, err
	}
	t := transport.FromReadWriteCloser(rwc)
	tr, err := keepDA(t, stateDir)
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("simulator lockout state: %w", err)
	}
	return tr, t.Close, nil
}

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
	b, err := atomicfile.Read(path, 64)
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
	b, err = atomicfile.Read(path, 64)
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("read simulator seed: %v", err)
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}
