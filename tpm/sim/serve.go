package sim

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/tpm11/tpm11/tpm"
)

// Server serves one simulator on a socket as swtpm serves its TPM: the
// TPM command stream (a command, then its response), one connection at a
// time. Others wait in the listen queue; processes of this library also
// queue for their turn (tpm/turns.go) and let go of the connection between
// jobs, so they share it as they share a swtpm. The simulator's state
// (loaded objects, sessions, NV) lives as long as the server: a process
// that dies leaves its objects behind, which the next one's Engine
// reclaims as it does on swtpm.
type Server struct {
	dev *tpm.Device
}

// maxCommand bounds a command's size: TPM2_PT_MAX_COMMAND_SIZE is 4096 on
// every TPM seen; a larger header is not a TPM client's.
const maxCommand = 1 << 16

// NewServer opens the simulator with the seed and lockout state kept in
// stateDir (the store).
func NewServer(stateDir string) (*Server, error) {
	t, closeSim, err := Open(stateDir)
	if err != nil {
		return nil, err
	}
	return &Server{dev: &tpm.Device{TPM: tpm.Retrying(t), Close: closeSim, Simulated: true}}, nil
}

// Close stops the simulator.
func (s *Server) Close() error { return s.dev.Close() }

// Serve answers the connections ln accepts, one at a time, until ln is
// closed (nil) or the simulator fails.
func (s *Server) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		err = s.serveConn(c)
		c.Close()
		if err != nil {
			return err
		}
	}
}

// serveConn answers c's commands until it closes or sends something that
// is not a TPM command (the connection is then closed, as swtpm does). An
// error is the simulator's own failure.
func (s *Server) serveConn(c net.Conn) error {
	buf := make([]byte, maxCommand)
	for {
		if _, err := io.ReadFull(c, buf[:tpm.HeaderSize]); err != nil {
			return nil
		}
		h, _ := tpm.CommandHeader(buf)
		if h.Length < tpm.HeaderSize || h.Length > maxCommand {
			return nil
		}
		if _, err := io.ReadFull(c, buf[tpm.HeaderSize:h.Length]); err != nil {
			return nil
		}
		rsp, err := s.dev.Send(buf[:h.Length])
		clear(buf[:h.Length]) // a command may carry an authValue or key material
		if err != nil {
			return fmt.Errorf("simulator: %w", err)
		}
		if _, err := c.Write(rsp); err != nil {
			return nil
		}
	}
}
