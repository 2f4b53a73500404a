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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
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
	// ObjectSlots is how many transient objects may be loaded at once
	// before the Engine must swap; a kernel resource manager virtualizes them.
	ObjectSlots int
	// Deadlines are the per-command deadlines in force.
	Deadlines Deadlines

	watch  *watch
	stream *Stream
}

// Contended reports whether other processes wait for this TPM (one that
// serves one client at a time): the holder should hand it over soon.
func (d *Device) Contended() bool {
	return d.stream != nil && d.stream.contended()
}

// Held is how long this process has held its connection to a TPM that
// serves one client at a time (0 when it has none).
func (d *Device) Held() time.Duration {
	if d.stream == nil {
		return 0
	}
	return d.stream.held()
}

// Busy reports the command the TPM is working on, if any: how long ago it
// was sent and how long it may take (its deadline). Safe from any goroutine.
func (d *Device) Busy() (elapsed, limit time.Duration, busy bool) {
	if d.watch == nil {
		return 0, 0, false
	}
	return d.watch.busy()
}

// Options are how Open opens a backend.
type Options struct {
	// StateDir is where the simulator keeps its seed.
	StateDir string
	// Deadlines bound each command (zero fields: DefaultDeadlines).
	Deadlines Deadlines
}

// ErrNoSimulator is returned when the simulator was left out of the build.
var ErrNoSimulator = errors.New("this build has no TPM simulator (built with tag nosimulator)")

// simulatorOpener and simulatorKeepDA are set by sim.go when the
// simulator is built in.
var (
	simulatorOpener func(stateDir string) (io.ReadWriteCloser, error)
	simulatorKeepDA func(t transport.TPM, stateDir string) (transport.TPM, error)
)

// Open opens the backend named by spec with default deadlines; stateDir is
// where the simulator keeps its seed. See OpenWith.
func Open(spec, stateDir string) (*Device, error) {
	return OpenWith(spec, Options{StateDir: stateDir})
}

// OpenWith opens the backend named by spec:
//
//	device:/dev/tpmrm0 | swtpm:unix:PATH | swtpm:tcp:HOST:PORT | simulator
//
// A device is opened at once (a missing one is an error); a swtpm is
// connected on the first command, and again after any failure, so a TPM
// that is down now or restarts later is picked up when it answers.
func OpenWith(spec string, o Options) (*Device, error) {
	dl := o.Deadlines.orDefault()
	kind, rest, _ := strings.Cut(spec, ":")
	switch kind {
	case "device":
		path := rest
		if path == "" {
			path = "/dev/tpmrm0"
		}
		s, err := openDevice(path)
		if err != nil {
			return nil, err
		}
		s.deadlines = dl
		slots := 3
		if strings.Contains(path, "tpmrm") {
			slots = 64
		}
		return watched(&Device{Close: s.Close, Spec: spec, ObjectSlots: slots, Hardware: true, Deadlines: dl}, s), nil
	case "swtpm":
		network, addr, ok := strings.Cut(rest, ":")
		if !ok || (network != "unix" && network != "tcp") {
			return nil, fmt.Errorf("bad swtpm spec %q: want swtpm:unix:PATH or swtpm:tcp:HOST:PORT", spec)
		}
		s := &Stream{deadlines: dl, dial: func(deadline time.Time) (conn, error) {
			d := net.Dialer{Deadline: deadline}
			c, err := d.Dial(network, addr)
			if err != nil {
				return nil, err
			}
			return rawFromNet(c)
		}}
		beside := ""
		if network == "unix" {
			beside = addr
		}
		s.turns = newTurns(network+":"+addr, beside)
		return watched(&Device{Close: s.Close, Release: s.Close, Spec: spec, ObjectSlots: 3, Deadlines: dl, stream: s}, s), nil
	case "simulator":
		if simulatorOpener == nil {
			return nil, ErrNoSimulator
		}
		rwc, err := simulatorOpener(o.StateDir)
		if err != nil {
			return nil, err
		}
		t := transport.FromReadWriteCloser(rwc)
		var tr transport.TPM = t
		if simulatorKeepDA != nil {
			if tr, err = simulatorKeepDA(t, o.StateDir); err != nil {
				t.Close()
				return nil, fmt.Errorf("simulator lockout state: %w", err)
			}
		}
		return watched(&Device{Close: t.Close, Simulated: true, Spec: spec, ObjectSlots: 3, Deadlines: dl}, tr), nil
	case "":
		return nil, ErrNoTPM
	}
	return nil, fmt.Errorf("unknown TPM backend %q", spec)
}

