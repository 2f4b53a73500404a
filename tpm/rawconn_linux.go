package tpm

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rawConn is a connected socket used with plain blocking system calls:
// one write, then one read that the kernel ends when the answer comes or
// when the socket's receive timeout (SO_RCVTIMEO) runs out, as a C
// client's would. Go's network poller is not used for the TPM's socket:
// with it a command's answer wakes the poller's thread, which then wakes
// the thread waiting for the answer (two scheduler hand-offs, ~100 µs on
// swtpm per command, measured with perf); nor is poll(2) before the read,
// one system call more per command. The deadline stays exact: the timeouts
// are set so that no call outlasts it (see bound), and a call that times
// out early is made again with the time left.
type rawConn struct {
	fd       int
	deadline time.Time
	// The receive and send timeouts now set on the socket (0: none yet).
	rcvTimeout, sndTimeout time.Duration
}

// timeoutSlack is how much shorter than the time left a timeout is set,
// so the next command, whose time left is a few microseconds more or less,
// finds it still short enough and need not set it again: a command costs
// no setsockopt(2) while its deadline's length stays the same.
const timeoutSlack = 5 * time.Millisecond

// dialRaw connects to the TPM at network/addr. A unix socket is made and
// connected with plain system calls (non-blocking, so a full listen queue
// is EAGAIN, as from net.Dial, and the caller retries), then made blocking:
// it is never registered with Go's poller, nor duplicated and the original
// closed, which a reconnection (every turn between processes, every return
// from idle) paid for in system calls. TCP goes through net.Dial.
func dialRaw(network, addr string, deadline time.Time) (conn, error) {
	if network != "unix" {
		d := net.Dialer{Deadline: deadline}
		c, err := d.Dial(network, addr)
		if err != nil {
			return nil, err
		}
		return rawFromNet(c)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	for {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: addr})
		if err != unix.EINTR {
			break
		}
	}
	if err == nil {
		err = unix.SetNonblock(fd, false)
	}
	if err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: network, Addr: &net.UnixAddr{Name: addr, Net: network}, Err: os.NewSyscallError("connect", err)}
	}
	return &rawConn{fd: fd}, nil
}

// rawFromNet takes a connected socket over: a duplicate of its descriptor
// (close-on-exec, made blocking) outlives c, which is closed.
func rawFromNet(c net.Conn) (conn, error) {
	defer c.Close()
	s, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no descriptor", c)
	}
	rc, err := s.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(f uintptr) { fd, dupErr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, dupErr
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &rawConn{fd: fd}, nil
}

func (c *rawConn) SetDeadline(t time.Time) error { c.deadline = t; return nil }

// bound makes the socket's timeout opt (SO_RCVTIMEO or SO_SNDTIMEO, now
// *cur) end a blocking call no later than the deadline: it returns
// os.ErrDeadlineExceeded once that has passed. A timeout already short
// enough, and not much shorter than the time left, is kept.
func (c *rawConn) bound(opt int, cur *time.Duration) error {
	left := time.Until(c.deadline)
	if left <= 0 {
		return os.ErrDeadlineExceeded
	}
	if *cur > 0 && *cur <= left && *cur >= left-2*timeoutSlack {
		return nil
	}
	want := left
	if left > 2*timeoutSlack {
		want = left - timeoutSlack
	}
	want = max(want, time.Microsecond) // a zero timeout would be none
	tv := unix.NsecToTimeval(int64(want))
	if tv.Sec == 0 && tv.Usec == 0 {
		tv.Usec = 1
	}
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, opt, &tv); err != nil {
		*cur = 0
		return err
	}
	*cur = want
	return nil
}

func (c *rawConn) Read(p []byte) (int, error) {
	for {
		if err := c.bound(unix.SO_RCVTIMEO, &c.rcvTimeout); err != nil {
			return 0, err
		}
		n, err := unix.Read(c.fd, p)
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			// A signal, or the timeout: bound tells which it was
			// by the time left.
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c *rawConn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		if err := c.bound(unix.SO_SNDTIMEO, &c.sndTimeout); err != nil {
			return done, err
		}
		// MSG_NOSIGNAL: a connection closed by the peer (or taken
		// away, turns.go) is EPIPE, never a SIGPIPE in the host.
		n, err := unix.SendmsgN(c.fd, p[done:], nil, nil, unix.MSG_NOSIGNAL)
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			done += max(n, 0)
			continue
		case err != nil:
			return done, err
		}
		done += n
	}
	return done, nil
}

// shutdown ends the connection both ways without closing the descriptor:
// a read or write blocked on it in another thread returns (end of file),
// and the descriptor stays this connection's until Close.
func (c *rawConn) shutdown() {
	if c.fd >= 0 {
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
}

func (c *rawConn) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// isPeer returns whether a descriptor is a connection to the TPM at
// network/addr: for a unix socket, one whose peer is bound at addr (the
// same path, or the same file); for TCP, one to addr's host and port.
func isPeer(network, addr string) func(fd int) bool {
	return func(fd int) bool {
		sa, err := unix.Getpeername(fd)
		if err != nil {
			return false
		}
		switch sa := sa.(type) {
		case *unix.SockaddrUnix:
			if network != "unix" {
				return false
			}
			if filepath.Clean(sa.Name) == filepath.Clean(addr) {
				return true
			}
			a, errA := os.Stat(sa.Name)
			b, errB := os.Stat(addr)
			return errA == nil && errB == nil && os.SameFile(a, b)
		case *unix.SockaddrInet4:
			return network == "tcp" && tcpIs(addr, sa.Addr[:], sa.Port)
		case *unix.SockaddrInet6:
			return network == "tcp" && tcpIs(addr, sa.Addr[:], sa.Port)
		}
		return false
	}
}

func tcpIs(addr string, ip []byte, port int) bool {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	return err == nil && ta.Port == port && ta.IP.Equal(net.IP(ip))
}
