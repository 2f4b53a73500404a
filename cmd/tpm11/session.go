package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

type pflagFlag = pflag.Flag

// slotFlag is --slot: -1 when not given (and then not shown as a default).
type slotFlag int

func (s *slotFlag) String() string {
	if *s < 0 {
		return ""
	}
	return strconv.Itoa(int(*s))
}

func (s *slotFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return fmt.Errorf("not a slot number: %q", v)
	}
	*s = slotFlag(n)
	return nil
}

func (s *slotFlag) Type() string { return "N" }

// globals are the flags every command has, and what they resolve to.
type globals struct {
	token, store, config, tpm      string
	slot                           int
	pinFile, soPINFile, newPINFile string
	cfg                            tpmtoken.Config
}

func (g *globals) register(root *cobra.Command) {
	g.slot = -1
	f := root.PersistentFlags()
	f.StringVar(&g.token, "token", os.Getenv("TPM11_TOKEN"), "the token: its label, serial or a pkcs11: URI (env TPM11_TOKEN)")
	f.Var((*slotFlag)(&g.slot), "slot", "the token by slot number")
	f.StringVar(&g.pinFile, "pin-file", "", "read the user PIN from the first line of this file")
	f.StringVar(&g.soPINFile, "so-pin-file", "", "read the SO PIN from the first line of this file")
	f.StringVar(&g.newPINFile, "new-pin-file", "", "read the new PIN (set-pin, reset-pin, set-so-pin) from this file")
	f.StringVar(&g.store, "store", "", "token store directory (overrides TPM11_STORE and the config file)")
	f.StringVar(&g.config, "config", "", "config file (overrides TPM11_CONFIG)")
	f.StringVar(&g.tpm, "tpm", "", "TPM backend: device:/dev/tpmrm0, swtpm:unix:PATH, swtpm:tcp:HOST:PORT, simulator:unix:PATH, simulator (overrides TPM11_TPM)")
	_ = root.RegisterFlagCompletionFunc("token", cobra.NoFileCompletions)
	_ = root.RegisterFlagCompletionFunc("slot", cobra.NoFileCompletions)
	_ = root.RegisterFlagCompletionFunc("tpm", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"device:/dev/tpmrm0", "swtpm:unix:", "swtpm:tcp:", "simulator:unix:", "simulator"}, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	})
}

// env is the environment with the command line's overrides.
func (g *globals) env(k string) string {
	switch {
	case k == "TPM11_STORE" && g.store != "":
		return g.store
	case k == "TPM11_CONFIG" && g.config != "":
		return g.config
	case k == "TPM11_TPM" && g.tpm != "":
		return g.tpm
	}
	return os.Getenv(k)
}

// open starts the library from the configuration.
func (g *globals) open() (*tpmtoken.Library, error) {
	if p := g.durationProblems(); len(p) > 0 {
		return nil, fmt.Errorf("%s: fix or unset it (tpm11 info shows the configuration)", p[0])
	}
	return g.openLib()
}

// openLib opens the library with whatever configuration there is (info
// reports the mistakes in it).
func (g *globals) openLib() (*tpmtoken.Library, error) {
	g.cfg = tpmtoken.LoadConfig(g.env)
	l, err := tpmtoken.Open(g.cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot open the store %s: %w", g.cfg.Store, errors.Unwrap(err))
	}
	return l, nil
}

// token is an initialized token and its slot.
type token struct {
	Slot uint64
	tpmtoken.TokenInfo
}

func (t token) String() string { return fmt.Sprintf("%q (serial %s)", t.Label, t.Serial) }

// URI is the token's pkcs11: URI.
func (t token) URI() string { return (&p11uri{token: t.Label, serial: t.Serial}).String() }

