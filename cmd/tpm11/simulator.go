//go:build !nosimulator

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/tpm/sim"
	"github.com/tpm11/tpm11/tpmtoken"
)

// The simulator lives in this command, not in the module: it is C code
// linked with libcrypto, which no application loading libtpm11.so should
// carry for a feature a production host never uses. Importing package sim
// also lets every command here use TPM11_TPM=simulator in this process.
func init() { simulatorCmd = newSimulatorCmd }

func newSimulatorCmd(g *globals) *cobra.Command {
	var listen string
	c := &cobra.Command{
		Use:   "simulator --listen unix:PATH",
		Short: "Serve a software TPM for demos and CI (no hardware protection)",
		Long: `simulator serves the Microsoft reference TPM on a socket, as swtpm serves
its TPM: one client at a time, until stopped (SIGINT, SIGTERM). The module
and this command reach it with TPM11_TPM=simulator:unix:PATH (or the config
file's tpm = simulator:unix:PATH). It prints one line once it is ready.

It gives NO hardware protection: its seed, a file in the store (--store,
TPM11_STORE), is as secret as the keys made on it. The seed makes the same
TPM every time the store is served, so keys made on it load again; its
lockout counter is kept in the store too.`,
		Example: `  tpm11 simulator --listen unix:/tmp/tpm11-sim.sock &
  TPM11_TPM=simulator:unix:/tmp/tpm11-sim.sock pkcs11-tool --module libtpm11.so -L`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			network, addr, ok := strings.Cut(listen, ":")
			if !ok || addr == "" || (network != "unix" && network != "tcp") {
				return usagef("--listen wants unix:PATH or tcp:HOST:PORT, not %q", listen)
			}
			cfg := tpmtoken.LoadConfig(g.env)
			s, err := sim.NewServer(cfg.Store)
			if err != nil {
				return err
			}
			defer s.Close()
			// Only its owner may reach it: whoever connects uses its keys.
			old := syscall.Umask(0o077)
			ln, err := net.Listen(network, addr)
			if errors.Is(err, syscall.EADDRINUSE) && network == "unix" && staleSocket(addr) {
				// Left by a server that was killed: nobody answers there.
				_ = os.Remove(addr)
				ln, err = net.Listen(network, addr)
			}
			syscall.Umask(old)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() { <-ctx.Done(); ln.Close() }()
			fmt.Fprintf(cmd.OutOrStdout(), "TPM simulator (no hardware protection) serving store %s: TPM11_TPM=simulator:%s\n", cfg.Store, listen)
			if err := s.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		},
	}
	c.Flags().StringVar(&listen, "listen", "", "where to serve it: unix:PATH or tcp:HOST:PORT")
	return c
}

// staleSocket reports whether the unix socket at path is one nobody
// listens on any more.
func staleSocket(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
