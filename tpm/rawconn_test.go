package tpm

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeSwtpm listens on a unix socket and answers each command with what
// reply writes; it stands in for a TPM that trickles or over-answers,
// which no real TPM does.
func fakeSwtpm(t *testing.T, reply func(c net.Conn)) string {
	path := filepath.Join(t.TempDir(), "tpm.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					reply(c)
				}
			}()
		}
	}()
	return path
}

var getRandom8 = []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8}

// The swtpm socket is used with poll(2), not Go's poller: the deadline
// still bounds the whole response, however slowly it comes, and a
// response is read whole, in one read or many.
func TestSocketDeadlineBoundsATricklingTPM(t *testing.T) {
	ok := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0}
	path := fakeSwtpm(t, func(c net.Conn) {
		for _, b := range ok { // a whole response, a byte at a time
			_, _ = c.Write([]byte{b})
			time.Sleep(time.Millisecond) // a slow TPM mock: latency on purpose
		}
	})
	d, err := OpenWith("swtpm:unix:"+path, Options{Deadlines: Deadlines{Command: 300 * time.Millisecond}})
	require.NoError(t, err)
	defer d.Close()
	rsp, err := d.TPM.Send(getRandom8)
	require.NoError(t, err)
	require.Equal(t, ok, rsp)

	slow := fakeSwtpm(t, func(c net.Conn) {
		for i := 0; i < 100; i++ { // never a whole header within the deadline
			_, _ = c.Write([]byte{0x80})
			time.Sleep(50 * time.Millisecond) // a slow TPM mock: latency on purpose
		}
	})
	d2, err := OpenWith("swtpm:unix:"+slow, Options{Deadlines: Deadlines{Command: 300 * time.Millisecond}})
	require.NoError(t, err)
	defer d2.Close()
	start := time.Now()
	_, err = d2.TPM.Send(getRandom8)
	require.True(t, IsTimeout(err), "want a timeout, got %v", err)
	require.Less(t, time.Since(start), 2*time.Second, "the deadline bounds the whole response, not each read")
}

// Bytes beyond the size a response gives are not a TPM's: the response is
// refused, the connection dropped.
func TestSocketResponseLongerThanItSays(t *testing.T) {
	path := fakeSwtpm(t, func(c net.Conn) {
		_, _ = c.Write([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0, 0xde, 0xad})
	})
	d, err := OpenWith("swtpm:unix:"+path, Options{Deadlines: Deadlines{Command: time.Second}})
	require.NoError(t, err)
	defer d.Close()
	_, err = d.TPM.Send(getRandom8)
	require.Error(t, err)
	require.True(t, IsTransport(err), "%v", err)
}
