package tpm

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// The queue child (TURNS_CHILD=dir or socket): takes a ticket in the
// queue, says "ticket NAME", and with a socket connects to it, writes its
// descriptor in the ticket and says "holding"; then, for each line on its
// standard input, writes to its connection and says "ok" or "lost".
func TestMain(m *testing.M) {
	if arg := os.Getenv("TURNS_CHILD"); arg != "" {
		turnsChild(arg)
		return
	}
	if spec := os.Getenv("TURNS_TPM"); spec != "" {
		tpmChild(spec)
		return
	}
	if dir := os.Getenv("TURNS_FORGE"); dir != "" {
		forger(dir)
		return
	}
	os.Exit(m.Run())
}

func turnsChild(arg string) {
	var q *turns
	sock := os.Getenv("TURNS_SOCKET") != ""
	if sock {
		q = newTurns("unix:"+arg, arg, isPeer("unix", arg))
	} else {
		q = openTurns(arg, sockPerm{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())})
	}
	if q == nil {
		fmt.Println("no queue")
		os.Exit(1)
	}
	if err := q.wait(time.Minute, func() bool { return false }); err != nil {
		fmt.Println("wait:", err)
		os.Exit(1)
	}
	fmt.Println("ticket", q.name)
	var c net.Conn
	if sock {
		var err error
		if c, err = net.Dial("unix", arg); err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		rc, _ := c.(*net.UnixConn).SyscallConn()
		_ = rc.Control(func(fd uintptr) { q.connected(int(fd)) })
		fmt.Println("holding")
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if c == nil {
			fmt.Println("ok")
			continue
		}
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		if _, err := c.Write([]byte("x")); err != nil {
			fmt.Println("lost")
		} else {
			fmt.Println("ok")
		}
	}
}

type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startChild(t *testing.T, arg string, sock bool) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TURNS_CHILD="+arg)
	if sock {
		cmd.Env = append(cmd.Env, "TURNS_SOCKET=1")
	}
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
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

// line reads the child's next line (a child that died reads as "").
func (c *child) line() string {
	if !c.out.Scan() {
		return ""
	}
	return c.out.Text()
}

// waitState waits until the process's state in /proc is want (stopped or
// not), with a bound that only catches a hang.
func waitState(t *testing.T, pid int, stopped bool) {
	t.Helper()
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if p, ok := procOf(pid); ok && p.stopped == stopped {
			return
		}
	}
	t.Fatalf("process %d never stopped=%v", pid, stopped)
}

func names(ts []ticket) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.name)
	}
	return out
}

// plantTicket makes a ticket file named for pid, taken at taken, locked by
// this test process (not by pid) and kept open until the test ends.
func plantTicket(t *testing.T, dir string, taken int64, pid int) string {
	t.Helper()
	name := fmt.Sprintf("%020d-%d-abcdef", taken, pid)
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return name
}

// A real ticket of another live process counts; everything else in the
// queue directory does not, and never blocks the reader: a FIFO, a
// symlink, names that are no ticket's, the ticket of a process that died
// (its lock kept by someone else), of a pid reused by a later process, a
// ticket locked by another process than the one it names, and (as root)
// one whose owner cannot reach the TPM.
func TestForgedAndStaleTicketsAreIgnored(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	me := uint32(os.Getuid())
	q := openTurns(dir, sockPerm{uid: me, gid: uint32(os.Getgid())})
	if q == nil {
		t.Fatal("no queue")
	}
	old := time.Now().Add(-time.Hour).UnixNano()

	real := startChild(t, dir, false)
	line := real.line()
	realName, ok := strings.CutPrefix(line, "ticket ")
	if !ok {
		t.Fatalf("child: %q", line)
	}

	if err := syscall.Mkfifo(filepath.Join(dir, fmt.Sprintf("%020d-%d-fifo00", old, real.cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, realName), filepath.Join(dir, fmt.Sprintf("%020d-%d-link00", old, real.cmd.Process.Pid))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "not-a-ticket"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadName := plantTicket(t, dir, old, dead.Process.Pid)
	reused := plantTicket(t, dir, 1, os.Getpid()) // taken in 1970, by a pid that started since
	// Names the real child, locked by this process: forged. (Without the
	// kernel's lock table the check cannot be made.)
	forgedLock := plantTicket(t, dir, time.Now().UnixNano(), real.cmd.Process.Pid)
	var foreign string
	if me == 0 {
		foreign = plantTicket(t, dir, old, os.Getpid())
		if err := os.Chown(filepath.Join(dir, foreign), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}

	done := make(chan []ticket)
	go func() { done <- q.live() }()
	var live []ticket
	select {
	case live = <-done:
	case <-time.After(time.Minute):
		t.Fatal("reading the queue hangs")
	}
	want := []string{realName}
	if flockOwners() == nil {
		t.Log("no /proc/locks: a ticket locked by another process than its own is not told")
		want = []string{forgedLock, realName}
	}
	if got := names(live); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("live tickets %v, want %v", got, want)
	}
	for _, n := range []string{deadName, reused} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			t.Errorf("stale ticket %s not removed", n)
		}
	}
	if foreign != "" && q.sock.allows(65534, 65534) {
		t.Error("nobody may queue for a root-only socket")
	}
	if st, err := os.Stat(dir); err != nil || st.Mode()&0o077 != 0 {
		t.Errorf("queue of a socket only its owner can use: mode %v, %v", st.Mode(), err)
	}
}

