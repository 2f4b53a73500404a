// Command tpm11 provisions, inspects and diagnoses tpm11 tokens: the same
// store and TPM the PKCS#11 module uses, through the same library.
//
// PINs are read from TPM11_PIN / TPM11_SO_PIN, else from standard input (one
// line each), never from the command line where other users could see them.
package main

import (
	"fmt"
	"os"
)

var commands = []struct {
	name, args, help string
	run              func(args []string) error
}{
	{"info", "", "configuration, TPM, its capabilities and lockout state, tokens", cmdInfo},
	{"init", "[-slot N] -label LABEL", "initialize a token (destroying one already there) and set its PINs", cmdInit},
	{"set-pin", "[-slot N]", "change the user PIN (TPM11_PIN, then the new one from TPM11_NEW_PIN or stdin)", cmdSetPIN},
	{"reset-pin", "[-slot N]", "as SO (TPM11_SO_PIN), give the user a new PIN (TPM11_NEW_PIN or stdin); keys are kept", cmdResetPIN},
	{"list", "[-slot N]", "list objects (private ones too when TPM11_PIN is set)", cmdList},
	{"keygen", "-type ec:p256|ec:p384|ec:p521|rsa:2048|rsa:3072 -id HEX [-label L]", "make a key pair in the TPM; prints its public key", cmdKeygen},
	{"import", "-id HEX [-label L] FILE.pem", "import a PEM private key (and a certificate in the same file) into the TPM", cmdImport},
	{"export", "-id HEX [-cert]", "print the public key (or certificate) with this ID as PEM", cmdExport},
	{"delete", "-id HEX", "destroy every object with this ID", cmdDelete},
	{"selftest", "", "sign with a temporary key in the TPM and verify it", cmdSelftest},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tpm11 COMMAND [flags]")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n  %9s %s\n", c.name, c.args, "", c.help)
	}
	fmt.Fprintln(os.Stderr, "configuration: TPM11_TPM, TPM11_STORE, TPM11_LOG or the config file (see README)")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	for _, c := range commands {
		if c.name == os.Args[1] {
			if err := c.run(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "tpm11 "+c.name+":", err)
				os.Exit(1)
			}
			return
		}
	}
	usage()
	os.Exit(2)
}
