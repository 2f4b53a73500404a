// Package swtpmtest starts a private swtpm for one test and checks that the
// test left the TPM empty: no transient objects, no sessions.
//
// Start gives a socketpair to `swtpm chardev`: no port, no socket file, no
// shared state, and the TPM dies with the test; the test itself calls
// CheckNoLeaks. Socket runs `swtpm socket` on a unix socket in a temp dir,
// as a user's configuration would name it, waits until it accepts a
// connection and answers a command, and at cleanup, after the test's
// libraries are closed, fails the test if anything was left in the TPM.
package swtpmtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm11/tpm11/tpm"
)

// Start starts swtpm and returns a connected transport that retries
// transient response codes, as every backend the module opens does.
func Start(t testing.TB) transport.TPM {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm not installed")
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := os.NewFile(uintptr(fds[0]), "tpm-client")
	theirs := os.NewFile(uintptr(fds[1]), "tpm-server")
	dir := t.TempDir()
	cmd := exec.Command("swtpm", "chardev", "--tpm2", "--fd", "3",
		"--tpmstate", "dir="+dir, "--flags", "not-need-init,startup-clear")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := tpm.NewStream(conn)
	t.Cleanup(func() {
		s.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return tpm.Retrying(s)
}

// CheckNoLeaks fails t if more than allowed transient objects, or any
// session (HMAC or policy, loaded or context-saved), remain in the TPM.
func CheckNoLeaks(t testing.TB, tr transport.TPM, allowed int) {
	t.Helper()
	if err := Leaks(tr, allowed); err != nil {
		t.Error(err)
	}
}

// Leaks reports, as an error, what the TPM holds beyond allowed transient
// objects: transient object handles, loaded and saved session handles, and
// the TPM's own count of active sessions (loaded plus saved). nil means
// the TPM is clean.
func Leaks(tr transport.TPM, allowed int) error {
	var problems []string
	transients, err := handles(tr, tpm2.TPMHTTransient)
	if err != nil {
		return err
	}
	if len(transients) > allowed {
		problems = append(problems, fmt.Sprintf("%d transient objects left loaded (want at most %d): %s",
			len(transients), allowed, hexHandles(transients)))
	}
	// TPM_HT_LOADED_SESSION (= TPM_HT_HMAC_SESSION) lists every loaded
	// session, HMAC or policy; TPM_HT_SAVED_SESSION (= TPM_HT_POLICY_SESSION)
	// lists sessions whose context was saved: both still take session slots.
	for _, r := range []struct {
		ht   tpm2.TPMHT
		what string
	}{{tpm2.TPMHTHMACSession, "loaded"}, {tpm2.TPMHTPolicySession, "saved"}} {
		hs, err := handles(tr, r.ht)
		if err != nil {
			return err
		}
		if len(hs) > 0 {
			problems = append(problems, fmt.Sprintf("%d %s sessions left: %s", len(hs), r.what, hexHandles(hs)))
		}
	}
	active, err := property(tr, tpm2.TPMPTHRActive)
	if err != nil {
		return err
	}
	if active != 0 {
		problems = append(problems, fmt.Sprintf("the TPM counts %d active sessions", active))
	}
	if problems != nil {
		return errors.New("TPM not left clean: " + strings.Join(problems, "; "))
	}
	return nil
}

func handles(tr transport.TPM, ht tpm2.TPMHT) ([]tpm2.TPMHandle, error) {
	var all []tpm2.TPMHandle
	next := uint32(ht) << 24
	for {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      next,
			PropertyCount: 64,
		}.Execute(tr)
		if err != nil {
			return nil, fmt.Errorf("get handles of type %#02x: %w", ht, err)
		}
		h, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, err
		}
		all = append(all, h.Handle...)
		if !rsp.MoreData || len(h.Handle) == 0 {
			return all, nil
		}
		next = uint32(ht)<<24 | (uint32(h.Handle[len(h.Handle)-1])&0xffffff + 1)
	}
}

func property(tr transport.TPM, pt tpm2.TPMPT) (uint32, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(pt),
		PropertyCount: 1,
	}.Execute(tr)
	if err != nil {
		return 0, fmt.Errorf("get property %#x: %w", pt, err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, err
	}
	for _, p := range props.TPMProperty {
		if p.Property == pt {
			return p.Value, nil
		}
	}
	return 0, fmt.Errorf("TPM did not report property %#x", pt)
}

func hexHandles(hs []tpm2.TPMHandle) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = fmt.Sprintf("%#08x", uint32(h))
	}
	return strings.Join(s, " ")
}

// ReadyWait bounds how long Socket waits for swtpm to accept a connection
// and answer; the leak check at cleanup waits as long for the TPM.
var ReadyWait = 20 * time.Second

var (
	optOutMu sync.Mutex
	optOut   = map[testing.TB]string{}
)

// AllowLeaks turns off the cleanup leak check of the swtpms t started with
// Socket, for a test that leaves state in the TPM on purpose; why is
// logged. Prefer fixing the leak.
func AllowLeaks(t testing.TB, why string) {
	optOutMu.Lock()
	defer optOutMu.Unlock()
	optOut[t] = why
}

// Socket runs a private swtpm on a unix socket in a temp dir, as a user's
// configuration would name it, and returns the backend spec for it. It
// returns once swtpm has accepted a connection and answered a command on
// it (the probe connection is closed again: swtpm serves one at a time),
// and fails the test with swtpm's log if that takes longer than ReadyWait.
//
// At cleanup, after the test's own cleanups and deferred Closes, and before
// swtpm is stopped, it fails the test if the TPM holds any transient object
// or session (see Leaks), unless the test already failed or called
// AllowLeaks.
func Socket(t testing.TB) string {
	t.Helper()
	return NewServer(t).Spec
}