// tokens lists the initialized tokens; it fails when there is no TPM.
func tokens(l *tpmtoken.Library) ([]token, error) {
	var out []token
	for _, id := range l.SlotList(false) {
		ti, err := l.TokenInfo(id)
		if err != nil {
			if ck.ToRV(err) == ck.CKR_TOKEN_NOT_PRESENT {
				return nil, noTPM(l, err)
			}
			return nil, err
		}
		if ti.Flags&ck.CKF_TOKEN_INITIALIZED != 0 {
			out = append(out, token{id, ti})
		}
	}
	return out, nil
}

func noTPM(l *tpmtoken.Library, err error) error {
	if _, derr := l.Diagnose(); derr != nil {
		err = derr
	}
	var ce *ck.Error
	if errors.As(err, &ce) && ce.Cause != nil {
		err = ce.Cause
	}
	return fmt.Errorf("no TPM: %v (TPM11_TPM / --tpm chooses the backend; tpm11 info)", err)
}

// emptySlot is the slot a new token goes into.
func emptySlot(l *tpmtoken.Library) (uint64, error) {
	for _, id := range l.SlotList(false) {
		ti, err := l.TokenInfo(id)
		if err != nil {
			return 0, noTPM(l, err)
		}
		if ti.Flags&ck.CKF_TOKEN_INITIALIZED == 0 {
			return id, nil
		}
	}
	return 0, errors.New("no free slot")
}

// selected reports whether the command line names a token.
func (g *globals) selected(uri *p11uri) bool {
	return g.slot >= 0 || g.token != "" || (uri != nil && uri.namesToken())
}

// pick chooses the token the command line names (--slot, --token, the
// token part of an object's pkcs11: URI), or the only token there is.
func (g *globals) pick(l *tpmtoken.Library, uri *p11uri) (token, error) {
	all, err := tokens(l)
	if err != nil {
		return token{}, err
	}
	if g.slot >= 0 {
		for _, t := range all {
			if t.Slot == uint64(g.slot) {
				return t, nil
			}
		}
		return token{}, fmt.Errorf("slot %d holds no token (tpm11 info lists them)", g.slot)
	}
	var sels []*p11uri
	if g.token != "" {
		s, err := tokenSelector(g.token)
		if err != nil {
			return token{}, err
		}
		sels = append(sels, s)
	}
	if uri != nil && uri.namesToken() {
		sels = append(sels, uri)
	}
	var match []token
	for _, t := range all {
		ok := true
		for _, s := range sels {
			ok = ok && s.matchesToken(t)
		}
		if ok {
			match = append(match, t)
		}
	}
	switch {
	case len(all) == 0:
		return token{}, errors.New("there is no token yet: tpm11 init --label NAME makes one")
	case len(match) == 1:
		return match[0], nil
	case len(match) == 0:
		return token{}, fmt.Errorf("no token matches %s; there are: %s", describeSel(g.token, uri), list(all))
	case len(sels) == 0:
		return token{}, fmt.Errorf("%d tokens: choose one with --token (label, serial or pkcs11: URI): %s", len(all), list(all))
	default:
		return token{}, fmt.Errorf("%s matches %d tokens: %s; name it by serial", describeSel(g.token, uri), len(match), list(match))
	}
}

func describeSel(tok string, uri *p11uri) string {
	if tok != "" {
		return fmt.Sprintf("--token %q", tok)
	}
	return uri.String()
}

func list(ts []token) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.String())
	}
	return strings.Join(s, ", ")
}

// tokenSelector reads --token: a pkcs11: URI, a serial or a label.
func tokenSelector(s string) (*p11uri, error) {
	if strings.HasPrefix(s, "pkcs11:") {
		u, err := parseURI(s)
		if err != nil {
			return nil, usageError{err}
		}
		if !u.namesToken() {
			return nil, usagef("--token %q names no token (token=, serial=, model=, manufacturer= or slot-id=)", s)
		}
		return u, nil
	}
	return &p11uri{labelOrSerial: s}, nil
}

