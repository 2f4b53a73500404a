package tpm

import (
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// A device file the kernel cannot poll takes no deadline: the round trip
// runs beside the caller, who is freed at the deadline; a device that
// answers works as usual, one write one command, one read one response.
func TestUnpollableDeviceDeadline(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := os.NewFile(uintptr(fds[0]), "dev") // blocking: not pollable
	theirs := os.NewFile(uintptr(fds[1]), "tpm")
	defer theirs.Close()
	answer := make(chan bool, 4)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := theirs.Read(buf)
			if err != nil {
				return
			}
			if n < 10 || int(binary.BigEndian.Uint32(buf[2:6])) != n {
				t.Errorf("a command in pieces: %d bytes", n)
			}
			if <-answer {
				_, _ = theirs.Write([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0})
			}
		}
	}()
	s := &Stream{conn: ours, packets: true, deadlines: Deadlines{Command: 200 * time.Millisecond},
		dial: func(time.Time) (conn, error) { return nil, errors.New("closed") }}
	if err := ours.SetDeadline(time.Now()); !errors.Is(err, os.ErrNoDeadline) {
		t.Skipf("this file takes deadlines (%v): nothing to test", err)
	}
	cmd := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8} // GetRandom 8
	answer <- true
	if _, err := s.Send(cmd); err != nil {
		t.Fatal(err)
	}
	answer <- false
	start := time.Now()
	_, err = s.Send(cmd)
	if !IsTimeout(err) {
		t.Fatalf("want a timeout, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("freed after %v", d)
	}
}
