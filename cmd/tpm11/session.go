package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

var stdin = bufio.NewReader(os.Stdin)

// pin reads a PIN from env, else one line of standard input.
func pin(env, what string) ([]byte, error) {
	if v, ok := os.LookupEnv(env); ok {
		return []byte(v), nil
	}
	fmt.Fprintf(os.Stderr, "%s (or set %s): ", what, env)
	line, err := stdin.ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, fmt.Errorf("no %s given", what)
	}
	if err != nil && !errors.Is(err, os.ErrClosed) && line == "" {
		return nil, err
	}
	return []byte(line), nil
}

// open starts the library from the usual configuration.
func open() (*tpmtoken.Library, error) {
	return tpmtoken.Open(tpmtoken.LoadConfig(os.Getenv))
}

// withSession runs f with the library and a R/W session on slot, the
// user logged in if login.
func withSession(slot uint64, login bool, f func(l *tpmtoken.Library, h uint64) error) error {
	l, err := open()
	if err != nil {
		return err
	}
	defer l.Close()
	h, err := session(l, slot, login)
	if err != nil {
		return err
	}
	return f(l, h)
}

// session opens a R/W session on slot and, if login, logs the user in.
func session(l *tpmtoken.Library, slot uint64, login bool) (uint64, error) {
	h, err := l.OpenSession(slot, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	if err != nil {
		return 0, err
	}
	if !login {
		return h, nil
	}
	p, err := pin("TPM11_PIN", "user PIN")
	if err != nil {
		return 0, err
	}
	return h, l.Login(h, ck.CKU_USER, p)
}

// keyFlags are the flags of the commands that name a key.
type keyFlags struct {
	fs    *flag.FlagSet
	slot  *uint64
	id    *string
	label *string
}

func newKeyFlags(name string) keyFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return keyFlags{fs: fs, slot: fs.Uint64("slot", 0, "slot"), id: fs.String("id", "", "CKA_ID in hex"),
		label: fs.String("label", "", "CKA_LABEL")}
}

func (k keyFlags) parse(args []string, needID bool) ([]byte, error) {
	if err := k.fs.Parse(args); err != nil {
		return nil, err
	}
	if *k.id == "" {
		if needID {
			return nil, errors.New("-id is required")
		}
		return nil, nil
	}
	id, err := hex.DecodeString(*k.id)
	if err != nil || len(id) == 0 {
		return nil, fmt.Errorf("-id %q is not hex", *k.id)
	}
	return id, nil
}

// find returns the objects matching tmpl.
func find(l *tpmtoken.Library, h uint64, tmpl ...tpmtoken.Attr) ([]uint64, error) {
	if err := l.FindObjectsInit(h, tmpl); err != nil {
		return nil, err
	}
	defer l.FindObjectsFinal(h)
	return l.FindObjects(h, 1<<20)
}

func attr(t ck.AttributeType, v []byte) tpmtoken.Attr { return tpmtoken.Attr{Type: t, Value: v} }

// ulong encodes a CK_ULONG as the library expects it: 8 bytes, host order.
func ulong[T ~uint64](v T) []byte { return binary.NativeEndian.AppendUint64(nil, uint64(v)) }

var yes = []byte{1}