// session opens a R/W session on t.
func session(l *tpmtoken.Library, t token) (uint64, error) {
	return l.OpenSession(t.Slot, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
}

// login logs who in with pin, explaining a refusal: how many tries the
// TPM still allows, or that it is locked out.
func login(l *tpmtoken.Library, h uint64, who ck.UserType, pin []byte) error {
	what := map[ck.UserType]string{ck.CKU_SO: "SO PIN", ck.CKU_USER: "user PIN"}[who]
	switch {
	case len(pin) == 0:
		return fmt.Errorf("the %s given is empty: nothing was tried", what)
	case len(pin) > tpmtoken.MaxPINLen:
		return fmt.Errorf("the %s given is %d bytes, longer than any tpm11 PIN (at most %d): nothing was tried", what, len(pin), tpmtoken.MaxPINLen)
	}
	if err := l.Login(h, who, pin); err != nil {
		return explainPIN(l, who, err)
	}
	return nil
}

func (g *globals) userPIN(t token) ([]byte, error) {
	return readPIN(fmt.Sprintf("user PIN for token %q", t.Label), "TPM11_PIN", g.pinFile)
}

func (g *globals) soPIN(t token) ([]byte, error) {
	return readPIN(fmt.Sprintf("SO PIN for token %q", t.Label), "TPM11_SO_PIN", g.soPINFile)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
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

// getAttrs reads the attributes of obj that it has (others are left out).
func getAttrs(l *tpmtoken.Library, h, obj uint64, types ...ck.AttributeType) (tpmtoken.Attrs, error) {
	res, err := l.GetAttributeValue(h, obj, types)
	if err != nil {
		return nil, err
	}
	a := tpmtoken.Attrs{}
	for i, r := range res {
		if r.RV == ck.CKR_OK {
			a[types[i]] = r.Value
		}
	}
	return a, nil
}

// parseID reads a CKA_ID given in hex ("01", "0x01", "a1:b2").
func parseID(s string) ([]byte, error) {
	h := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(s), "0x"), ":", "")
	if len(h) > 128 {
		return nil, usagef("--id %q is longer than 64 bytes", s)
	}
	if len(h)%2 == 1 {
		h = "0" + h
	}
	id := make([]byte, len(h)/2)
	for i := range id {
		b, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, usagef("--id %q is not hexadecimal (e.g. --id 01)", s)
		}
		id[i] = byte(b)
	}
	if len(id) == 0 {
		return nil, usagef("--id is empty")
	}
	return id, nil
}

// freeID is the smallest one-byte CKA_ID no object of the token uses.
func freeID(l *tpmtoken.Library, h uint64) ([]byte, error) {
	objs, err := find(l, h)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, o := range objs {
		a, err := getAttrs(l, h, o, ck.CKA_ID)
		if err != nil {
			return nil, err
		}
		used[string(a[ck.CKA_ID])] = true
	}
	for b := 1; b < 256; b++ {
		if !used[string([]byte{byte(b)})] {
			return []byte{byte(b)}, nil
		}
	}
	return nil, errors.New("every one-byte ID is used: give --id")
}

// checkLabel bounds a label given on the command line.
func checkLabel(label string, max int) error {
	if len(label) > max {
		return usagef("--label is %d bytes; at most %d", len(label), max)
	}
	if strings.ContainsFunc(label, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return usagef("--label has control characters")
	}
	if max == maxTokenLabel && strings.HasSuffix(label, " ") {
		// CK_TOKEN_INFO.label is padded with spaces: they would vanish.
		return usagef("--label %q ends in spaces, which a token label cannot keep (PKCS#11 pads it with spaces)", label)
	}
	return nil
}

// classOrder sorts objects of one ID: keys first, then certificates.
var classOrder = []ck.ObjectClass{ck.CKO_PRIVATE_KEY, ck.CKO_PUBLIC_KEY, ck.CKO_SECRET_KEY, ck.CKO_CERTIFICATE, ck.CKO_DATA}

func classRank(c ck.ObjectClass) int {
	if i := slices.Index(classOrder, c); i >= 0 {
		return i
	}
	return len(classOrder)
}
