package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// ctx is an open session on the chosen token.
type ctx struct {
	g   *globals
	l   *tpmtoken.Library
	t   token
	h   uint64
	uri *p11uri
	out io.Writer
	// loggedIn: private objects are visible.
	loggedIn bool
}

// withToken opens the library, picks the token (uri may name it), opens a
// R/W session and, if login, logs the user in.
func (g *globals) withToken(cmd *cobra.Command, uri *p11uri, login bool, f func(c *ctx) error) error {
	l, err := g.open()
	if err != nil {
		return err
	}
	defer l.Close()
	t, err := g.pick(l, uri)
	if err != nil {
		return err
	}
	h, err := session(l, t)
	if err != nil {
		return err
	}
	c := &ctx{g: g, l: l, t: t, h: h, uri: uri, out: cmd.OutOrStdout()}
	if login {
		if err := c.login(); err != nil {
			return err
		}
	}
	return f(c)
}

func (c *ctx) login() error {
	p, ok, err := uriPIN(c.uri)
	if err != nil {
		return err
	}
	if !ok {
		if p, err = c.g.userPIN(c.t); err != nil {
			return err
		}
	}
	if err := login(c.l, c.h, ck.CKU_USER, p); err != nil {
		return err
	}
	c.loggedIn = true
	return nil
}

// pinAvailable: a PIN can be had without blocking on a pipe.
func (c *ctx) pinAvailable() bool {
	if _, ok, _ := uriPIN(c.uri); ok {
		return true
	}
	_, env := os.LookupEnv("TPM11_PIN")
	return c.g.pinFile != "" || env || interactive() || stdinGiven()
}

// stdinGiven: standard input is a pipe or a non-empty file (echo PIN |
// tpm11 list), not a terminal, /dev/null or nothing.
func stdinGiven() bool {
	st, err := os.Stdin.Stat()
	if err != nil {
		return false
	}
	return st.Mode()&os.ModeNamedPipe != 0 || (st.Mode().IsRegular() && st.Size() > 0)
}

// objects describes the objects matching tmpl, sorted.
func (c *ctx) objects(tmpl ...tpmtoken.Attr) ([]object, error) {
	hs, err := find(c.l, c.h, tmpl...)
	if err != nil {
		return nil, err
	}
	var out []object
	for _, h := range hs {
		o, err := describe(c.l, c.h, c.t, h)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	sortObjects(out)
	return out, nil
}

// idFree refuses an ID that objects already use, unless replace; it
// returns those objects (to destroy once the new ones exist).
func (c *ctx) idFree(id []byte, replace bool) ([]object, error) {
	old, err := c.objects(attr(ck.CKA_ID, id))
	if err != nil || len(old) == 0 {
		return nil, err
	}
	if !replace {
		return nil, fmt.Errorf("id %x is already used by %s: choose another --id, delete them (tpm11 delete --id %x), or give --replace",
			id, describeAll(old), id)
	}
	return old, nil
}

func describeAll(objs []object) string {
	s := ""
	for i, o := range objs {
		if i > 0 {
			s += ", "
		}
		s += o.String()
	}
	return s
}

// replaceOld destroys the objects a --replace displaced.
func (c *ctx) replaceOld(old []object) error {
	for _, o := range old {
		if err := c.l.DestroyObject(c.h, o.handle); err != nil {
			return fmt.Errorf("the new objects are made, but the old %s could not be destroyed: %w", o, err)
		}
		fmt.Fprintf(os.Stderr, "replaced: %s\n", o)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

// tokenJSON is a token in --json output.
type tokenJSON struct {
	Slot          uint64 `json:"slot"`
	Label         string `json:"label"`
	Serial        string `json:"serial"`
	Manufacturer  string `json:"manufacturer"`
	Model         string `json:"model"`
	UserPINSet    bool   `json:"user_pin_set"`
	UserPINLow    bool   `json:"user_pin_count_low,omitempty"`
	UserPINLocked bool   `json:"user_pin_locked,omitempty"`
	URI           string `json:"uri"`
}

func (t token) json() tokenJSON {
	return tokenJSON{Slot: t.Slot, Label: t.Label, Serial: t.Serial, Manufacturer: t.Manufacturer, Model: t.Model,
		UserPINSet: t.Flags&ck.CKF_USER_PIN_INITIALIZED != 0, UserPINLow: t.Flags&ck.CKF_USER_PIN_COUNT_LOW != 0,
		UserPINLocked: t.Flags&ck.CKF_USER_PIN_LOCKED != 0, URI: t.URI()}
}
