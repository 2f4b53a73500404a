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

// rawConn is a connected socket used with plain system calls: write, then
// poll(2) with the time left to the deadline, then read. Go's network
// poller is not used for the TPM's socket: with it a command's answer
// wakes the poller's thread, which then wakes the thread waiting for the
// answer (two scheduler hand-offs, ~100 µs on swtpm per command, measured
// with perf); with poll(2) the kernel wakes the waiting thread itself, as
// it does a C client's. The deadline stays exact: every wait is bounded
// by the time left.
type rawConn struct {
	fd       int
	deadline time.Time
	pfd      [1]unix.PollFd
}

// rawFromNet takes a connected socket over: a duplicate of its descriptor
// (close-on-exec, still non-blocking) outlives c, which is closed.
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
	return &rawConn{fd: fd}, nil
}

func (c *rawConn) SetDeadline(t time.Time) error { c.deadline = t; return nil }

// wait waits until the socket is ready for events, at most until the
// deadline.
func (c *rawConn) wait(events int16) error {
	for {
		left := time.Until(c.deadline)
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		c.pfd[0] = unix.PollFd{Fd: int32(c.fd), Events: events}
		n, err := unix.Poll(c.pfd[:], ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
}

func (c *rawConn) Read(p []byte) (int, error) {
	if err := c.wait(unix.POLLIN); err != nil {
		return 0, err
	}
	for {
		n, err := unix.Read(c.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := c.wait(unix.POLLIN); err != nil {
				return 0, err
			}
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
		// MSG_NOSIGNAL: a connection closed by the peer (or taken
		// away, turns.go) is EPIPE, never a SIGPIPE in the host.
		n, err := unix.SendmsgN(c.fd, p[done:], nil, nil, unix.MSG_NOSIGNAL)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := c.wait(unix.POLLOUT); err != nil {
				return done, err
			}
			continue
		case err != nil:
			return done, err
		}
		done += n
	}
	return done, nil
}

// shutdown ends the connection both ways without closing the descriptor:
// a poll or read blocked on it in another thread returns (end of file),
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
