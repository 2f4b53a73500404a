package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tpm11/tpm11/tpmtoken"
	"golang.org/x/term"
)

// Secrets (PINs, passphrases) come, in this order, from a file named on
// the command line, the environment, a prompt that does not echo (stdin is
// a terminal), or one line of standard input.

var stdin = bufio.NewReader(os.Stdin)

// maxSecretFile bounds a PIN or passphrase file: /dev/zero is not a PIN.
const maxSecretFile = 4096

func interactive() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

// secretFile reads the first line of path.
func secretFile(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s file: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s file %s: %w", what, path, err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s file %s is longer than %d bytes: not a %s", what, path, maxSecretFile, what)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, fmt.Errorf("%s file %s is empty", what, path)
	}
	return line, nil
}

// prompt asks on the terminal without echo, or reads one line of stdin.
func prompt(label string) ([]byte, error) {
	if interactive() {
		fmt.Fprintf(os.Stderr, "%s: ", label)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("reading the %s: %w", label, err)
		}
		return b, nil
	}
	line, err := stdin.ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("the %s on standard input is too long", label)
		}
		return nil, err
	}
	line = bytes.TrimRight(line, "\r\n")
	if len(line) == 0 {
		return nil, fmt.Errorf("no %s given (standard input is not a terminal)", label)
	}
	return bytes.Clone(line), nil
}

// readPIN returns an existing PIN.
func readPIN(what, env, file string) ([]byte, error) {
	if file != "" {
		return secretFile(file, "PIN")
	}
	if v, ok := os.LookupEnv(env); ok {
		return []byte(v), nil
	}
	return prompt(what)
}

// readNewPIN returns a new PIN, asked twice on a terminal, checked for
// length before anything is changed.
func readNewPIN(what, env, file string) ([]byte, error) {
	var p []byte
	var err error
	switch v, ok := os.LookupEnv(env); {
	case file != "":
		p, err = secretFile(file, "PIN")
	case ok:
		p = []byte(v)
	case interactive():
		if p, err = prompt(what); err != nil {
			return nil, err
		}
		if err := checkPINLen(what, p); err != nil {
			return nil, err
		}
		again, err := prompt(what + " again")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, again) {
			return nil, fmt.Errorf("the two %ss differ: nothing changed", what)
		}
	default:
		p, err = prompt(what)
	}
	if err != nil {
		return nil, err
	}
	return p, checkPINLen(what, p)
}

func checkPINLen(what string, p []byte) error {
	if len(p) < tpmtoken.MinPINLen || len(p) > tpmtoken.MaxPINLen {
		return fmt.Errorf("the %s must be %d to %d bytes long; it is %d: nothing changed", what, tpmtoken.MinPINLen, tpmtoken.MaxPINLen, len(p))
	}
	return nil
}

// needPassphrase: an encrypted file and no way to ask for its passphrase.
type needPassphrase struct{ error }

// passphrase is for an encrypted key file.
func passphrase(file, name string) ([]byte, error) {
	if file != "" {
		return secretFile(file, "passphrase")
	}
	if v, ok := os.LookupEnv("TPM11_PASSPHRASE"); ok {
		return []byte(v), nil
	}
	if !interactive() {
		return nil, needPassphrase{fmt.Errorf("%s is encrypted: give its passphrase with --passphrase-file or TPM11_PASSPHRASE", name)}
	}
	return prompt("passphrase for " + name)
}
