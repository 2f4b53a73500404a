package tpm

import (
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
	// Abort, if not nil, gives up on the TPM for good without waiting for
	// it (see Stream.Abort); safe from any goroutine, while a command is in
	// flight. A library that is closing uses it; nothing else.
	Abort func()

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

// ErrNoSimulator is returned for the "simulator" backend in a program
// that carries no simulator: the PKCS#11 module never does.
var ErrNoSimulator = errors.New("no TPM simulator in this program: serve one with `tpm11 simulator --listen unix:PATH` " +
	"and choose simulator:unix:PATH")

// inProcess opens a simulator in this process; set by package sim, which
// the tpm11 command and tests import and the module does not (it would
// link the simulator's C code and libcrypto into every application).
var inProcess func(stateDir string) (transport.TPM, func() error, error)

// RegisterSimulator makes the "simulator" backend open a simulator in
// this process with open (package sim calls it when imported).
func RegisterSimulator(open func(stateDir string) (t transport.TPM, close func() error, err error)) {
	inProcess = open
}

// Open opens the backend named by spec with default deadlines; stateDir is
// where the simulator keeps its seed. See OpenWith.
func Open(spec, stateDir string) (*Device, error) {
	return OpenWith(spec, Options{StateDir: stateDir})
}

// OpenWith opens the backend named by spec:
//
//	device:/dev/tpmrm0 | swtpm:unix:PATH | swtpm:tcp:HOST:PORT |
//	simulator:unix:PATH | simulator:tcp:HOST:PORT | simulator
//
// A device is opened at once (a missing one is an error); a swtpm is
// connected on the first command, and again after any failure, so a TPM
// that is down now or restarts later is picked up when it answers. A
// simulator:ADDRESS is a simulator served by `tpm11 simulator` (package
// sim), reached as a swtpm is and taken for what it is (Simulated);
// "simulator" alone opens one in this process, when the program carries
// one (ErrNoSimulator otherwise).
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
		return watched(&Device{Close: s.Close, Abort: s.Abort, Spec: spec, ObjectSlots: slots, Hardware: true, Deadlines: dl}, s), nil
	case "swtpm":
		return dialed(spec, rest, dl, false)
	case "simulator":
		if rest != "" {
			return dialed(spec, rest, dl, true)
		}
		if inProcess == nil {
			return nil, ErrNoSimulator
		}
		t, closeSim, err := inProcess(o.StateDir)
		if err != nil {
			return nil, err
		}
		return watched(&Device{Close: closeSim, Simulated: true, Spec: spec, ObjectSlots: 3, Deadlines: dl}, t), nil
	case "":
		return nil, ErrNoTPM
	}
	return nil, fmt.Errorf("unknown TPM backend %q", spec)
}

// dialed is a TPM that serves one client at a time on a socket (swtpm, or
// a served simulator), addr being unix:PATH or tcp:HOST:PORT.
func dialed(spec, addr string, dl Deadlines, simulated bool) (*Device, error) {
	network, addr, ok := strings.Cut(addr, ":")
	if !ok || (network != "unix" && network != "tcp") {
		kind, _, _ := strings.Cut(spec, ":")
		return nil, fmt.Errorf("bad %s spec %q: want %s:unix:PATH or %s:tcp:HOST:PORT", kind, spec, kind, kind)
	}
	s := &Stream{deadlines: dl, dial: func(deadline time.Time) (conn, error) { return dialRaw(network, addr, deadline) }}
	beside := ""
	if network == "unix" {
		beside = addr
	}
	s.turns = newTurns(network+":"+addr, beside, isPeer(network, addr))
	return watched(&Device{Close: s.Close, Release: s.Close, Abort: s.Abort, Spec: spec, ObjectSlots: 3, Deadlines: dl, stream: s, Simulated: simulated}, s), nil
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
	typical   atomic.Int64 // nanoseconds, see Device.Typical
}

func (w *watch) Send(cmd []byte) ([]byte, error) {
	limit := w.deadlines.For(cmd)
	w.limit.Store(int64(limit))
	start := time.Now()
	w.since.Store(start.UnixNano())
	defer w.since.Store(0)
	rsp, err := w.t.Send(cmd)
	if err == nil && limit == w.deadlines.orDefault().Command {
		// A moving average of how long answers take (key generation
		// aside), 1/8 weight to the newest; read and written without a
		// lock (an update lost to a race changes nothing that matters).
		took := int64(time.Since(start))
		avg := w.typical.Load()
		if avg == 0 {
			avg = took
		}
		w.typical.Store(avg + (took-avg)/8)
	}
	return rsp, err
}