func watched(d *Device, t transport.TPM) *Device {
	d.watch = &watch{t: t, deadlines: d.Deadlines}
	d.TPM = Retrying(d.watch)
	return d
}

// watch records the command in flight, for Device.Busy.
type watch struct {
	t         transport.TPM
	deadlines Deadlines
	since     atomic.Int64 // unix nanoseconds the command was sent; 0 when idle
	limit     atomic.Int64
}

func (w *watch) Send(cmd []byte) ([]byte, error) {
	w.limit.Store(int64(w.deadlines.For(cmd)))
	w.since.Store(time.Now().UnixNano())
	defer w.since.Store(0)
	return w.t.Send(cmd)
}

func (w *watch) busy() (time.Duration, time.Duration, bool) {
	since := w.since.Load()
	if since == 0 {
		return 0, 0, false
	}
	return time.Since(time.Unix(0, since)), time.Duration(w.limit.Load()), true
}

// ErrNoTPM says no TPM was found and none was chosen.
var ErrNoTPM = errors.New("no TPM found (no /dev/tpmrm0): choose one with TPM11_TPM or the config file's tpm key " +
	"(device:PATH, swtpm:unix:PATH, swtpm:tcp:HOST:PORT, or simulator for a software TPM with no hardware protection)")

// DefaultSpec is the kernel's resource-managed TPM device when there is
// one, else "" (no TPM): the simulator is never chosen by default, since
// it would offer software keys to every program that loads the module
// (p11-kit lists it to all of them). It is used when chosen (TPM11_TPM or
// the config file's tpm = simulator).
func DefaultSpec() string {
	if _, err := os.Stat("/dev/tpmrm0"); err == nil {
		return "device:/dev/tpmrm0"
	}
	return ""
}

// conn is one connection to a TPM: a socket, or an open device file.
type conn interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// Stream is a TPM reached over one persistent connection: swtpm's socket
// (a byte stream: a response is read as its header, then the size the
// header gives) or a TPM character device (packets: one write is one
// command, one read one whole response). Every command has a deadline
// (see Deadlines); a connection that fails or times out is closed and the
// next command redials.
type Stream struct {
	mu        sync.Mutex // held across one command, by design: it is the connection's (docs/design.md "Locks")
	dial      func(deadline time.Time) (conn, error)
	conn      conn
	packets   bool
	deadlines Deadlines
	// turns, for a TPM that serves one client at a time, queues this
	// process with the others using it (see turns.go).
	turns *turns
	since time.Time // when conn was made
	rbuf  []byte    // readStream's buffer
}

func (s *Stream) held() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return 0
	}
	return time.Since(s.since)
}

func (s *Stream) contended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.turns != nil && s.turns.waiting()
}

// drop closes the connection and gives the turn back.
func (s *Stream) drop() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.turns != nil {
		s.turns.done()
	}
}

// NewStream wraps an established connection (e.g. one end of a socketpair).
func NewStream(c net.Conn) *Stream {
	return &Stream{conn: c, deadlines: DefaultDeadlines, dial: func(time.Time) (conn, error) {
		return nil, errors.New("connection closed")
	}}
}

func (s *Stream) connect(deadline time.Time) error {
	if s.turns != nil {
		// Waiting behind other live processes is not waiting on a
		// stuck TPM: each holds it for one job at most when others wait.
		if err := s.turns.wait(time.Now().Add(s.deadlines.KeyGen)); err != nil {
			s.turns.done()
			return err
		}
		deadline = time.Now().Add(s.deadlines.Command)
	}
	if err := s.dial1(deadline); err != nil {
		if s.turns != nil {
			s.turns.done()
		}
		return err
	}
	return nil
}

