package tpm

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// openDevice opens a TPM character device (/dev/tpmrm0, /dev/tpm0): one
// write is one command, one read one whole response. The file is opened
// now, so a missing device fails here, and again after any failure (a
// command that timed out is abandoned with its file).
//
// A path that is a unix socket of type SOCK_SEQPACKET is taken for a
// device too: such a socket has the device's semantics (a message per
// write, a whole message per read), which is how the device path is
// tested without a kernel TPM (internal/swtpmtest.Device).
func openDevice(path string) (*Stream, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var dial func(time.Time) (conn, error)
	switch {
	case fi.Mode()&os.ModeDevice != 0:
		dial = func(time.Time) (conn, error) {
			// Go opens a pollable device non-blocking and registers it
			// with the poller: reads then honour deadlines. The kernel's
			// TPM driver runs a command written in non-blocking mode in
			// the background and makes it readable when done.
			return os.OpenFile(path, os.O_RDWR, 0)
		}
	case fi.Mode()&os.ModeSocket != 0:
		dial = func(deadline time.Time) (conn, error) {
			d := net.Dialer{Deadline: deadline}
			c, err := d.Dial("unixpacket", path)
			if err != nil {
				return nil, err
			}
			// Used as a device file is: an *os.File, non-blocking and
			// polled, so the test runs the very code a device does.
			return packetFile(c.(*net.UnixConn))
		}
	default:
		return nil, fmt.Errorf("open %s: not a TPM device (%s)", path, fi.Mode())
	}
	s := &Stream{dial: dial, packets: true, deadlines: DefaultDeadlines}
	if err := s.connect(time.Now().Add(DefaultDeadlines.Command)); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// packetFile turns a connected packet socket into a non-blocking *os.File,
// as os.OpenFile makes of a TPM device.
func packetFile(c *net.UnixConn) (*os.File, error) {
	defer c.Close()
	f, err := c.File() // a duplicate, in blocking mode
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), c.RemoteAddr().String()), nil
}
