package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// importSecretCmd imports an AES or HMAC key (C_CreateObject of a
// CKO_SECRET_KEY: the TPM imports it; the value is never stored in clear).
func importSecretCmd(g *globals) *cobra.Command {
	var idHex, label, typ string
	var replace bool
	c := &cobra.Command{
		Use:   "import-secret --type aes|hmac [--id HEX] [--label LABEL] FILE",
		Short: "Import an AES or HMAC key (the raw key bytes of FILE) into the TPM",
		Long: `Import a secret key into the TPM: FILE holds the key's bytes (16, 24 or 32
for AES; 1 to 128 for an HMAC key, CKK_GENERIC_SECRET). From then on only
the TPM uses it (tpm11 encrypt/decrypt, tpm11 sign -m SHA256-HMAC); it is
never written in clear. Delete FILE afterwards.`,
		Example: `  head -c 32 /dev/urandom > aes.key && tpm11 import-secret --type aes --id 20 --label backup aes.key && shred -u aes.key`,
		Args:    exactArgs(1, "one key file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kt := map[string]ck.KeyType{"aes": ck.CKK_AES, "hmac": ck.CKK_GENERIC_SECRET, "generic": ck.CKK_GENERIC_SECRET}[typ]
			if typ == "" || (kt == 0 && typ != "aes") {
				return usagef("--type aes or --type hmac")
			}
			value, err := readInput(args[0], "key file")
			if err != nil {
				return err
			}
			defer clear(value)
			if kt == ck.CKK_AES && len(value) != 16 && len(value) != 24 && len(value) != 32 {
				return fmt.Errorf("%s holds %d bytes: an AES key is 16, 24 or 32", args[0], len(value))
			}
			var id []byte
			if idHex != "" {
				if id, err = parseID(idHex); err != nil {
					return err
				}
			}
			return g.withToken(cmd, nil, true, func(c *ctx) error {
				var old []object
				if id != nil {
					if old, err = c.idFree(id, replace); err != nil {
						return err
					}
				}
				usage := []tpmtoken.Attr{attr(ck.CKA_SIGN, []byte{1}), attr(ck.CKA_VERIFY, []byte{1})}
				if kt == ck.CKK_AES {
					usage = []tpmtoken.Attr{attr(ck.CKA_ENCRYPT, []byte{1}), attr(ck.CKA_DECRYPT, []byte{1})}
				}
				tmpl := append([]tpmtoken.Attr{tpmtoken.ULongAttr(ck.CKA_CLASS, uint64(ck.CKO_SECRET_KEY)), tpmtoken.ULongAttr(ck.CKA_KEY_TYPE, uint64(kt)),
					attr(ck.CKA_TOKEN, []byte{1}), attr(ck.CKA_PRIVATE, []byte{1}), attr(ck.CKA_SENSITIVE, []byte{1}),
					attr(ck.CKA_EXTRACTABLE, []byte{0}), attr(ck.CKA_LABEL, []byte(label)), attr(ck.CKA_VALUE, value)}, usage...)
				if id != nil {
					tmpl = append(tmpl, attr(ck.CKA_ID, id))
				}
				h, err := c.l.CreateObject(c.h, tmpl)
				if err != nil {
					return err
				}
				if err := report(c, "imported", "secret key", []uint64{h}, false, false); err != nil {
					return err
				}
				return c.replaceOld(old)
			})
		},
	}
	c.Flags().StringVar(&typ, "type", "", "aes or hmac")
	c.Flags().StringVar(&idHex, "id", "", "the key's CKA_ID in hex (default: none)")
	c.Flags().StringVar(&label, "label", "", "the key's label")
	c.Flags().BoolVar(&replace, "replace", false, "replace the objects that already use --id")
	return c
}