// Server is a private swtpm on a unix socket that a test may kill and
// start again on the same state and socket, as a TPM that restarts.
type Server struct {
	// Spec is the backend spec (swtpm:unix:PATH).
	Spec string
	// Dir holds the TPM's state, its sockets and log.
	Dir string
	// state is the TPM state directory when not Dir (SocketOn).
	state string

	t       testing.TB
	sock    string
	logPath string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// NewServer starts a swtpm as Socket does and returns it.
func NewServer(t testing.TB) *Server {
	t.Helper()
	return NewServerOn(t, "")
}

// SocketOn is Socket on the TPM state in directory state (one that
// Manufacture made).
func SocketOn(t testing.TB, state string) string {
	t.Helper()
	return NewServerOn(t, state).Spec
}

// NewServerOn is NewServer on the TPM state in directory state, or on a
// fresh one in Dir if state is "".
func NewServerOn(t testing.TB, state string) *Server {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm not installed")
	}
	// Cleanups run last in, first out: the leak check registered below
	// runs first, then swtpm is stopped, its directory removed, and the
	// opt-out forgotten.
	t.Cleanup(func() { optOutMu.Lock(); delete(optOut, t); optOutMu.Unlock() })
	dir := t.TempDir()
	s := &Server{t: t, Dir: dir, state: state, sock: filepath.Join(dir, "tpm.sock"), logPath: filepath.Join(dir, "swtpm.log")}
	if s.state == "" {
		s.state = dir
	}
	s.Spec = "swtpm:unix:" + s.sock
	t.Cleanup(s.Kill)
	s.Start()
	t.Cleanup(func() {
		optOutMu.Lock()
		why, skip := optOut[t]
		optOutMu.Unlock()
		switch {
		case skip:
			t.Logf("TPM leak check skipped: %s", why)
		case t.Failed():
			// What a failed test left behind says nothing new.
		default:
			s.mu.Lock()
			exited := s.exited
			s.mu.Unlock()
			if err := probe(s.sock, exited, func(tr transport.TPM) error { return Leaks(tr, 0) }); err != nil {
				t.Errorf("after the test (libraries closed): %v", err)
			}
		}
	})
	return s
}

// Start starts swtpm (again) on the server's state and socket and returns
// once it answers.
func (s *Server) Start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--server", "type=unixio,path="+s.sock,
		"--ctrl", "type=unixio,path="+s.sock+".ctrl", "--tpmstate", "dir="+s.state,
		"--flags", "not-need-init,startup-clear")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	if err := probe(s.sock, exited); err != nil {
		select {
		case <-exited:
			s.mu.Lock()
			err = fmt.Errorf("%w (swtpm exited: %v)", err, s.waitErr)
			s.mu.Unlock()
		default:
		}
		s.t.Fatalf("swtpm on %s not ready: %v\nswtpm log:\n%s", s.sock, err, s.log())
	}
}

// Kill kills swtpm (SIGKILL: no orderly shutdown) and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

func (s *Server) log() string {
	b, _ := os.ReadFile(s.logPath)
	if len(bytes.TrimSpace(b)) == 0 {
		return "(swtpm logged nothing)"
	}
	return string(b)
}

// probe connects to swtpm's socket until it accepts, within ReadyWait,
// runs check (by default: one TPM2_GetCapability) and closes the
// connection. A refused or missing socket is retried: the socket file
// appears at bind, before swtpm listens.
func probe(sock string, exited <-chan struct{}, check ...func(transport.TPM) error) error {
	deadline := time.Now().Add(ReadyWait)
	delay := time.Millisecond
	var conn net.Conn
	for {
		var err error
		conn, err = net.DialTimeout("unix", sock, time.Until(deadline))
		if err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("connect: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection within %v: %w", ReadyWait, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
	defer conn.Close()
	tr := tpm.Retrying(conStream{conn, deadline})
	if len(check) == 0 {
		_, err := property(tr, tpm2.TPMPTHRActive)
		return err
	}
	for _, c := range check {
		if err := c(tr); err != nil {
			return err
		}
	}
	return nil
}

// conStream sends one command at a time on c, all within the deadline:
// a swtpm that does not answer (still serving another connection, e.g. a
// library that was not closed) fails the probe rather than hanging it.
type conStream struct {
	c        net.Conn
	deadline time.Time
}

func (s conStream) Send(cmd []byte) ([]byte, error) {
	if err := s.c.SetDeadline(s.deadline); err != nil {
		return nil, err
	}
	if _, err := s.c.Write(cmd); err != nil {
		return nil, fmt.Errorf("write to swtpm: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.c, hdr); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("swtpm did not answer within %v (is a connection to it still open?): %w", ReadyWait, err)
		}
		return nil, fmt.Errorf("read from swtpm: %w", err)
	}
	size, err := tpm.ResponseSize(hdr)
	if err != nil {
		return nil, err
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.c, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read from swtpm: %w", err)
	}
	return rsp, nil
}

// SetDAParameters runs TPM2_DictionaryAttackParameters with the lockout
// hierarchy's (empty) password, for tests that need a known lockout
// policy (tpm.SetDAParameters).
func SetDAParameters(tr transport.TPM, maxTries, recoverySeconds, lockoutRecoverySeconds uint32) error {
	return tpm.SetDAParameters(tr, maxTries, recoverySeconds, lockoutRecoverySeconds)
}
