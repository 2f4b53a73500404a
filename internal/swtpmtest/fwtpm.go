package swtpmtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm11/tpm11/tpm"
)

// The post-quantum test TPM: wolfTPM's fwtpm_server, which implements the
// TPM 2.0 Library Specification v1.85 commands (ML-DSA, HashML-DSA,
// ML-KEM) that swtpm lacks. testdata/fwtpm.sh builds it once into a cache
// outside the checkout; a test that needs it fails (never skips) when it
// cannot be built. $TPM11_FWTPM names a ready fwtpm_server instead.

var (
	fwtpmOnce sync.Once
	fwtpmPath string
	fwtpmErr  error
)

// FwTPMServer returns the path of fwtpm_server, building it on first use
// (testdata/fwtpm.sh: minutes, once per cache), and fails t if it cannot.
func FwTPMServer(t testing.TB) string {
	t.Helper()
	fwtpmOnce.Do(func() { fwtpmPath, fwtpmErr = buildFwTPM() })
	if fwtpmErr != nil {
		t.Fatalf("the PQC test TPM (fwtpm_server) is not available: %v", fwtpmErr)
	}
	return fwtpmPath
}

func buildFwTPM() (string, error) {
	if p := os.Getenv("TPM11_FWTPM"); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("TPM11_FWTPM=%q is not a program (did testdata/fwtpm.sh fail? run it for its log)", p)
		}
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "testdata", "fwtpm.sh"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("testdata/fwtpm.sh: %v\n%s", err, stderr.String())
	}
	p := strings.TrimSpace(string(out))
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return "", fmt.Errorf("testdata/fwtpm.sh printed %q, not a program", p)
	}
	return p, nil
}

// repoRoot is the directory holding this module's go.mod, found upwards
// from the test's working directory (its package directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/tpm11/tpm11\n")) {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("no tpm11 go.mod above the working directory")
		}
		dir = up
	}
}

// FwTPM is a private fwtpm_server on a loopback port, started and sent
// TPM2_Startup for one test, killed at its end.
type FwTPM struct {
	// Addr is HOST:PORT of the command port, which takes raw TPM commands.
	Addr string
	// Spec is the backend spec the module opens (swtpm:tcp:HOST:PORT).
	Spec string
	// Dir is the server's working directory (its NV state, its log).
	Dir string

	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// StartFwTPM starts fwtpm_server on a free loopback port (its platform
// port is the next one), sends TPM2_Startup(CLEAR) (TPM_RC_INITIALIZE, "already
// started", is fine: fwTPM starts powered on) and returns once it has
// answered. At cleanup, before the server is killed, it fails the test if
// the TPM holds a transient object or session, as Socket does for swtpm.
func StartFwTPM(t testing.TB) *FwTPM {
	t.Helper()
	bin := FwTPMServer(t)
	dir := t.TempDir()
	f := &FwTPM{Dir: dir, logPath: filepath.Join(dir, "fwtpm.log")}
	var err error
	// A free port may be taken between asking for it and the server's
	// bind: a server that exits at once is tried again on other ports.
	for try := 0; try < 5; try++ {
		if err = f.start(bin); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("fwtpm_server not ready: %v\nlog:\n%s", err, f.log())
	}
	t.Cleanup(f.kill)
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		c, err := net.DialTimeout("tcp", f.Addr, ReadyWait)
		if err != nil {
			t.Errorf("fwtpm leak check: %v", err)
			return
		}
		defer c.Close()
		if err := handleLeaks(tpm.Retrying(conStream{c, time.Now().Add(ReadyWait)})); err != nil {
			t.Errorf("after the test: %v", err)
		}
	})
	return f
}

// Transport connects to the server: one connection at a time is served,
// so a test closes it (at cleanup here) before another connects.
func (f *FwTPM) Transport(t testing.TB) transport.TPM {
	t.Helper()
	c, err := net.DialTimeout("tcp", f.Addr, ReadyWait)
	if err != nil {
		t.Fatal(err)
	}
	s := tpm.NewStream(c)
	t.Cleanup(func() { s.Close() })
	return tpm.Retrying(s)
}

func (f *FwTPM) start(bin string) error {
	port, err := freePortPair()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(f.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--platform-port", strconv.Itoa(port+1))
	cmd.Dir = f.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { f.waitErr = cmd.Wait(); close(exited) }()
	f.cmd, f.exited = cmd, exited
	f.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	f.Spec = "swtpm:tcp:" + f.Addr
	if err := f.startup(); err != nil {
		f.kill()
		return err
	}
	return nil
}

// startup connects until the server accepts (within ReadyWait, or until
// it exits) and sends TPM2_Startup(CLEAR).
func (f *FwTPM) startup() error {
	deadline := time.Now().Add(ReadyWait)
	delay := time.Millisecond
	for {
		c, err := net.DialTimeout("tcp", f.Addr, time.Until(deadline))
		if err == nil {
			defer c.Close()
			_, err = tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(conStream{c, deadline})
			if errors.Is(err, tpm2.TPMRCInitialize) {
				err = nil
			}
			return err
		}
		select {
		case <-f.exited:
			return fmt.Errorf("fwtpm_server exited: %v", f.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection within %v: %w", ReadyWait, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

func (f *FwTPM) kill() {
	if f.cmd == nil {
		return
	}
	_ = f.cmd.Process.Kill()
	<-f.exited
	f.cmd = nil
}

func (f *FwTPM) log() string {
	b, _ := os.ReadFile(f.logPath)
	return string(b)
}

// freePortPair finds a loopback port P with P+1 also free at the time of
// asking (fwtpm_server's command and platform ports).
func freePortPair() (int, error) {
	for try := 0; try < 20; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("no two adjacent free loopback ports")
}

// handleLeaks is Leaks without the count of active sessions, which fwTPM
// does not report (TPM_PT_HR_ACTIVE): transient objects (sequences too)
// and loaded or saved sessions.
func handleLeaks(tr transport.TPM) error {
	var problems []string
	for _, r := range []struct {
		ht   tpm2.TPMHT
		what string
	}{{tpm2.TPMHTTransient, "transient objects"}, {tpm2.TPMHTHMACSession, "loaded sessions"}, {tpm2.TPMHTPolicySession, "saved sessions"}} {
		hs, err := handles(tr, r.ht)
		if err != nil {
			return err
		}
		if len(hs) > 0 {
			problems = append(problems, fmt.Sprintf("%d %s left: %s", len(hs), r.what, hexHandles(hs)))
		}
	}
	if problems != nil {
		return errors.New("TPM not left clean: " + strings.Join(problems, "; "))
	}
	return nil
}
