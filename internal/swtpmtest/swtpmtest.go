// Package swtpmtest starts a private swtpm for one test: a socketpair to
// `swtpm chardev`, so no port, no socket file and no shared state, and the
// TPM dies with the test. It fails the test if the test left objects loaded.
package swtpmtest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// Socket runs a private swtpm on a unix socket in a temp dir, as a user's
// configuration would name it, and returns the backend spec for it.
func Socket(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm not installed")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+sock+".ctrl", "--tpmstate", "dir="+dir,
		"--flags", "not-need-init,startup-clear")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// The socket file exists from bind(); a connect before listen() is
	// refused. Wait until the kernel lists it as listening.
	for i := 0; i < 500 && !listening(sock); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return "swtpm:unix:" + sock
}

// listening reports whether a unix socket bound to path accepts connections
// (/proc/net/unix lists it with __SO_ACCEPTCON, flag 0x10000).
func listening(path string) bool {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		_, err := os.Stat(path) // no procfs: the old, racy test
		return err == nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && f[7] == path {
			if flags, err := strconv.ParseUint(f[3], 16, 32); err == nil && flags&0x10000 != 0 {
				return true
			}
		}
	}
	return false
}
