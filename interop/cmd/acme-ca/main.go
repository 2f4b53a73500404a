// Command acme-ca runs stock step-ca (package acmeca) for
// testdata/acme-test.sh: an ACME provisioner with device-attest-01
// trusting the attestation CA in -attestation-roots, state in -dir. Once
// the CA answers it prints the ACME directory URL and the root
// certificate's file, one a line, and runs until SIGTERM/SIGINT.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tpm11/tpm11/interop/acmeca"
)

func main() {
	dir := flag.String("dir", "", "state directory (created)")
	roots := flag.String("attestation-roots", "", "PEM file: the attestation CA(s) that enroll AKs")
	flag.Parse()
	if *dir == "" || *roots == "" {
		fmt.Fprintln(os.Stderr, "usage: acme-ca -dir DIR -attestation-roots FILE")
		os.Exit(2)
	}
	pem, err := os.ReadFile(*roots)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := acmeca.Start(*dir, pem)
	if err != nil {
		fmt.Fprintln(os.Stderr, "step-ca:", err)
		os.Exit(1)
	}
	fmt.Printf("%s\n%s\n", c.Directory, c.Root)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "step-ca stop:", err)
	}
}