// Typical is how long the TPM typically takes to answer a command that is
// not key generation (a moving average; 0 before the first answer).
func (d *Device) Typical() time.Duration {
	if d.watch == nil {
		return 0
	}
	return time.Duration(d.watch.typical.Load())
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
	"(device:PATH, swtpm:unix:PATH, swtpm:tcp:HOST:PORT, or simulator:unix:PATH for a software TPM with no hardware protection)")

// DefaultSpec is the kernel's resource-managed TPM device when there is
// one, else "" (no TPM): the simulator is never chosen by default, since
// it would offer software keys to every program that loads the module
// (p11-kit lists it to all of them). It is used when chosen (TPM11_TPM or
// the config file's tpm = simulator:unix:PATH).
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

	// Abort's state. cmu, a leaf taken after mu, guards the connection
	// while it is replaced or closed, so that Abort, which runs while
	// another goroutine holds mu across a command, never touches a
	// descriptor that was closed (and maybe reused) under it.
	cmu     sync.Mutex
	aborted atomic.Bool
	abortCh chan struct{} // closed by Abort
	once    sync.Once
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
		s.cmu.Lock()
		s.conn.Close()
		s.conn = nil
		s.cmu.Unlock()
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
		// It fails only after a key generation's deadline without the
		// queue moving.
		if err := s.turns.wait(s.deadlines.KeyGen, s.aborted.Load); err != nil {
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
	if rc, ok := s.conn.(*rawConn); ok && s.turns != nil {
		s.turns.connected(rc.fd)
	}
	return nil
}

func (s *Stream) dial1(deadline time.Time) error {
	delay := time.Millisecond
	for {
		if s.aborted.Load() {
			return transportError("connect", ErrAborted)
		}
		c, err := s.dial(deadline)
		if err == nil {
			s.cmu.Lock()
			s.conn = c
			s.cmu.Unlock()
			if s.aborted.Load() {
				// Abort came between the dial and the connection's
				// being seen: it is given up here instead.
				s.drop()
				return transportError("connect", ErrAborted)
			}
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
	if s.aborted.Load() {
		return nil, transportError("send", ErrAborted)
	}
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
		if errors.Is(err, errUnsent) {
			// The connection was closed under us (a waiting process
			// took it while we were stopped: turns.go) before any of
			// the command went: nothing reached the TPM, queue again.
			if err := s.connect(time.Now().Add(s.deadlines.Command)); err != nil {
				return nil, err
			}
			s.since = time.Now()
			rsp, err = s.roundTrip(s.conn, cmd, time.Now().Add(s.deadlines.For(cmd)))
			if err != nil {
				s.drop()
			}
		}
	}
	return rsp, err
}

// errUnsent marks a write that failed before any of the command was sent
// because the connection was closed (EPIPE, ECONNRESET).
var errUnsent = errors.New("connection closed before the command was sent")

func (s *Stream) roundTrip(c conn, cmd []byte, deadline time.Time) ([]byte, error) {
	if err := c.SetDeadline(deadline); err != nil {
		if errors.Is(err, os.ErrNoDeadline) {
			return s.unpollable(c, cmd, deadline)
		}
		return nil, transportError("write", err)
	}
	if n, err := c.Write(cmd); err != nil {
		if n == 0 && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
			err = fmt.Errorf("%w: %w", errUnsent, err)
		}
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

// checkHeader returns the size a response header gives (ResponseSize),
// or a TransportError: a TPM that answers garbage is not a TPM.
func checkHeader(hdr []byte) (int, error) {
	size, err := ResponseSize(hdr)
	if err != nil {
		return 0, transportError("response", err)
	}
	return size, nil
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
	case <-s.aborts():
		return nil, transportError("read", ErrAborted)
	}
}

// ErrAborted is the error of a command given up by Abort, and of every
// command after it.
var ErrAborted = errors.New("TPM connection aborted (the library is closing)")

func (s *Stream) aborts() chan struct{} {
	s.once.Do(func() { s.abortCh = make(chan struct{}) })
	return s.abortCh
}

// Abort gives up on the TPM for good, from any goroutine, without waiting
// for it: a command in flight returns at once with ErrAborted (its
// connection is shut down, so a read blocked on a TPM that never answers
// returns), as does one waiting for its turn or to connect, and every
// later one. What the TPM does with a command it already has is its own
// affair; nothing of this process waits for it.
func (s *Stream) Abort() {
	if s.aborted.Swap(true) {
		return
	}
	close(s.aborts())
	s.cmu.Lock()
	defer s.cmu.Unlock()
	switch c := s.conn.(type) {
	case nil:
	case interface{ shutdown() }: // rawConn
		c.shutdown()
	default:
		// An *os.File (a device) or a net.Conn: a deadline in the past
		// wakes a blocked read, from any goroutine.
		_ = c.SetDeadline(time.Unix(1, 0))
	}
}

// Close closes the connection (and gives the turn back).
func (s *Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
	return nil
}
