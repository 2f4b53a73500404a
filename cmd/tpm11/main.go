// Command tpm11 provisions, inspects and diagnoses tpm11 tokens: the same
// store and TPM the PKCS#11 module uses, through the same library.
//
// PINs come from a file (--pin-file, --so-pin-file, --new-pin-file), the
// environment (TPM11_PIN, TPM11_SO_PIN, TPM11_NEW_PIN, TPM11_NEW_SO_PIN), a
// prompt that does not echo (new PINs asked twice), or one line of standard
// input when it is not a terminal; never from the command line, where other
// users could see them.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/version"
)

// Exit codes: 0 done, 1 failed, 2 the command line is wrong, 70 a bug.
const (
	exitFailed   = 1
	exitUsage    = 2
	exitSoftware = 70
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run executes one command line. Every failure is one line on stderr and a
// non-zero exit, never a stack trace.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "tpm11: internal error: %v (please report it)\n", r)
			code = exitSoftware
		}
	}()
	root := newRoot()
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(legacyFlags(root, args))
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	name := "tpm11"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(explain(err)))
	var u usageError
	if errors.As(err, &u) || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitFailed
}

// usageError is a wrong command line: exit code 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "tpm11",
		Short: "Provision and inspect tpm11 tokens: PKCS#11 keys that live in a TPM 2.0",
		Long: `tpm11 provisions, inspects and diagnoses tpm11 tokens: the same store and
TPM the PKCS#11 module (libtpm11.so) uses. Keys are generated in or
imported into the TPM; only TPM-wrapped blobs reach the disk.

Choose the token with --token (its label, serial or a pkcs11: URI) when
there is more than one. PINs come from --pin-file/--so-pin-file/--new-pin-file,
the environment (TPM11_PIN, TPM11_SO_PIN, TPM11_NEW_PIN, TPM11_NEW_SO_PIN),
a prompt that does not echo, or one line of standard input.

Configuration: TPM11_TPM, TPM11_STORE, TPM11_LOG, TPM11_CONFIG or the config
file (tpm11 info shows which file was read).`,
		Example: `  tpm11 init --label mytoken
  tpm11 keygen --type ec:p256 --label ssh
  tpm11 list
  ssh-keygen -D /usr/lib/x86_64-linux-gnu/pkcs11/libtpm11.so`,
		Version:           version.Version,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		RunE: func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, c := range cmd.Commands() {
				if c.IsAvailableCommand() && c.Name() != "help" && c.Name() != "completion" {
					names = append(names, c.Name())
				}
			}
			return usagef("name a command: %s (tpm11 --help)", strings.Join(names, ", "))
		},
	}
	root.SetVersionTemplate("tpm11 {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g := &globals{}
	g.register(root)
	root.AddGroup(&cobra.Group{ID: "token", Title: "Tokens:"}, &cobra.Group{ID: "keys", Title: "Keys and certificates:"})
	for _, c := range []*cobra.Command{
		infoCmd(g), initCmd(g), deleteTokenCmd(g), setPINCmd(g), resetPINCmd(g), setSOPINCmd(g), selftestCmd(g),
	} {
		c.GroupID = "token"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{
		listCmd(g), keygenCmd(g), importCmd(g), importCertCmd(g), csrCmd(g), exportCmd(g), deleteCmd(g), migrateCmd(g),
		signCmd(g), verifyCmd(g), cipherCmd(g, false), cipherCmd(g, true), mechanismsCmd(g), importSecretCmd(g), renameCmd(g), importCACmd(g),
		backupCmd(g), restoreCmd(g),
		acmeCmd(g), // acme.go
	} {
		c.GroupID = "keys"
		root.AddCommand(c)
	}
	for _, c := range attestCmds(g) { // attest.go
		c.GroupID = "keys"
		root.AddCommand(c)
	}
	if simulatorCmd != nil { // simulator.go, unless built with nosimulator
		c := simulatorCmd(g)
		c.GroupID = "token"
		root.AddCommand(c)
	}
	addHidden(root, g)
	for _, c := range root.Commands() {
		if c.Args == nil {
			c.Args = noArgs
		}
	}
	return root
}

// simulatorCmd makes `tpm11 simulator` (simulator.go).
var simulatorCmd func(*globals) *cobra.Command

// addHidden is where builds with extra tags (mangen) add their commands.
var addHidden = func(*cobra.Command, *globals) {}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q (tpm11 %s --help)", args[0], cmd.Name())
	}
	return nil
}

// maxArgs allows up to n positional arguments.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("unexpected argument %q: %s takes %s", args[n], cmd.Name(), what)
		}
		return nil
	}
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s", cmd.Name(), what)
		}
		return nil
	}
}

// legacyFlags lets the single-dash long flags of tpm11 0.1 (Go's flag
// package: -id 01, -label x) keep working: an argument "-name" or
// "-name=value" whose name is a long flag of some command becomes "--name".
func legacyFlags(root *cobra.Command, args []string) []string {
	known := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflagFlag) { known[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflagFlag) { known[f.Name] = true })
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && known[name] {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}
