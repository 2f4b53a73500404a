package swtpmtest

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tpm11/tpm11/tpm"
)

// DeviceRelay is a TPM character device emulated for tests: a unix socket
// of type SOCK_SEQPACKET that has the kernel device's semantics (one write
// is one whole command, one read one whole response) in front of a
// private swtpm (see NewServer: the leak check applies). Like /dev/tpm0 it
// has no resource manager and serves one open at a time.
type DeviceRelay struct {
	// Spec is the backend spec: device:PATH.
	Spec string
	// Commands counts the commands relayed.
	Commands atomic.Int64
	stalled  atomic.Bool
	t        testing.TB
}

// Stall makes the device take commands and never answer them (on), or
// work again (off), as a wedged TPM chip would.
func (d *DeviceRelay) Stall(on bool) { d.stalled.Store(on) }

// Device starts a swtpm behind an emulated TPM character device.
func Device(t testing.TB) *DeviceRelay {
	t.Helper()
	srv := NewServer(t)
	path := filepath.Join(t.TempDir(), "tpm0")
	ln, err := net.Listen("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	d := &DeviceRelay{Spec: "device:" + path, t: t}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	sock := strings.TrimPrefix(srv.Spec, "swtpm:unix:")
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			// One open at a time, as /dev/tpm0.
			d.serve(c, sock)
		}
	}()
	return d
}

func (d *DeviceRelay) serve(c net.Conn, sock string) {
	defer c.Close()
	sw, err := net.Dial("unix", sock)
	if err != nil {
		d.t.Errorf("device relay: %v", err)
		return
	}
	defer sw.Close()
	buf := make([]byte, 1<<16)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		cmd := buf[:n]
		if h, ok := tpm.CommandHeader(cmd); !ok || int64(h.Length) != int64(n) {
			d.t.Errorf("device relay: a write of %d bytes is not one whole command", n)
			return
		}
		if d.stalled.Load() {
			continue // taken, never answered
		}
		d.Commands.Add(1)
		if _, err := sw.Write(cmd); err != nil {
			d.t.Errorf("device relay: %v", err)
			return
		}
		rsp, err := readResponse(sw)
		if err != nil {
			d.t.Errorf("device relay: %v", err)
			return
		}
		if _, err := c.Write(rsp); err != nil {
			return // the client gave up on it
		}
	}
}

func readResponse(r io.Reader) ([]byte, error) {
	hdr := make([]byte, tpm.HeaderSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	size, err := tpm.ResponseSize(hdr)
	if err != nil {
		return nil, err
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	_, err = io.ReadFull(r, rsp[tpm.HeaderSize:])
	return rsp, err
}
