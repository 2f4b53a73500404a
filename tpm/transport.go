package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// Device is an open TPM and what the token must say about it.
type Device struct {
	transport.TPM
	Close func() error
	// Simulated is true when the TPM gives no hardware protection.
	Simulated bool
	// Spec is the backend specification it was opened from.
	Spec string
	// Release, if not nil, disconnects from a TPM that serves one client at
	// a time (swtpm), so other processes can reach it; the next command
	// reconnects.
	Release func() error
	// Hardware is a real TPM: a CreatePrimary costs tens of milliseconds, so
	// a persistent SRK is worth looking for.
	Hardware bool
	// DefaultSlots is how many transient objects may be loaded at once
	// before the Engine must swap; a kernel resource manager virtualizes them.
	ObjectSlots int
}

// ErrNoSimulator is returned when the simulator was left out of the build.
var ErrNoSimulator = errors.New("this build has no TPM simulator (built with tag nosimulator)")

// simulatorOpener is set by sim.go when the simulator is built in.
var simulatorOpener func(stateDir string) (io.ReadWriteCloser, error)

// Open opens the backend named by spec:
//
//	device:/dev/tpmrm0 | swtpm:unix:PATH | swtpm:tcp:HOST:PORT | simulator
//
// stateDir is where the simulator keeps its seed.
func Open(spec, stateDir string) (*Device, error) {
	kind, rest, _ := strings.Cut(spec, ":")
	switch kind {
	case "device":
		path := rest
		if path == "" {
			path = "/dev/tpmrm0"
		}
		t, err := linuxtpm.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		slots := 3
		if strings.Contains(path, "tpmrm") {
			slots = 64
		}
		return &Device{TPM: Retrying(t), Close: t.Close, Spec: spec, ObjectSlots: slots, Hardware: true}, nil
	case "swtpm":
		network, addr, ok := strings.Cut(rest, ":")
		if !ok || (network != "unix" && network != "tcp") {
			return nil, fmt.Errorf("bad swtpm spec %q: want swtpm:unix:PATH or swtpm:tcp:HOST:PORT", spec)
		}
		s := &Stream{dial: func() (net.Conn, error) { return net.DialTimeout(network, addr, 5*time.Second) }}
		// Fail at open, not at the first command, when nothing listens.
		if err := s.connect(); err != nil {
			return nil, err
		}
		return &Device{TPM: Retrying(s), Close: s.Close, Release: s.Close, Spec: spec, ObjectSlots: 3}, nil
	case "simulator":
		if simulatorOpener == nil {
			return nil, ErrNoSimulator
		}
		rwc, err := simulatorOpener(stateDir)
		if err != nil {
			return nil, err
		}
		t := transport.FromReadWriteCloser(rwc)
		return &Device{TPM: Retrying(t), Close: t.Close, Simulated: true, Spec: spec, ObjectSlots: 3}, nil
	}
	return nil, fmt.Errorf("unknown TPM backend %q", spec)
}

// DefaultSpec is the device when one is present, else the simulator.
func DefaultSpec() string {
	if _, err := os.Stat("/dev/tpmrm0"); err == nil {
		return "device:/dev/tpmrm0"
	}
	return "simulator"
}

// Stream is a TPM reached over one persistent byte stream (swtpm's socket).
// go-tpm's own transports either reconnect per command or read a response
// with a single Read; this one keeps the connection and reads exactly one
// response frame. A broken connection is redialled on the next command.
type Stream struct {
	mu   sync.Mutex
	dial func() (net.Conn, error)
	conn net.Conn
}

// NewStream wraps an established connection (e.g. one end of a socketpair).
func NewStream(c net.Conn) *Stream {
	return &Stream{conn: c, dial: func() (net.Conn, error) { return nil, errors.New("connection closed") }}
}

// ConnectWait bounds how long a connection waits for a swtpm busy with
// another process (it serves one at a time; its listen queue is short).
var ConnectWait = 30 * time.Second

func (s *Stream) connect() error {
	deadline := time.Now().Add(ConnectWait)
	delay := time.Millisecond
	for {
		c, err := s.dial()
		if err == nil {
			s.conn = c
			return nil
		}
		if !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return fmt.Errorf("connect to TPM: %w", err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// ResponseTimeout bounds one command so a dead TPM never hangs the host.
// RSA key generation on swtpm has been seen to take 450 ms; leave room.
var ResponseTimeout = 60 * time.Second

// Send implements transport.TPM.
func (s *Stream) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		if err := s.connect(); err != nil {
			return nil, err
		}
	}
	rsp, err := s.roundTrip(cmd)
	if err != nil {
		s.conn.Close()
		s.conn = nil
	}
	return rsp, err
}

func (s *Stream) roundTrip(cmd []byte) ([]byte, error) {
	_ = s.conn.SetDeadline(time.Now().Add(ResponseTimeout))
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("write to TPM: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("read TPM response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<20 {
		return nil, fmt.Errorf("bad TPM response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read TPM response body: %w", err)
	}
	return rsp, nil
}

// Close closes the connection.
func (s *Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