// A waiting process that is stopped is passed over; continued, it counts
// again.
func TestStoppedWaiterIsPassedOver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	q := openTurns(dir, sockPerm{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())})
	c := startChild(t, dir, false)
	if l := c.line(); !strings.HasPrefix(l, "ticket ") {
		t.Fatalf("child: %q", l)
	}
	if err := q.take(); err != nil {
		t.Fatal(err)
	}
	defer q.done()
	if !q.ahead(q.live(), time.Now()) {
		t.Fatal("an older waiting ticket does not count")
	}
	pid := c.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	waitState(t, pid, true)
	if q.ahead(q.live(), time.Now()) {
		t.Error("a stopped waiter holds the queue")
	}
	if q.waiting() {
		t.Error("a stopped waiter counts as waiting")
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	waitState(t, pid, false)
	if !q.ahead(q.live(), time.Now()) {
		t.Error("a continued waiter is passed over")
	}
}

// A holder stopped while connected loses its connection to a waiter
// within StolenAfter (the server sees it closed), and continued, it finds
// it closed (EPIPE, no signal) and can queue again.
func TestStoppedHolderLosesTheConnection(t *testing.T) {
	dir, err := os.MkdirTemp("", "turns") // a socket path's length is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "tpm.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	c := startChild(t, sock, true)
	if l := c.line(); !strings.HasPrefix(l, "ticket ") {
		t.Fatalf("child: %q", l)
	}
	if l := c.line(); l != "holding" {
		t.Fatalf("child: %q", l)
	}
	held := <-accepted
	pid := c.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	waitState(t, pid, true)

	q := newTurns("unix:"+sock, sock, isPeer("unix", sock))
	if q == nil {
		t.Fatal("no queue")
	}
	start := time.Now()
	if err := q.wait(time.Minute, func() bool { return false }); err != nil {
		t.Fatalf("waiting behind a stopped holder: %v", err)
	}
	t.Logf("turn taken from the stopped holder after %v", time.Since(start))
	_ = held.SetReadDeadline(time.Now().Add(time.Minute))
	if n, err := held.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the stopped holder's connection: read %d, %v; want it closed", n, err)
	}
	q.done()

	_ = syscall.Kill(pid, syscall.SIGCONT)
	if _, err := io.WriteString(c.in, "write\n"); err != nil {
		t.Fatal(err)
	}
	if l := c.line(); l != "lost" {
		t.Errorf("continued holder: %q, want its connection lost", l)
	}
	if err := c.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("continued holder died: %v", err)
	}
}

// Not a connection to this TPM: a stopped process's other socket is left
// alone even if its ticket names it.
func TestOnlyConnectionsToTheTPMAreTaken(t *testing.T) {
	a, b, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(a)
	defer syscall.Close(b)
	if isPeer("unix", "/nonexistent/tpm.sock")(a) {
		t.Error("a socketpair taken for the TPM's connection")
	}
}

func socketpair() (int, int, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	return fds[0], fds[1], err
}

// tpmChild (TURNS_TPM=spec) uses the TPM: a command, then "holding" (it
// keeps the connection), then one command per line of its standard input,
// saying "ok" or the error.
func tpmChild(spec string) {
	d, err := OpenWith(spec, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	random := func() error {
		_, err := tpm2.GetRandom{BytesRequested: 8}.Execute(d.TPM)
		return err
	}
	if err := random(); err != nil {
		fmt.Println("first command:", err)
		os.Exit(1)
	}
	fmt.Println("holding")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if err := random(); err != nil {
			fmt.Println("error:", err)
		} else {
			fmt.Println("ok")
		}
	}
}

// forger (TURNS_FORGE=dir) puts an old ticket of its own in the queue
// directory, if it can, holds its lock and says "forged" or "refused".
func forger(dir string) {
	name := fmt.Sprintf("%020d-%d-f0f0f0", time.Now().Add(-time.Hour).UnixNano(), os.Getpid())
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		fmt.Println("refused")
	} else {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		fmt.Println("forged")
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
}
