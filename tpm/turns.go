package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
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
// it was taken and its pid) before connecting, and gives it back after
// disconnecting; a process connects when no valid ticket is older than its
// own and no other valid ticket holds a connection. A ticket is locked
// (flock) by its process from before it has its name until it is removed.
// The holder of the TPM hands it over between two jobs sooner when others
// are waiting (Device.Contended). Programs that do not queue (another
// client of the swtpm) still get in through swtpm's own queue, as before.
//
// Neighbours are not trusted (see valid):
//   - Only who can reach the TPM may queue: the directory is made writable
//     only by the classes of users the socket lets connect (its owner, its
//     group, others), and a ticket counts only if its file's owner could
//     connect: root, the socket's owner, a member of the socket's group
//     (a file's group can only be set to a group its owner is in), or
//     anyone when the socket is open to all (and always over TCP).
//   - A ticket counts only while its process lives and holds its lock: the
//     pid in its name is alive, owned by the file's owner, started before
//     the ticket was taken (not a reused pid), and the kernel's lock table
//     names that pid as the lock's taker. A FIFO, a symlink, a file of
//     another name is no ticket; stale tickets are removed where allowed.
//   - A process stopped (SIGSTOP, Ctrl-Z, a debugger) does not keep the
//     others waiting: a waiting ticket whose process is stopped is passed
//     over, and a holder stopped for StolenAfter has its connection shut
//     down by a waiter (pidfd_getfd: a process of the same user, or root;
//     checked to be a connection to this TPM), which takes the turn. The
//     stopped process, continued, finds its connection closed: its command
//     fails as one that lost the TPM does (the Engine reloads), and its next
//     one queues again.

// StolenAfter is how long a holder of the TPM must be seen stopped before
// a waiter takes its connection away: more than a debugger's or strace's
// stops between two steps, well within the command deadline (2 s).
var StolenAfter = 500 * time.Millisecond

type turns struct {
	dir  string
	me   *os.File // our ticket, locked, while we hold or wait for a turn
	name string
	// sock says who may queue: the TPM socket's owner, group and mode, or
	// open (TCP: anyone can reach the TPM).
	sock sockPerm
	// peer reports whether fd is a connection to this TPM (a holder's
	// connection is shut down only if it is).
	peer func(fd int) bool
	// stopped: when a ticket's process was first seen stopped; stolen:
	// tickets whose connection this process shut down (passed over until
	// they go).
	stopped map[string]time.Time
	stolen  map[string]bool
	// valids: tickets found valid, by name (with the inode checked): only
	// their liveness and state are looked at again.
	valids map[string]checkedTicket
	// contended caches whether others are waiting: looked at when
	// checked, the tickets read when scanned (the directory's mtime then).
	checked, scanned time.Time
	mtime            unix.Timespec
	contended        bool
}

// sockPerm is who may connect to the TPM's socket.
type sockPerm struct {
	open     bool // anyone (TCP, or a socket writable by others)
	uid, gid uint32
	groupW   bool
}

// allows reports whether a file owned by uid:gid is the ticket of a user
// who can connect.
func (p sockPerm) allows(uid, gid uint32) bool {
	return p.open || uid == 0 || uid == p.uid || p.groupW && gid == p.gid
}

// dirMode is the queue directory's mode: writable by the classes of users
// who can connect; sticky, so no one removes another's ticket.
func (p sockPerm) dirMode() os.FileMode {
	m := os.ModeSticky | 0o700
	if p.open {
		return m | 0o077
	}
	if p.groupW {
		m |= os.ModeSetgid | 0o070
	}
	return m
}

// permOf is who may connect to the unix socket at path ("" for TCP).
func permOf(path string) sockPerm {
	if path == "" {
		return sockPerm{open: true}
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		// No socket (yet): only root and its owner, whoever that is,
		// can be known to reach it; be strict.
		return sockPerm{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}
	}
	return sockPerm{uid: st.Uid, gid: st.Gid, groupW: st.Mode&0o020 != 0, open: st.Mode&0o002 != 0}
}