func (s *Stream) dial1(deadline time.Time) error {
	delay := time.Millisecond
	for {
		c, err := s.dial(deadline)
		if err == nil {
			s.conn = c
			return nil
		}
		// A one-client TPM's short listen queue is full: others are
		// waiting for it too. Anything else (nothing listens) fails now.
		if !errors.Is(err, syscall.EAGAIN) || time.Now().Add(delay).After(deadline) {
			return transportError("connect", err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// Send implements transport.TPM.
func (s *Stream) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		if err := s.connect(time.Now().Add(s.deadlines.Command)); err != nil {
			return nil, err
		}
		s.since = time.Now()
	}
	deadline := time.Now().Add(s.deadlines.For(cmd))
	rsp, err := s.roundTrip(s.conn, cmd, deadline)
	if err != nil {
		s.drop()
	}
	return rsp, err
}

func (s *Stream) roundTrip(c conn, cmd []byte, deadline time.Time) ([]byte, error) {
	if err := c.SetDeadline(deadline); err != nil {
		if errors.Is(err, os.ErrNoDeadline) {
			return s.unpollable(c, cmd, deadline)
		}
		return nil, transportError("write", err)
	}
	if _, err := c.Write(cmd); err != nil {
		return nil, transportError("write", err)
	}
	if s.packets {
		return readPacket(c)
	}
	return s.readStream(c)
}

// readStream reads one response from a byte stream: as much as comes in
// one read into a buffer kept for the next, then the rest the header
// says; the response is copied out at its size. Bytes beyond that size
// are not a TPM's (it sends one response per command).
func (s *Stream) readStream(c conn) ([]byte, error) {
	if len(s.rbuf) == 0 {
		s.rbuf = make([]byte, 4096)
	}
	n, size := 0, 0
	for n < 10 || n < size {
		m, err := c.Read(s.rbuf[n:])
		if err != nil {
			return nil, transportError("read", err)
		}
		n += m
		if size == 0 && n >= 10 {
			if size, err = checkHeader(s.rbuf[:n]); err != nil {
				return nil, err
			}
			if size > len(s.rbuf) {
				s.rbuf = append(s.rbuf, make([]byte, size-len(s.rbuf))...)
			}
		}
		if size > 0 && n > size {
			return nil, transportError("response", fmt.Errorf("%d bytes of a response that says it has %d", n, size))
		}
	}
	rsp := append([]byte(nil), s.rbuf[:size]...)
	clear(s.rbuf[:size]) // a decryption's plaintext is not kept beyond its caller's copy
	return rsp, nil
}

// maxResponse is the largest response a TPM sends (TPM2_PT_MAX_RESPONSE_SIZE
// is 4096 on every TPM seen; leave room).
const maxResponse = 1 << 16

// readPacket reads one whole response with one read, as from a TPM device.
func readPacket(c io.Reader) ([]byte, error) {
	buf := make([]byte, maxResponse)
	n, err := c.Read(buf)
	if err != nil {
		return nil, transportError("read", err)
	}
	size, err := checkHeader(buf[:n])
	if err != nil {
		return nil, err
	}
	if size != n {
		return nil, transportError("response", fmt.Errorf("response of %d bytes says it has %d", n, size))
	}
	return buf[:n:n], nil
}

// checkHeader returns the size a response header gives, or an error when
// it is not a TPM response: a TPM that answers garbage is not a TPM.
func checkHeader(hdr []byte) (int, error) {
	if len(hdr) < 10 {
		return 0, transportError("response", fmt.Errorf("short TPM response (%d bytes)", len(hdr)))
	}
	switch tag := binary.BigEndian.Uint16(hdr); tag {
	case 0x8001, 0x8002, 0x00c4: // TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS, TPM 1.2 TPM_TAG_RSP_COMMAND
	default:
		return 0, transportError("response", fmt.Errorf("not a TPM response (tag %#04x)", tag))
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return 0, transportError("response", fmt.Errorf("bad TPM response size %d", size))
	}
	return int(size), nil
}

// unpollable runs a round trip on a file that takes no deadline (a device
// whose driver cannot poll) in a goroutine, and gives up on it at the
// deadline: the caller is freed, the file closed.
func (s *Stream) unpollable(c conn, cmd []byte, deadline time.Time) ([]byte, error) {
	type result struct {
		rsp []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		if _, err := c.Write(cmd); err != nil {
			done <- result{nil, transportError("write", err)}
			return
		}
		rsp, err := readPacket(c)
		done <- result{rsp, err}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case r := <-done:
		return r.rsp, r.err
	case <-timer.C:
		return nil, &TransportError{Op: "read", Timeout: true, Err: os.ErrDeadlineExceeded}
	}
}

// Close closes the connection (and gives the turn back).
func (s *Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
	return nil
}
