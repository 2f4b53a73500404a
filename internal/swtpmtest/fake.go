package swtpmtest

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// Misbehaviour is how a fake TPM server fails.
type Misbehaviour int

const (
	// Silent accepts connections and reads commands, and never answers.
	Silent Misbehaviour = iota
	// Garbage answers every command with random bytes.
	Garbage
	// Hangup accepts a connection and closes it at once.
	Hangup
	// BadResponse answers with a well-formed header whose size is wrong
	// (more than it sends), then stops talking.
	BadResponse
)

func (m Misbehaviour) String() string {
	return [...]string{"silent", "garbage", "hangup", "bad-response"}[m]
}

// Fake runs, until the test ends, a server on a unix socket where a swtpm
// would be that misbehaves as m says, and returns its backend spec. It is
// for what a real swtpm cannot be made to do; everything else is tested on
// swtpm.
func Fake(t testing.TB, m Misbehaviour) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveFake(c, m)
			}()
		}
	}()
	return "swtpm:unix:" + sock
}

func serveFake(c net.Conn, m Misbehaviour) {
	if m == Hangup {
		c.Close()
		return
	}
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
		switch m {
		case Garbage:
			junk := make([]byte, 64)
			_, _ = rand.Read(junk)
			if _, err := c.Write(junk); err != nil {
				return
			}
		case BadResponse:
			hdr := []byte{0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(hdr[2:], 100)
			_, _ = c.Write(hdr)
			_, _ = io.Copy(io.Discard, c)
			return
		}
	}
}