// newTurns is the queue of the TPM at key (a socket path or address), in
// a directory beside the socket when one can be made there, else in the
// system's temporary directory. nil when neither can be made: connections
// are then not queued. peer tells a connection to this TPM.
func newTurns(key string, beside string, peer func(fd int) bool) *turns {
	var dirs []string
	if beside != "" {
		dirs = append(dirs, beside+".tpm11-turns")
	}
	h := sha256.Sum256([]byte(key))
	dirs = append(dirs, filepath.Join(os.TempDir(), "tpm11-turns-"+hex.EncodeToString(h[:8])))
	perm := permOf(beside)
	for _, d := range dirs {
		if q := openTurns(d, perm); q != nil {
			q.peer = peer
			return q
		}
	}
	return nil
}

// openTurns makes or opens the queue directory d: one this process can
// write, owned by root, by this user or by the socket's owner (not one
// another user made in /tmp to control the queue).
func openTurns(d string, perm sockPerm) *turns {
	if err := os.Mkdir(d, 0o700); err == nil {
		if !perm.open && perm.groupW {
			_ = os.Lchown(d, -1, int(perm.gid)) // a member of the group: allowed
		}
		_ = os.Chmod(d, perm.dirMode()) // umask aside
	} else if !os.IsExist(err) {
		return nil
	}
	var st unix.Stat_t
	if unix.Lstat(d, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	me := uint32(os.Getuid())
	if st.Uid != 0 && st.Uid != me && st.Uid != perm.uid {
		return nil
	}
	if st.Uid == me {
		// Made by an older release (1777): narrowed to who can connect.
		if want := perm.dirMode(); os.FileMode(st.Mode&0o7777) != want.Perm()|modeBits(want) {
			_ = os.Chmod(d, want)
		}
	}
	if unix.Access(d, unix.W_OK) != nil {
		return nil
	}
	return &turns{dir: d, sock: perm, stopped: map[string]time.Time{}, stolen: map[string]bool{},
		valids: map[string]checkedTicket{}}
}

// modeBits is m's setuid/setgid/sticky bits as in a stat mode.
func modeBits(m os.FileMode) os.FileMode {
	var b os.FileMode
	if m&os.ModeSticky != 0 {
		b |= unix.S_ISVTX
	}
	if m&os.ModeSetgid != 0 {
		b |= unix.S_ISGID
	}
	return b
}

// take takes a ticket if this process has none.
func (q *turns) take() error {
	if q.me != nil {
		return nil
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	tmp := filepath.Join(q.dir, ".new-"+hex.EncodeToString(r[:]))
	f, err := atomicfile.Open(tmp, syscall.O_CREAT|syscall.O_EXCL|syscall.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if !q.sock.open && q.sock.groupW && uint32(os.Getuid()) != q.sock.uid {
		// The ticket of a member of the socket's group shows it.
		_ = f.Chown(-1, int(q.sock.gid))
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

// connected writes in our ticket that we hold a connection to the TPM on
// descriptor fd (so a waiter can take it from us if we are stopped).
func (q *turns) connected(fd int) {
	if q.me != nil {
		_, _ = q.me.WriteAt([]byte("fd "+strconv.Itoa(fd)+"\n"), 0)
	}
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

// ticket is a valid ticket of another live process.
type ticket struct {
	name string
	pid  int
	fd   int // its connection to the TPM, -1 when it only waits
}

// checkedTicket is what does not change in a ticket once found valid.
type checkedTicket struct {
	ino uint64
	pid int
}

// stopped reports whether t's process is stopped (by a signal or a tracer).
func (t ticket) stopped() bool {
	fields, ok := procStat(t.pid)
	return ok && (fields[0] == "T" || fields[0] == "t")
}

// live lists the valid tickets of live processes other than ours, oldest
// first, removing those of dead ones where allowed.
func (q *turns) live() []ticket {
	ents, err := atomicfile.ReadDir(q.dir)
	if err != nil {
		return nil
	}
	var locks map[uint64][]int
	var out []ticket
	seen := map[string]bool{}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || n == q.name {
			continue
		}
		seen[n] = true
		if _, known := q.valids[n]; !known && locks == nil {
			locks = flockOwners()
		}
		t, ok := q.valid(n, locks)
		if ok {
			out = append(out, t)
		}
	}
	for n := range q.valids {
		if !seen[n] {
			delete(q.valids, n)
		}
	}
	for n := range q.stopped {
		if !seen[n] {
			delete(q.stopped, n)
		}
	}
	for n := range q.stolen {
		if !seen[n] {
			delete(q.stolen, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// parseTicket splits a ticket's name: when it was taken and by which pid.
func parseTicket(n string) (taken int64, pid int, ok bool) {
	parts := strings.Split(n, "-")
	if len(parts) != 3 || len(parts[0]) != 20 {
		return 0, 0, false
	}
	taken, err1 := strconv.ParseInt(parts[0], 10, 64)
	pid, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || pid <= 0 {
		return 0, 0, false
	}
	return taken, pid, true
}

// valid checks the ticket named n (see the package comment above): locks
// is the kernel's flock table (inode to the pids that took each lock; nil
// when it cannot be read, then any holder of the lock is taken for its
// owner).
func (q *turns) valid(n string, locks map[uint64][]int) (ticket, bool) {
	taken, pid, ok := parseTicket(n)
	if !ok {
		return ticket{}, false // no ticket of ours (and not ours to remove)
	}
	path := filepath.Join(q.dir, n)
	f, err := atomicfile.Open(path, syscall.O_RDONLY, 0)
	if err != nil {
		return ticket{}, false // given back meanwhile, or no ticket (a FIFO, a symlink)
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || !q.sock.allows(st.Uid, st.Gid) {
		return ticket{}, false // its owner cannot reach the TPM: forged
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil {
		_ = os.Remove(path) // no one holds it: its process is gone
		return ticket{}, false
	}
	if c, ok := q.valids[n]; ok && c.ino == st.Ino && c.pid == pid {
		// Checked before; its lock is still held. Its process may have
		// died (the lock kept by a child it forked): kill(0) says.
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			_ = os.Remove(path)
			return ticket{}, false
		}
		return q.connection(f, ticket{name: n, pid: pid, fd: -1}), true
	}
	proc, alive := procOf(pid)
	if !alive || proc.uid != st.Uid || proc.started.UnixNano() > taken+int64(time.Second) {
		// Its process is gone (the lock lives on in a child it forked),
		// is another user's, or is a later process with a reused pid.
		_ = os.Remove(path)
		return ticket{}, false
	}
	if locks != nil {
		owned := false
		for _, p := range locks[st.Ino] {
			owned = owned || p == pid
		}
		if !owned {
			return ticket{}, false // locked by someone else than its named process: forged
		}
	}
	q.valids[n] = checkedTicket{ino: st.Ino, pid: pid}
	return q.connection(f, ticket{name: n, pid: pid, fd: -1}), true
}

// connection reads from the ticket file f whether its process holds a
// connection to the TPM, and on which descriptor.
func (q *turns) connection(f *os.File, t ticket) ticket {
	var b [32]byte
	if m, _ := f.ReadAt(b[:], 0); m > 3 && bytes.HasPrefix(b[:m], []byte("fd ")) {
		if fd, err := strconv.Atoi(string(bytes.TrimSpace(b[3:m]))); err == nil && fd >= 0 {
			t.fd = fd
		}
	}
	return t
}

// procInfo is what /proc says of a process.
type procInfo struct {
	uid     uint32
	started time.Time
	stopped bool // stopped by a signal or a tracer
}

// procOf reads /proc/pid: alive is false for a pid no process has (or a
// zombie: it will never use the TPM again).
func procOf(pid int) (procInfo, bool) {
	var info procInfo
	dir := "/proc/" + strconv.Itoa(pid)
	// The owner of the files it makes is its file-system uid (status's
	// fourth Uid; /proc/PID's owner is root for a process that is not
	// dumpable).
	b, err := atomicfile.Read(dir+"/status", 64<<10)
	if err != nil {
		return info, false
	}
	uidSeen := false
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(v); len(f) == 4 {
				if u, err := strconv.ParseUint(f[3], 10, 32); err == nil {
					info.uid, uidSeen = uint32(u), true
				}
			}
		}
	}
	fields, ok := procStat(pid)
	if !ok || !uidSeen {
		return info, false
	}
	switch fields[0] {
	case "Z", "X", "x":
		return info, false
	case "T", "t":
		info.stopped = true
	}
	if ticks, err := strconv.ParseInt(fields[19], 10, 64); err == nil {
		info.started = bootTime().Add(time.Duration(ticks) * time.Second / clockTicks)
	}
	return info, true
}

// procStat is /proc/pid/stat's fields after the command's name (state
// first), at least 20 of them.
func procStat(pid int) ([]string, bool) {
	b, err := atomicfile.Read("/proc/"+strconv.Itoa(pid)+"/stat", 4096)
	if err != nil {
		return nil, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	fields := strings.Fields(string(b[i+1:]))
	return fields, len(fields) >= 20
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's start time: 100 on
// every Linux architecture.
const clockTicks = 100

// bootTime is when the system booted (/proc/stat's btime, whole seconds).
var bootTime = sync.OnceValue(func() time.Time {
	b, err := atomicfile.Read("/proc/stat", 1<<20)
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
})

// flockOwners reads the kernel's lock table: for each inode, the pids that
// took a flock on it. nil when it cannot be read.
func flockOwners() map[uint64][]int {
	b, err := atomicfile.Read("/proc/locks", 16<<20)
	if err != nil {
		return nil
	}
	m := map[uint64][]int{}
	for _, line := range strings.Split(string(b), "\n") {
		// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a blocked
		// waiter's line has "->" after its number.
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" {
			continue
		}
		pid, err := strconv.Atoi(f[4])
		dev := strings.Split(f[5], ":")
		if err != nil || len(dev) != 3 {
			continue
		}
		ino, err := strconv.ParseUint(dev[2], 10, 64)
		if err != nil {
			continue
		}
		m[ino] = append(m[ino], pid)
	}
	return m
}

// ahead reports whether ts hold us back: a ticket older than ours whose
// process is not stopped, or one holding a connection (not one we took
// away). Stopped holders are taken from (steal) once seen stopped long
// enough.
func (q *turns) ahead(ts []ticket, now time.Time) bool {
	wait := false
	for _, t := range ts {
		if q.stolen[t.name] || t.fd < 0 && t.name > q.name {
			continue // taken from, or behind us
		}
		if !t.stopped() {
			delete(q.stopped, t.name)
			wait = true
			continue
		}
		since, seen := q.stopped[t.name]
		if !seen {
			q.stopped[t.name] = now
			since = now
		}
		if t.fd < 0 {
			continue // a stopped waiter: passed over
		}
		if now.Sub(since) >= StolenAfter && q.steal(t) {
			q.stolen[t.name] = true
			continue
		}
		wait = true
	}
	return wait
}

// steal shuts down the connection of the stopped holder t, if it is one
// to this TPM. Allowed for root and for the holder's own user (pidfd_getfd
// takes ptrace's permission).
func (q *turns) steal(t ticket) bool {
	pidfd, err := unix.PidfdOpen(t.pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, t.fd, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if q.peer == nil || !q.peer(fd) {
		return false
	}
	if unix.Shutdown(fd, unix.SHUT_RDWR) != nil {
		return false
	}
	_ = os.Remove(filepath.Join(q.dir, t.name))
	return true
}

// wait takes a ticket and waits for the turn, as long as the queue moves:
// it fails only when patience passes without a ticket ahead of ours going
// (a queue that moves is not a stuck TPM, however long it is: 200 forked
// workers starting at once queued for minutes, and a fixed bound failed
// the last 112 of them). aborted stops the wait at once.
func (q *turns) wait(patience time.Duration, aborted func() bool) error {
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
	now := time.Now()
	deadline, before, moved, valid := now.Add(patience), -1, now, -1
	for {
		if aborted() {
			return transportError("connect", ErrAborted)
		}
		// Only a waiter near the head of the queue validates the tickets
		// ahead (an open, a lock test and /proc reads each) at every look;
		// one further back counts the names ahead of its own, and
		// validates when the queue has not moved for a second (to pass
		// over dead or stopped ones). Every waiter validating every ticket
		// at every hand-over cost O(waiters²) and starved the holder: 200
		// forked workers starting at once took seconds per turn.
		now = time.Now()
		raw := q.namesAhead()
		if before >= 0 && raw < before {
			// A ticket ahead of ours went: the queue moved.
			deadline, moved = now.Add(patience), now
			valid -= before - raw
		}
		before = raw
		if valid < 0 || raw <= nearHead || valid <= nearHead || now.Sub(moved) >= time.Second {
			live := q.live()
			if !q.ahead(live, now) {
				return nil
			}
			// live is sorted by name, that is by when each was taken.
			valid = sort.Search(len(live), func(i int) bool { return live[i].name > q.name })
			if now.Sub(moved) >= time.Second {
				moved = now // validate again in a second
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return &TransportError{Op: "connect", Timeout: true, Err: fmt.Errorf("waiting for other processes' turns on the TPM: %w", os.ErrDeadlineExceeded)}
		}
		if valid > nearHead {
			// Far back: the head comes no sooner than a few ms per
			// ticket ahead; look again then, without being woken by
			// every ticket that goes.
			time.Sleep(min(left, time.Duration(valid-nearHead)*2*time.Millisecond, 250*time.Millisecond))
			continue
		}
		// Woken when a ticket goes; every 20 ms to notice a dead or
		// stopped one.
		wait := min(left, 20*time.Millisecond)
		if ino < 0 {
			time.Sleep(min(wait, 2*time.Millisecond))
			continue
		}
		// Events from while it slept far back are stale.
		for {
			if n, _ := unix.Read(ino, buf); n <= 0 {
				break
			}
		}
		if raw2 := q.namesAhead(); raw2 != raw {
			continue
		}
		fds := []unix.PollFd{{Fd: int32(ino), Events: unix.POLLIN}}
		_, _ = unix.Poll(fds, int(wait/time.Millisecond)+1)
	}
}

// nearHead is how many tickets may be ahead of a waiter's for it to
// validate them at every look (see wait).
const nearHead = 2

// namesAhead counts the entries of the queue directory named before our
// ticket: one directory read, no ticket opened.
func (q *turns) namesAhead() int {
	ents, err := atomicfile.ReadDir(q.dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if name := e.Name(); !strings.HasPrefix(name, ".") && name < q.name {
			n++
		}
	}
	return n
}

// anyWaiting reports whether a valid ticket of a process that is not
// stopped is in the queue, validating them oldest first and stopping at
// the first: the holder asks at every job, and validating every ticket
// of a long queue each time (as live does) slowed the holder the others
// wait for.
func (q *turns) anyWaiting() bool {
	ents, err := atomicfile.ReadDir(q.dir)
	if err != nil {
		return false
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if n := e.Name(); !strings.HasPrefix(n, ".") && n != q.name {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(q.valids) > 2*len(names)+16 {
		q.live() // forgets tickets that went
	}
	var locks map[uint64][]int
	for _, n := range names {
		if _, known := q.valids[n]; !known && locks == nil {
			locks = flockOwners()
		}
		if t, ok := q.valid(n, locks); ok && !t.stopped() {
			return true
		}
	}
	return false
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
	q.contended = q.anyWaiting()
	return q.contended
}
