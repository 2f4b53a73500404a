package tpm

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/tpm11/tpm11/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// Turns on a TPM that serves one client at a time (swtpm).
//
// swtpm takes one connection at a time and has a short listen queue:
// processes that find it full retry, and whoever retries at the right
// moment wins, most often the one that just let go and comes straight
// back. Measured with four processes signing: 17, 541, 253 and 534
// signatures/s, waits of up to 15 s. So the processes of this library
// queue for their turn, first come first served: each takes a ticket (a
// file in a directory shared by everyone using that TPM, named by the time
// it was taken) before connecting, and gives it back after disconnecting;
// a process connects when no live ticket is older than its own. A ticket
// is locked (flock) by its process from before it has its name until it
// is removed, so the ticket of a process that died is seen as such and
// skipped (and removed if allowed). The holder of the TPM hands it over
// between two jobs sooner when others are waiting (Device.Contended).
// Programs that do not queue (another client of the swtpm) still get in
// through swtpm's own queue, as before.

type turns struct {
	dir  string
	me   *os.File // our ticket, locked, while we hold or wait for a turn
	name string
	// contended caches whether others are waiting: looked at when
	// checked, the tickets read when scanned (the directory's mtime then).
	checked, scanned time.Time
	mtime            unix.Timespec
	contended        bool
}

// newTurns is the queue of the TPM at key (a socket path or address), in
// a directory beside the socket when one can be made there, else in the
// system's temporary directory. nil when neither can be made: connections
// are then not queued.
func newTurns(key string, beside string) *turns {
	var dirs []string
	if beside != "" {
		dirs = append(dirs, beside+".tpm11-turns")
	}
	h := sha256.Sum256([]byte(key))
	dirs = append(dirs, filepath.Join(os.TempDir(), "tpm11-turns-"+hex.EncodeToString(h[:8])))
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o1777); err != nil && !os.IsExist(err) {
			continue
		}
		_ = os.Chmod(d, 0o1777) // every user of the TPM queues here (umask)
		if st, err := os.Stat(d); err == nil && st.IsDir() && syscall.Access(d, unix.W_OK) == nil {
			return &turns{dir: d}
		}
	}
	return nil
}

// take takes a ticket if this process has none.
func (q *turns) take() error {
	if q.me != nil {
		return nil
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	tmp := filepath.Join(q.dir, ".new-"+hex.EncodeToString(r[:]))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	// Named (and so seen) only once locked: never taken for a dead one's.
	name := fmt.Sprintf("%020d-%d-%s", time.Now().UnixNano(), os.Getpid(), hex.EncodeToString(r[:3]))
	if err := os.Rename(tmp, filepath.Join(q.dir, name)); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	q.me, q.name = f, name
	return nil
}

// done gives the ticket back (after disconnecting).
func (q *turns) done() {
	if q.me == nil {
		return
	}
	_ = os.Remove(filepath.Join(q.dir, q.name))
	q.me.Close()
	q.me, q.name = nil, ""
}

// live lists the tickets of live processes other than ours, oldest first,
// removing those of dead ones where allowed.
func (q *turns) live() []string {
	ents, err := os.ReadDir(q.dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || n == q.name {
			continue
		}
		path := filepath.Join(q.dir, n)
		f, err := atomicfile.Open(path, syscall.O_RDONLY, 0)
		if err != nil {
			continue // given back meanwhile, or no ticket (a FIFO, a symlink)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil {
			_ = os.Remove(path) // its process is gone
			f.Close()
			continue
		}
		f.Close()
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// wait takes a ticket and waits, at most until deadline, for the turn:
// no live ticket older than ours.
func (q *turns) wait(deadline time.Time) error {
	if err := q.take(); err != nil {
		return nil // no queue: connect as before
	}
	ino, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err == nil {
		if _, err := unix.InotifyAddWatch(ino, q.dir, unix.IN_DELETE|unix.IN_MOVED_FROM); err != nil {
			unix.Close(ino)
			ino = -1
		}
	} else {
		ino = -1
	}
	if ino >= 0 {
		defer unix.Close(ino)
	}
	buf := make([]byte, 4096)
	for {
		ahead := false
		for _, n := range q.live() {
			if n < q.name {
				ahead = true
				break
			}
		}
		if !ahead {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return &TransportError{Op: "connect", Timeout: true, Err: fmt.Errorf("waiting for other processes' turns on the TPM: %w", os.ErrDeadlineExceeded)}
		}
		// Woken when a ticket goes; every 20 ms to notice a dead one.
		wait := min(left, 20*time.Millisecond)
		if ino < 0 {
			time.Sleep(min(wait, 2*time.Millisecond))
			continue
		}
		fds := []unix.PollFd{{Fd: int32(ino), Events: unix.POLLIN}}
		_, _ = unix.Poll(fds, int(wait/time.Millisecond)+1)
		for {
			if n, _ := unix.Read(ino, buf); n <= 0 {
				break
			}
		}
	}
}

// waiting reports whether other processes wait for the TPM, looked at
// no more than every 5 ms. A look is a stat of the directory; the tickets
// are read again (a directory read, an open and a lock test per ticket:
// 6% of the module's CPU per signature when done every 5 ms) only when
// the directory changed, or every 100 ms to notice a waiter that died.
func (q *turns) waiting() bool {
	now := time.Now()
	if now.Sub(q.checked) <= 5*time.Millisecond {
		return q.contended
	}
	q.checked = now
	var st unix.Stat_t
	// The cached answer holds while the directory's mtime is the one seen
	// at the last read, unless that read came within 10 ms of the mtime:
	// a ticket made in the same tick of a coarse file-system clock leaves
	// the mtime as it was ("racily clean", as git calls it).
	if unix.Stat(q.dir, &st) == nil && st.Mtim == q.mtime && now.Sub(q.scanned) < 100*time.Millisecond &&
		q.scanned.Sub(time.Unix(st.Mtim.Unix())) > 10*time.Millisecond {
		return q.contended
	}
	q.mtime = st.Mtim
	q.scanned = now
	q.contended = len(q.live()) > 0
	return q.contended
}
