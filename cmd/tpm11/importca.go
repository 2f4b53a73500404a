package main

import (
	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// importCACmd stores a CA certificate as trusted (CKA_TRUSTED, category
// authority): only the SO may mark a certificate trusted (PKCS#11 4.6.3).
func importCACmd(g *globals) *cobra.Command {
	var idHex, label string
	c := &cobra.Command{
		Use:   "import-ca [--label LABEL] [--id HEX] CERT-FILE",
		Short: "Store a CA certificate as trusted (as the SO)",
		Long: `Store a CA certificate on the token, marked trusted (CKA_TRUSTED, category
"authority"): applications that look for trust anchors in the token find it.
Only the security officer may mark a certificate trusted: the SO PIN is
asked for (--so-pin-file, TPM11_SO_PIN, a prompt).`,
		Example: `  tpm11 import-ca --label "Example Root CA" root.crt`,
		Args:    exactArgs(1, "one certificate file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cert, err := readCertFile(args[0])
			if err != nil {
				return err
			}
			var id []byte
			if idHex != "" {
				if id, err = parseID(idHex); err != nil {
					return err
				}
			}
			if label == "" {
				label = cert.Subject.CommonName
			}
			return g.withToken(cmd, nil, false, func(c *ctx) error {
				pin, err := g.soPIN(c.t)
				if err != nil {
					return err
				}
				defer clear(pin)
				if err := login(c.l, c.h, ck.CKU_SO, pin); err != nil {
					return err
				}
				tmpl := []tpmtoken.Attr{tpmtoken.ULongAttr(ck.CKA_CLASS, uint64(ck.CKO_CERTIFICATE)), tpmtoken.ULongAttr(ck.CKA_CERTIFICATE_TYPE, 0),
					attr(ck.CKA_TOKEN, []byte{1}), attr(ck.CKA_PRIVATE, []byte{0}), attr(ck.CKA_TRUSTED, []byte{1}),
					tpmtoken.ULongAttr(ck.CKA_CERTIFICATE_CATEGORY, 2), attr(ck.CKA_LABEL, []byte(label)), attr(ck.CKA_VALUE, cert.Raw),
					attr(ck.CKA_SUBJECT, cert.RawSubject), attr(ck.CKA_ISSUER, cert.RawIssuer)}
				if id != nil {
					tmpl = append(tmpl, attr(ck.CKA_ID, id))
				}
				h, err := c.l.CreateObject(c.h, tmpl)
				if err != nil {
					return err
				}
				return report(c, "stored trusted", "CA certificate", []uint64{h}, false, false)
			})
		},
	}
	c.Flags().StringVar(&idHex, "id", "", "the certificate's CKA_ID in hex (default: none)")
	c.Flags().StringVar(&label, "label", "", "the certificate's label (default: its subject's common name)")
	return c
}
