package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/tpmtoken/tpm2pkcs11db"
)

// migrateCmd takes over a tpm2-pkcs11 token's keys (tpmtoken/migrate.go).
func migrateCmd(g *globals) *cobra.Command {
	var from, fromToken, fromPINFile string
	var asJSON bool
	c := &cobra.Command{
		Use:   "migrate [--from DIR] [--from-token LABEL]",
		Short: "Take over the keys of a tpm2-pkcs11 token, without them leaving the TPM",
		Long: `Take over a tpm2-pkcs11 token (its store: tpm2_pkcs11.sqlite3, made by
tpm2_ptool) into this tpm11 token. Each RSA and EC key becomes a tpm11 key on
the same TPM object: same public key, same label and ID; certificates and
data objects are copied. The key stays under tpm2-pkcs11's primary key (a
persistent key, 0x81000001 by default: leave it there); its authorization
is recovered with the tpm2-pkcs11 user PIN and kept, encrypted, under this
token's user PIN. The tpm2-pkcs11 store is only read: tpm2-pkcs11 keeps
working as before. Objects that cannot be taken over (AES and HMAC keys)
are listed, and so is why.

Nothing is written unless every key's authorization was recovered and proven
in the TPM: a wrong PIN changes nothing (the TPM counts it, as tpm2-pkcs11's
own login does). The tpm2-pkcs11 user PIN comes from --from-pin-file,
TPM11_FROM_PIN, a prompt, or the first line of standard input (then the
tpm11 user PIN on the second).

The store is --from, else the first tpm2_pkcs11.sqlite3 where tpm2-pkcs11
looks: $TPM2_PKCS11_STORE, /etc/tpm2_pkcs11, ~/.tpm2_pkcs11, the current
directory.`,
		Example: `  tpm11 migrate --from ~/.tpm2_pkcs11 --from-token mytoken
  ssh-keygen -D /usr/lib/x86_64-linux-gnu/pkcs11/libtpm11.so   # the same public keys`,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := tpm2pkcs11Store(from)
			if err != nil {
				return err
			}
			st, err := tpm2pkcs11db.Open(path)
			if err != nil {
				return err
			}
			src, err := st.Token(fromToken)
			if err != nil {
				return err
			}
			pin, err := readPIN(fmt.Sprintf("tpm2-pkcs11 user PIN for token %q", src.Label), "TPM11_FROM_PIN", fromPINFile)
			if err != nil {
				return err
			}
			defer clear(pin)
			return g.withToken(cmd, nil, true, func(c *ctx) error {
				m, err := c.l.MigrateTPM2PKCS11(c.h, src, pin)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.out, m)
				}
				for _, k := range m.Keys {
					fmt.Fprintf(c.out, "migrated: %s (and its public key)\n", k)
				}
				for _, x := range append(m.Certificates, m.Data...) {
					fmt.Fprintf(c.out, "copied: %s\n", x)
				}
				for _, x := range m.Skipped {
					fmt.Fprintf(cmd.ErrOrStderr(), "not taken over: %s\n", x)
				}
				fmt.Fprintf(c.out, "%d %s, %d certificate(s), %d data object(s) taken over from tpm2-pkcs11 token %q into %q; %d not taken over; %s unchanged\n",
					len(m.Keys), plural(len(m.Keys), "key", "keys"), len(m.Certificates), len(m.Data), src.Label, c.t.Label, len(m.Skipped), st.Path)
				return nil
			})
		},
	}
	f := c.Flags()
	f.StringVar(&from, "from", "", "the tpm2-pkcs11 store: its directory or tpm2_pkcs11.sqlite3")
	f.StringVar(&fromToken, "from-token", "", "the tpm2-pkcs11 token's label (needed when the store has more than one)")
	f.StringVar(&fromPINFile, "from-pin-file", "", "read the tpm2-pkcs11 user PIN from the first line of this file")
	f.BoolVar(&asJSON, "json", false, "print what was done as JSON")
	return c
}

// tpm2pkcs11Store finds the store as tpm2-pkcs11 does.
func tpm2pkcs11Store(from string) (string, error) {
	if from != "" {
		return from, nil
	}
	var tried []string
	cands := []string{os.Getenv("TPM2_PKCS11_STORE"), "/etc/tpm2_pkcs11"}
	if home, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(home, ".tpm2_pkcs11"))
	}
	cands = append(cands, ".")
	for _, d := range cands {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "tpm2_pkcs11.sqlite3")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", errors.New("no tpm2-pkcs11 store found (looked at " + fmt.Sprint(tried) + "): name it with --from")
}
