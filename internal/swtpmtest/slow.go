package swtpmtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpm11/tpm11/tpm"
)

// SlowRelay is a slow TPM for tests: a unix socket in front of a swtpm
// socket that holds every command for Delay before passing it on, as a
// TPM chip's latency would. The sleep is the point (latency injected on
// purpose, not synchronisation): it makes operations on async sessions
// pend (CKR_PENDING) and slow steps show progress, with nothing in the
// module itself that a test switches on.
//
// Each connection to the relay is one connection to swtpm, opened when the
// client connects and closed when it closes, so swtpm's one-client-at-a-time
// rule and the module's hand-over of an idle TPM work through it unchanged.
type SlowRelay struct {
	// Spec is the backend spec of the relay: swtpm:unix:PATH.
	Spec  string
	Delay time.Duration
	// HoldDir, if set, makes the relay a TPM that goes silent on demand:
	// while HoldDir/hold exists, a command that arrives is not passed on
	// and not answered. The relay then creates HoldDir/holding, and later
	// HoldDir/abandoned if the client closes the connection while the
	// command is held, or HoldDir/answered once hold is removed and the
	// command has been passed on and answered. A test reads these files
	// to know what the TPM side saw, in order, without a clock.
	HoldDir string

	ln       net.Listener
	upstream string
	network  string // of upstream: unix, or tcp (fwtpm_server)
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
	closed   bool
}

// NewSlowRelay listens on path and relays to the swtpm socket named by
// upstream (swtpm:unix:PATH, or swtpm:tcp:HOST:PORT), each command Delay late.
func NewSlowRelay(upstream, path string, delay time.Duration) (*SlowRelay, error) {
	network := "unix"
	up, ok := strings.CutPrefix(upstream, "swtpm:unix:")
	if !ok {
		network = "tcp"
		up, ok = strings.CutPrefix(upstream, "swtpm:tcp:")
	}
	if !ok {
		return nil, fmt.Errorf("slow relay: upstream %q is not swtpm:unix:PATH or swtpm:tcp:HOST:PORT", upstream)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	r := &SlowRelay{Spec: "swtpm:unix:" + path, Delay: delay, ln: ln, upstream: up, network: network, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Slow starts a SlowRelay in front of spec for the test's life and returns
// the relay's spec.
func Slow(t testing.TB, spec string, delay time.Duration) string {
	t.Helper()
	r, err := NewSlowRelay(spec, filepath.Join(t.TempDir(), "slow.sock"), delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r.Spec
}

// Close stops listening and cuts every relayed connection.
func (r *SlowRelay) Close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.ln.Close()
	r.wg.Wait()
}

// track records c as open, or reports false once the relay is closed.
func (r *SlowRelay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	for _, c := range cs {
		r.conns[c] = true
	}
	return true
}

func (r *SlowRelay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	for _, c := range cs {
		delete(r.conns, c)
		c.Close()
	}
	r.mu.Unlock()
}

func (r *SlowRelay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serve(c)
		}()
	}
}

// serve relays one client connection: command by command, each after the
// delay; any error (either side closed) ends both connections.
func (r *SlowRelay) serve(c net.Conn) {
	up, err := net.Dial(r.network, r.upstream)
	if err != nil {
		c.Close()
		return
	}
	if !r.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	defer r.untrack(c, up)
	for {
		cmd, err := readMessage(c)
		if err != nil {
			return
		}
		time.Sleep(r.Delay) // the injected latency (see SlowRelay)
		held, ok := r.hold(c)
		if !ok {
			return
		}
		if _, err := up.Write(cmd); err != nil {
			return
		}
		rsp, err := readMessage(up)
		if err != nil {
			return
		}
		if _, err := c.Write(rsp); err != nil {
			return
		}
		if held {
			mark(r.HoldDir, "answered")
		}
	}
}

// hold keeps a command while HoldDir/hold exists (see HoldDir): held says
// it did, ok is false if the client closed the connection meanwhile.
func (r *SlowRelay) hold(c net.Conn) (held, ok bool) {
	if r.HoldDir == "" || !exists(filepath.Join(r.HoldDir, "hold")) {
		return false, true
	}
	mark(r.HoldDir, "holding")
	one := make([]byte, 1)
	for exists(filepath.Join(r.HoldDir, "hold")) {
		// A TPM has nothing to read from its client while it works:
		// end of file here is the client's close. Polled (this is the
		// fake TPM, not a test's synchronisation).
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if _, err := c.Read(one); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			mark(r.HoldDir, "abandoned")
			return true, false
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return true, true
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func mark(dir, name string) { _ = os.WriteFile(filepath.Join(dir, name), nil, 0o644) }

// readMessage reads one TPM command or response: a 10-byte header whose
// bytes 2..6 are the whole message's size, then the rest.
func readMessage(c io.Reader) ([]byte, error) {
	hdr := make([]byte, tpm.HeaderSize)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	h, _ := tpm.CommandHeader(hdr) // a response's header is laid out alike
	size := h.Length
	if size < tpm.HeaderSize || size > 1<<20 {
		return nil, fmt.Errorf("bad TPM message size %d", size)
	}
	msg := make([]byte, size)
	copy(msg, hdr)
	if _, err := io.ReadFull(c, msg[tpm.HeaderSize:]); err != nil {
		return nil, err
	}
	return msg, nil
}
