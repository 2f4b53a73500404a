package atomicfile

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The writer child: writes pairs a-N/b-N (same contents) in a loop and
// says "done N" once each WriteAll returned; with ATOMICFILE_DIE_MID it
// kills itself between the two renames of its first pair.
func TestMain(m *testing.M) {
	if dir := os.Getenv("ATOMICFILE_WRITER"); dir != "" {
		if os.Getenv("ATOMICFILE_DIE_MID") != "" {
			hookAfterRename = func(int) { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
		}
		start, _ := strconv.Atoi(os.Getenv("ATOMICFILE_START"))
		for i := start; ; i++ {
			data := []byte(strings.Repeat(strconv.Itoa(i), 500))
			if err := WriteAll(dir, []File{{fmt.Sprintf("a-%d", i), data}, {fmt.Sprintf("b-%d", i), data}}); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println("done", i)
		}
	}
	os.Exit(m.Run())
}

func writer(t *testing.T, dir string, start int, dieMid bool) (*exec.Cmd, *bufio.Scanner) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ATOMICFILE_WRITER="+dir, "ATOMICFILE_START="+strconv.Itoa(start))
	if dieMid {
		cmd.Env = append(cmd.Env, "ATOMICFILE_DIE_MID=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

// checkPairs fails t unless every pair in dir is whole (both halves, same
// contents) or absent, every pair in done is there, and no temporary file
// or intent is left.
func checkPairs(t *testing.T, dir string, done map[int]bool) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pairs := 0
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, TempPrefix) || strings.HasPrefix(name, IntentPrefix) {
			t.Errorf("left behind: %s", name)
			continue
		}
		if !strings.HasPrefix(name, "a-") {
			continue
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(name, "a-"))
		a, errA := os.ReadFile(filepath.Join(dir, name))
		b, errB := os.ReadFile(filepath.Join(dir, "b-"+strconv.Itoa(n)))
		if errA != nil || errB != nil || string(a) != string(b) || len(a) == 0 {
			t.Errorf("pair %d is not whole: %v %v", n, errA, errB)
		}
		if info, _ := e.Info(); info != nil && info.Mode().Perm() != 0o600 {
			t.Errorf("pair %d: mode %v", n, info.Mode().Perm())
		}
		pairs++
	}
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), "b-"); ok {
			if _, err := os.Stat(filepath.Join(dir, "a-"+n)); err != nil {
				t.Errorf("half a pair: b-%s", n)
			}
		}
	}
	for n := range done {
		if _, err := os.Stat(filepath.Join(dir, "a-"+strconv.Itoa(n))); err != nil {
			t.Errorf("pair %d was reported written and is gone", n)
		}
	}
	return pairs
}

// Writers killed (SIGKILL) at random points, 25 times, while another
// process runs Recover on the same directory throughout: after Recover,
// every pair is whole or absent, every pair a writer reported written is
// there, no temporary file or intent is left, and the live writer never
// had a file taken from under it.
func TestKilledWritersLeaveWholePairsOrNothing(t *testing.T) {
	dir := t.TempDir()
	done := map[int]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a process opening the store meanwhile
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := Recover(dir); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond) // pacing, not synchronisation

		}
	}()
	kills := 0
	for k := 0; k < 25; k++ {
		cmd, out := writer(t, dir, k*100000, false)
		lines := make(chan string, 1000)
		go func() {
			for out.Scan() {
				lines <- out.Text()
			}
			close(lines)
		}()
		// A random point to kill at (fault injection, not synchronisation).
		time.Sleep(time.Duration(10+rand.IntN(50)) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		kills++
		for l := range lines {
			if n, ok := strings.CutPrefix(l, "done "); ok {
				i, _ := strconv.Atoi(n)
				done[i] = true
			} else {
				t.Fatalf("writer: %s", l)
			}
		}
	}
	close(stop)
	wg.Wait()
	if _, err := Recover(dir); err != nil {
		t.Fatal(err)
	}
	pairs := checkPairs(t, dir, done)
	t.Logf("%d writers killed, %d pairs written, %d reported done", kills, pairs, len(done))
}

// A writer killed between the renames of a committed pair: the pair is
// half there until Recover, which completes it.
func TestRecoverCompletesACommittedPair(t *testing.T) {
	dir := t.TempDir()
	cmd, _ := writer(t, dir, 7, true)
	if err := cmd.Wait(); err == nil {
		t.Fatal("the writer should have died")
	}
	if _, err := os.Stat(filepath.Join(dir, "a-7")); err != nil {
		t.Fatalf("first half not renamed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b-7")); err == nil {
		t.Fatal("second half renamed: the writer did not die in between")
	}
	changed, err := Recover(dir)
	if err != nil || !changed {
		t.Fatalf("Recover: %v, changed %v", err, changed)
	}
	if checkPairs(t, dir, map[int]bool{7: true}) != 1 {
		t.Fatal("pair 7 not completed")
	}
}

// A removal is synced to the directory, so it survives a crash.
func TestRemoveSyncsTheDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x")
	if err := Write(path, []byte("x")); err != nil {
		t.Fatal(err)
	}
	var synced []string
	old := SyncDir
	SyncDir = func(d string) error { synced = append(synced, d); return old(d) }
	defer func() { SyncDir = old }()
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != dir {
		t.Fatalf("directory syncs: %v", synced)
	}
	if err := Remove(path); err != nil {
		t.Fatal("removing a missing file is no error")
	}
}
