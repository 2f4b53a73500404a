package tpm_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// tpmProc is a child process of this test binary in one of its modes
// (turns_test.go's TestMain).
type tpmProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startProc(t *testing.T, env string, argv ...string) *tpmProc {
	t.Helper()
	if len(argv) == 0 {
		argv = []string{os.Args[0]}
	}
	cmd := exec.Command(argv[0], append(argv[1:], "-test.run=^$")...)
	cmd.Env = append(os.Environ(), env)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		in.Close()
		_ = cmd.Wait()
	})
	return &tpmProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
}

func (p *tpmProc) line() string {
	if !p.out.Scan() {
		return ""
	}
	return p.out.Text()
}

func stopped(pid int) bool {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't')
}

// A process stopped (SIGSTOP) while it holds swtpm's one connection does
// not keep another process from the TPM: the other's command succeeds
// (without the stopped one's connection taken away, it would wait for its
// whole 30 s turn deadline and fail). Continued, the stopped process's next
// command succeeds too.
func TestStoppedProcessDoesNotBlockTheTPM(t *testing.T) {
	srv := swtpmtest.NewServer(t)
	holder := startProc(t, "TURNS_TPM="+srv.Spec)
	if l := holder.line(); l != "holding" {
		t.Fatalf("holder: %q", l)
	}
	pid := holder.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	for end := time.Now().Add(time.Minute); !stopped(pid); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("holder never stopped")
		}
	}
	d, err := tpm.OpenWith(srv.Spec, tpm.Options{Deadlines: tpm.Deadlines{Command: 2 * time.Second, KeyGen: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(d.TPM); err != nil {
		t.Fatalf("a command while another process holding the TPM is stopped: %v", err)
	}
	t.Logf("TPM reached %v after the holder was stopped", time.Since(start))
	d.Close()

	_ = syscall.Kill(pid, syscall.SIGCONT)
	if _, err := io.WriteString(holder.in, "again\n"); err != nil {
		t.Fatal(err)
	}
	if l := holder.line(); l != "ok" {
		t.Errorf("the continued process: %q, want its command to succeed", l)
	}
}

// A user who cannot reach the TPM (nobody, with a root-only swtpm socket)
// cannot hold up a root process: its ticket in the queue is refused or
// ignored. The queue directory is as an older release left it: 1777.
func TestUserWhoCannotReachTheTPMCannotQueue(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run a process as nobody")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv")
	}
	srv := swtpmtest.NewServer(t)
	sock := strings.TrimPrefix(srv.Spec, "swtpm:unix:")
	// nobody may walk to the socket's directory, not connect to it.
	for d := filepath.Dir(sock); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	queue := sock + ".tpm11-turns"
	if err := os.Mkdir(queue, 0o777); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	if err := os.Chmod(queue, 0o1777); err != nil {
		t.Fatal(err)
	}
	// The test binary, where nobody can run it.
	bin, err := os.MkdirTemp("", "turns-bin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	exe := filepath.Join(bin, "tpm.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(bin, 0o755)
	f := startProc(t, "TURNS_FORGE="+queue, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", exe)
	l := f.line()
	t.Logf("nobody's ticket: %s", l)
	if l != "forged" && l != "refused" {
		t.Fatalf("forger: %q", l)
	}

	d, err := tpm.OpenWith(srv.Spec, tpm.Options{Deadlines: tpm.Deadlines{Command: 2 * time.Second, KeyGen: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	start := time.Now()
	if _, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(d.TPM); err != nil {
		t.Fatalf("root held by nobody's ticket: %v", err)
	}
	t.Logf("root reached the TPM in %v", time.Since(start))
	if st, err := os.Stat(queue); err != nil || st.Mode().Perm()&0o022 != 0 {
		t.Errorf("queue of a root-only socket still writable by others: %v, %v", st.Mode(), err)
	}
}
