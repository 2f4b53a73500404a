// Package swtpmtest starts a private swtpm for one test: a socketpair to
// `swtpm chardev`, so no port, no socket file and no shared state, and the
// TPM dies with the test; or `swtpm socket` on a unix socket in a temp dir
// (Socket), ready when it returns. It fails the test if the test left
// objects loaded.
package swtpmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// CheckNoLeaks fails t if transient objects other than allowed remain loaded.
func CheckNoLeaks(t testing.TB, tr interface {
	Send([]byte) ([]byte, error)
}, allowed int) {
	t.Helper()
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(tpm2.TPMHTTransient) << 24,
		PropertyCount: 16,
	}.Execute(tr)
	if err != nil {
		t.Fatalf("get handles: %v", err)
	}
	h, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.Handle); n > allowed {
		t.Errorf("%d transient objects left loaded, want at most %d", n, allowed)
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

// ReadyWait bounds how long Socket waits for swtpm to accept a connection
// and answer.
var ReadyWait = 20 * time.Second

// Socket runs a private swtpm on a unix socket in a temp dir, as a user's
// configuration would name it, and returns the backend spec for it. It
// returns once swtpm has accepted a connection and answered a command on
// it (the probe connection is closed again: swtpm serves one at a time),
// and fails the test with swtpm's log if that takes longer than ReadyWait.
func Socket(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm not installed")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "tpm.sock")
	logPath := filepath.Join(dir, "swtpm.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+sock+".ctrl", "--tpmstate", "dir="+dir,
		"--flags", "not-need-init,startup-clear")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	swtpmLog := func() string {
		b, _ := os.ReadFile(logPath)
		if len(bytes.TrimSpace(b)) == 0 {
			return "(swtpm logged nothing)"
		}
		return string(b)
	}
	if err := probe(sock, exited); err != nil {
		select {
		case <-exited:
			err = fmt.Errorf("%w (swtpm exited: %v)", err, waitErr)
		default:
		}
		t.Fatalf("swtpm on %s not ready: %v\nswtpm log:\n%s", sock, err, swtpmLog())
	}
	return "swtpm:unix:" + sock
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
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<20 {
		return nil, fmt.Errorf("bad TPM response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.c, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read from swtpm: %w", err)
	}
	return rsp, nil
}
