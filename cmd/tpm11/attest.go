package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// What a TPM can prove (docs/attestation.md): attest, verify-attestation,
// enroll-ak, policy (approvals for keys bound to PCRs), tss2 (key files).

// attestCmds are the commands of this file, in the "keys" group.
func attestCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{attestCmd(g), verifyAttestationCmd(g), enrollAKCmd(g), caCmd(g), policyCmd(g), tss2Cmd(g)}
}

// privateKey finds the one private key the selection names, logging in
// first when a PIN can be had (a private key is invisible before).
func (c *ctx) privateKey(tmpl []tpmtoken.Attr) (object, error) {
	if !c.loggedIn && c.pinAvailable() {
		if err := c.login(); err != nil {
			return object{}, err
		}
	}
	objs, err := c.objects(append(tmpl, tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_PRIVATE_KEY))...)
	if err != nil {
		return object{}, err
	}
	switch len(objs) {
	case 0:
		if !c.loggedIn {
			return object{}, errors.New("no private key matches (a private one needs the user PIN: TPM11_PIN, --pin-file or a terminal)")
		}
		return object{}, errors.New("no private key matches")
	case 1:
		return objs[0], nil
	}
	return object{}, fmt.Errorf("%d private keys match: %s; name one by --id", len(objs), describeAll(objs))
}

// readCerts reads every certificate of PEM files.
func readCerts(paths []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range paths {
		data, err := readInput(p, "certificate")
		if err != nil {
			return nil, err
		}
		n := 0
		for rest := data; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			out = append(out, c)
			n++
		}
		if n == 0 {
			c, err := readCertFile(p)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
	}
	return out, nil
}

func pool(paths []string) (*x509.CertPool, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	cs, err := readCerts(paths)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p, nil
}

func parseNonce(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil || len(b) > 64 {
		return nil, usagef("--nonce %q: hex, at most 64 bytes", s)
	}
	return b, nil
}

func writeOut(c *ctx, outFile string, data []byte) error {
	if outFile != "" {
		return os.WriteFile(outFile, data, 0o644)
	}
	_, err := c.out.Write(data)
	return err
}

func attestCmd(g *globals) *cobra.Command {
	var sel objectFlags
	var nonceHex, format, outFile, akType, rpID, cdhHex string
	var ekChain []string
	c := &cobra.Command{
		Use:   "attest (--id HEX | --label LABEL | pkcs11:URI) [--nonce HEX] [--format json|pem|acme|webauthn]",
		Short: "Evidence that a key was made in this TPM and cannot leave it",
		Long: `Have the TPM's attestation key certify a key (TPM2_Certify, with the
verifier's --nonce) and print the evidence: JSON (the key's TPM public area,
the attestation and signature, the AK, the EK certificate from the TPM's NV),
the same in a PEM block, or a "tpm" attestation object (CBOR) in one of two
shapes: --format acme, the attObj of ACME device-attest-01 as step-ca reads
it (--nonce: SHA-256 of the key authorization), or --format webauthn, as
WebAuthn libraries read it (authData for --rp-id; the nonce is
SHA-256(authData || --client-data-hash)). Both need an AK certificate
(tpm11 enroll-ak). Only keys generated in the TPM get evidence.
docs/attestation.md describes the formats.`,
		Example: `  tpm11 attest --id 01 --nonce 0102 > evidence.json
  tpm11 attest --id 01 --nonce "$(printf %s "$KEYAUTH" | sha256sum | cut -c1-64)" --format acme > attobj.cbor
  tpm11 attest --id 01 --format webauthn --rp-id example.org --client-data-hash "$CDH" > attobj.cbor`,
		Args: maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, err := sel.selection(args)
			if err != nil {
				return err
			}
			if len(tmpl) == 0 {
				return usagef("name the key: --id, --label or a pkcs11: URI")
			}
			nonce, err := parseNonce(nonceHex)
			if err != nil {
				return err
			}
			switch format {
			case "json", "pem", "acme":
				if rpID != "" || cdhHex != "" {
					return usagef("--rp-id and --client-data-hash are for --format webauthn")
				}
			case "webauthn":
				if nonce != nil {
					return usagef("--format webauthn: the nonce is SHA-256(authData || --client-data-hash), not --nonce")
				}
				if rpID == "" {
					return usagef("--format webauthn needs --rp-id")
				}
			default:
				return usagef("--format %q: json, pem, acme or webauthn", format)
			}
			var cdh []byte
			if cdhHex != "" {
				if cdh, err = hex.DecodeString(cdhHex); err != nil || len(cdh) != 32 {
					return usagef("--client-data-hash %q: SHA-256 in hex (64 digits)", cdhHex)
				}
			} else if format == "webauthn" {
				return usagef("--format webauthn needs --client-data-hash")
			}
			if akType != "" && akType != tpm.AKRSA && akType != tpm.AKECC {
				return usagef("--ak-type %q: rsa or ecc", akType)
			}
			chain, err := readCerts(ekChain)
			if err != nil {
				return err
			}
			return g.withToken(cmd, uri, false, func(c *ctx) error {
				o, err := c.privateKey(tmpl)
				if err != nil {
					return err
				}
				var authData []byte
				if format == "webauthn" {
					res, err := c.l.GetAttributeValue(c.h, o.handle, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
					if err != nil {
						return err
					}
					pub, err := x509.ParsePKIXPublicKey(res[0].Value)
					if err != nil {
						return fmt.Errorf("the key's public key: %w", err)
					}
					credID := sha256.Sum256(res[0].Value)
					if authData, err = attestation.WebAuthnAuthData(rpID, credID[:], pub); err != nil {
						return err
					}
					nonce = attestation.WebAuthnNonce(authData, cdh)
				}
				ev, err := c.l.Attest(c.h, o.handle, tpmtoken.AttestOptions{Nonce: nonce, EKChain: chain, AKType: akType})
				if err != nil {
					return err
				}
				var data []byte
				switch format {
				case "json":
					data, err = ev.JSON()
					data = append(data, '\n')
				case "pem":
					data, err = ev.PEM()
				case "acme":
					data, err = attestation.ACME(ev)
				default:
					data, err = attestation.WebAuthn(ev, authData)
				}
				if err != nil {
					return err
				}
				return writeOut(c, outFile, data)
			})
		},
	}
	sel.register(c, false)
	c.Flags().StringVar(&nonceHex, "nonce", "", "the verifier's challenge, hex (at most 64 bytes)")
	c.Flags().StringVar(&format, "format", "json", "json, pem, acme or webauthn")
	c.Flags().StringVar(&akType, "ak-type", "", "the attestation key: rsa or ecc (default: the enrolled one, else rsa where the TPM has RSA-2048)")
	c.Flags().StringVar(&rpID, "rp-id", "", "--format webauthn: the relying party ID (its SHA-256 is authData's rpIdHash)")
	c.Flags().StringVar(&cdhHex, "client-data-hash", "", "--format webauthn: SHA-256 of the client data, hex")
	c.Flags().StringArrayVar(&ekChain, "ek-chain", nil, "PEM file of EK certificate issuers to include (repeatable)")
	c.Flags().StringVarP(&outFile, "out", "o", "", "write to this file instead of standard output")
	return c
}

// ekPools splits --ek-roots files (which may hold a whole chain):
// self-signed certificates are roots, the others intermediates.
func ekPools(files []string) (roots, inter *x509.CertPool, err error) {
	cs, err := readCerts(files)
	if err != nil {
		return nil, nil, err
	}
	roots, inter = x509.NewCertPool(), x509.NewCertPool()
	for _, c := range cs {
		if attestation.SelfSigned(c) {
			roots.AddCert(c)
		} else {
			inter.AddCert(c)
		}
	}
	return roots, inter, nil
}

func verifyAttestationCmd(g *globals) *cobra.Command {
	var ekRoots, ekInter, akRoots []string
	var nonceHex, cdhHex string
	var activate bool
	c := &cobra.Command{
		Use:   "verify-attestation FILE [--ek-roots PEM] [--ak-roots PEM] [--nonce HEX] [--activate]",
		Short: "Check attestation evidence against EK or attestation CA roots",
		Long: `Check evidence made by tpm11 attest (JSON, PEM or CBOR): the key is a TPM
key that was made in the TPM and cannot leave it, the attestation key signed
that with --nonce (WebAuthn form: with SHA-256(authData || --client-data-hash)),
and the attestation key is trusted — by an AK certificate chaining to
--ak-roots, or, with --activate, by credential activation against the EK
certificate chaining to --ek-roots, answered by the TPM this command runs on
(the verifier and the TPM on one machine). The checks of the TPM structures
are go-attestation's. Exit status 0 only for verified evidence; everything
printed is verified: the device identity and the attested public key.`,
		Example: `  tpm11 verify-attestation evidence.json --ek-roots /var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem \
      --ek-roots /var/lib/swtpm-localca/issuercert.pem --nonce 0102 --activate
  tpm11 verify-attestation attobj.cbor --ak-roots attestation-ca.pem --nonce "$HASH"`,
		Args: exactArgs(1, "one evidence file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readInput(args[0], "attestation")
			if err != nil {
				return err
			}
			nonce, err := parseNonce(nonceHex)
			if err != nil {
				return err
			}
			opts := attestation.VerifyOptions{}
			if cdhHex != "" {
				if opts.ClientDataHash, err = hex.DecodeString(cdhHex); err != nil || len(opts.ClientDataHash) != 32 {
					return usagef("--client-data-hash %q: SHA-256 in hex (64 digits)", cdhHex)
				}
			} else if nonce == nil {
				nonce = []byte{}
				fmt.Fprintln(os.Stderr, "no --nonce: the evidence must carry none (a replayed one would pass otherwise)")
			}
			opts.Nonce = nonce
			if len(ekRoots) > 0 {
				if opts.EKRoots, opts.EKIntermediates, err = ekPools(append(ekRoots, ekInter...)); err != nil {
					return err
				}
			}
			if opts.AKRoots, err = pool(akRoots); err != nil {
				return err
			}
			check := func() (*attestation.Verified, error) {
				if len(data) > 0 && data[0]&0xe0 == 0xa0 { // a CBOR map
					return attestation.VerifyCBOR(data, opts)
				}
				ev, err := tpmtoken.ReadEvidence(data)
				if err != nil {
					return nil, err
				}
				return attestation.VerifyEvidence(ev, opts)
			}
			var v *attestation.Verified
			if activate {
				err = g.withToken(cmd, nil, false, func(c *ctx) error {
					opts.Activate = func(ch *tpmtoken.ActivationChallenge) ([]byte, error) { return c.l.ActivateCredential(c.h, ch) }
					v, err = check()
					return err
				})
			} else {
				v, err = check()
			}
			if err != nil {
				return fmt.Errorf("NOT verified: %w", err)
			}
			out := cmd.OutOrStdout()
			switch {
			case v.AKCertificate != nil:
				fmt.Fprintf(out, "verified: a key made in and fixed to a TPM, attested by an AK certified by %q\n", v.AKCertificate.Issuer.String())
			default:
				fmt.Fprintf(out, "verified: a key made in and fixed to the TPM of EK certificate serial %s issued by %q (credential activation)\n",
					v.EKCertificate.SerialNumber, v.EKCertificate.Issuer.String())
			}
			if v.PermanentIdentifier != "" {
				fmt.Fprintf(out, "device: %s\n", v.PermanentIdentifier)
			}
			der, err := x509.MarshalPKIXPublicKey(v.PublicKey)
			if err != nil {
				return err
			}
			return pem.Encode(out, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
		},
	}
	c.Flags().StringArrayVar(&ekRoots, "ek-roots", nil, "PEM file of EK certificate roots (and issuers) to trust (repeatable)")
	c.Flags().StringArrayVar(&ekInter, "ek-intermediates", nil, "PEM file of EK certificate issuers (repeatable)")
	c.Flags().StringArrayVar(&akRoots, "ak-roots", nil, "PEM file of attestation CA roots whose AK certificates to trust (repeatable)")
	c.Flags().StringVar(&nonceHex, "nonce", "", "the nonce the attestation must carry, hex")
	c.Flags().StringVar(&cdhHex, "client-data-hash", "", "WebAuthn form: SHA-256 of the client data, hex")
	c.Flags().BoolVar(&activate, "activate", false, "bind the AK to the EK by credential activation with this machine's TPM")
	return c
}

func policyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "PCR values and approvals for keys bound to platform state",
		Long: `Keys made with tpm11 keygen --pcr sign only while those PCRs hold the values
they had; with --pcr-authority, while they hold values that authority
approved. "policy approve" signs an approval (where the authority's key is);
"policy add" gives one to a key; "policy pcrs" reads the current values.`,
	}
	var pcrList, authKey, passFile, valuesHex, outFile string
	approve := &cobra.Command{
		Use:   "approve --pcr LIST --authority-key PEM [--values HEX,...]",
		Short: "Sign an approval of PCR values (default: their current values here)",
		Example: `  tpm11 policy approve --pcr 7,16 --authority-key authority.key > approval.json
  tpm11 policy approve --pcr 16 --authority-key authority.key --values 3f1a...`,
		RunE: func(cmd *cobra.Command, args []string) error {
			pcrs, err := tpmtoken.ParsePCRList(pcrList)
			if err != nil || pcrList == "" {
				return usagef("--pcr %q: a list such as 7,16", pcrList)
			}
			kf, err := readKeyFile(authKey, passFile)
			if err != nil {
				return err
			}
			var values [][]byte
			if valuesHex != "" {
				for _, v := range strings.Split(valuesHex, ",") {
					b, err := hex.DecodeString(strings.TrimSpace(v))
					if err != nil || len(b) != 32 {
						return usagef("--values: SHA-256 values in hex, one per PCR")
					}
					values = append(values, b)
				}
				if len(values) != len(pcrs) {
					return usagef("--values: one value per PCR of --pcr")
				}
			} else {
				err := g.withToken(cmd, nil, false, func(c *ctx) error {
					values, err = c.l.PCRValues(c.h, pcrs)
					return err
				})
				if err != nil {
					return err
				}
			}
			a, err := tpmtoken.SignPolicyApproval(kf.key, pcrs, values)
			if err != nil {
				return err
			}
			a = append(a, '\n')
			if outFile != "" {
				return os.WriteFile(outFile, a, 0o644)
			}
			_, err = cmd.OutOrStdout().Write(a)
			return err
		},
	}
	approve.Flags().StringVar(&pcrList, "pcr", "", "PCRs, e.g. 7,16 (SHA-256 bank)")
	approve.Flags().StringVar(&authKey, "authority-key", "", "the authority's private key (PEM)")
	approve.Flags().StringVar(&passFile, "passphrase-file", "", "file holding its passphrase")
	approve.Flags().StringVar(&valuesHex, "values", "", "the PCR values to approve, hex, comma-separated (default: current)")
	approve.Flags().StringVarP(&outFile, "out", "o", "", "write to this file instead of standard output")

	var sel objectFlags
	add := &cobra.Command{
		Use:   "add (--id HEX | --label LABEL | pkcs11:URI) APPROVAL.json",
		Short: "Let a key bound to an authority sign under the PCR values an approval names",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[len(args)-1]
			uri, tmpl, err := sel.selection(args[:len(args)-1])
			if err != nil {
				return err
			}
			ap, err := readInput(file, "approval")
			if err != nil {
				return err
			}
			return g.withToken(cmd, uri, false, func(c *ctx) error {
				o, err := c.privateKey(tmpl)
				if err != nil {
					return err
				}
				if err := c.l.AddPolicyApproval(c.h, o.handle, ap); err != nil {
					return err
				}
				fmt.Fprintf(c.out, "approval added to %s\n", o)
				return nil
			})
		},
	}
	sel.register(add, false)

	var readList string
	pcrsCmd := &cobra.Command{
		Use:   "pcrs --pcr LIST",
		Short: "Print the current SHA-256 values of PCRs",
		RunE: func(cmd *cobra.Command, args []string) error {
			pcrs, err := tpmtoken.ParsePCRList(readList)
			if err != nil || readList == "" {
				return usagef("--pcr %q: a list such as 7,16", readList)
			}
			return g.withToken(cmd, nil, false, func(c *ctx) error {
				vals, err := c.l.PCRValues(c.h, pcrs)
				if err != nil {
					return err
				}
				for i, p := range pcrs {
					fmt.Fprintf(c.out, "%d: %x\n", p, vals[i])
				}
				return nil
			})
		},
	}
	pcrsCmd.Flags().StringVar(&readList, "pcr", "", "PCRs, e.g. 7,16")
	c.AddCommand(approve, add, pcrsCmd)
	return c
}

func tss2Cmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "tss2",
		Short: "Link TPM key files (TSS2 PRIVATE KEY) into the token, export portable keys as such",
		Long: `"TSS2 PRIVATE KEY" files are the keys of tpm2-openssl and the tpm2-tss
engine. "tss2 link" makes one a token key PKCS#11 clients use (it needs no
PIN: anyone with the file can load it); "tss2 export" writes a key made with
tpm11 keygen --portable (or linked) as such a file, for openssl -provider tpm2.`,
	}
	var idHex, label string
	link := &cobra.Command{
		Use:     "link FILE [--id HEX] [--label LABEL]",
		Short:   "Make a TSS2 key file's key a token key",
		Args:    exactArgs(1, "one key file"),
		Example: `  openssl genpkey -provider tpm2 -algorithm EC -pkeyopt group:P-256 -out key.pem && tpm11 tss2 link key.pem --label web`,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readInput(args[0], "TSS2 key file")
			if err != nil {
				return err
			}
			if err := checkLabel(label, 256); err != nil {
				return err
			}
			return g.withToken(cmd, nil, false, func(c *ctx) error {
				id := []byte(nil)
				if idHex != "" {
					if id, err = parseID(idHex); err != nil {
						return err
					}
				}
				var pub, priv uint64
				err := c.l.Claim(c.t.Slot, func() error { // the ID looked for and taken as one step
					var err error
					if id == nil {
						if id, err = freeID(c.l, c.h); err != nil {
							return err
						}
					}
					if _, err := c.idFree(id, false); err != nil {
						return err
					}
					tmpl := []tpmtoken.Attr{attr(ck.CKA_ID, id)}
					if label != "" {
						tmpl = append(tmpl, attr(ck.CKA_LABEL, []byte(label)))
					}
					pub, priv, err = c.l.LinkKeyFile(c.h, data, tmpl)
					return err
				})
				if err != nil {
					return err
				}
				return report(c, "linked", "TPM key file "+args[0], []uint64{priv, pub}, false, false)
			})
		},
	}
	link.Flags().StringVar(&idHex, "id", "", "CKA_ID in hex (default: the smallest free one-byte ID)")
	link.Flags().StringVar(&label, "label", "", "CKA_LABEL")

	var sel objectFlags
	var outFile string
	export := &cobra.Command{
		Use:   "export (--id HEX | --label LABEL | pkcs11:URI) [-o FILE]",
		Short: "Write a portable token key as a TSS2 key file",
		Args:  maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, err := sel.selection(args)
			if err != nil {
				return err
			}
			if len(tmpl) == 0 {
				return usagef("name the key: --id, --label or a pkcs11: URI")
			}
			return g.withToken(cmd, uri, false, func(c *ctx) error {
				o, err := c.privateKey(tmpl)
				if err != nil {
					return err
				}
				data, err := c.l.ExportKeyFile(c.h, o.handle)
				if err != nil {
					return err
				}
				if outFile != "" {
					return os.WriteFile(outFile, data, 0o600)
				}
				_, err = c.out.Write(data)
				return err
			})
		},
	}
	sel.register(export, false)
	export.Flags().StringVarP(&outFile, "out", "o", "", "write to this file instead of standard output")
	c.AddCommand(link, export)
	return c
}

// keygenVendor turns keygen's --pcr, --pcr-authority and --portable into
// the private key's vendor attributes.
func keygenVendor(pcrs, authority string, portable bool) ([]tpmtoken.Attr, error) {
	var out []tpmtoken.Attr
	if pcrs != "" {
		if _, err := tpmtoken.ParsePCRList(pcrs); err != nil {
			return nil, usagef("--pcr %q: a list such as 7,16 (PCRs 0 to 23)", pcrs)
		}
		out = append(out, attr(tpmtoken.CKA_TPM11_PCR_POLICY, []byte(pcrs)))
	}
	if authority != "" {
		if pcrs == "" {
			return nil, usagef("--pcr-authority needs --pcr")
		}
		data, err := readInput(authority, "public key")
		if err != nil {
			return nil, err
		}
		der := data
		if b, _ := pem.Decode(data); b != nil {
			der = b.Bytes
		}
		if _, err := x509.ParsePKIXPublicKey(der); err != nil {
			return nil, fmt.Errorf("%s: not a public key (PEM PUBLIC KEY or DER SubjectPublicKeyInfo): %w", authority, err)
		}
		out = append(out, attr(tpmtoken.CKA_TPM11_POLICY_AUTHORITY, der))
	}
	if portable {
		out = append(out, tpmtoken.BoolAttr(tpmtoken.CKA_TPM11_PORTABLE, true), tpmtoken.BoolAttr(ck.CKA_PRIVATE, false))
	}
	return out, nil
}

// withVendor puts extra over a key template: an attribute given in extra
// replaces the template's; a key bound to PCRs does not derive.
func withVendor(t, extra []tpmtoken.Attr) []tpmtoken.Attr {
	over := map[ck.AttributeType]bool{}
	bound := false
	for _, a := range extra {
		over[a.Type] = true
		bound = bound || a.Type == tpmtoken.CKA_TPM11_PCR_POLICY
	}
	var out []tpmtoken.Attr
	for _, a := range t {
		if !over[a.Type] && !(bound && a.Type == ck.CKA_DERIVE) {
			out = append(out, a)
		}
	}
	return append(out, extra...)
}

// vendorDescription reads what list shows of a key's vendor attributes.
func vendorDescription(a tpmtoken.Attrs) (pcrPolicy string, portable bool) {
	if p := a[tpmtoken.CKA_TPM11_PCR_POLICY]; len(p) > 0 {
		pcrPolicy = "PCR " + string(p)
		if len(a[tpmtoken.CKA_TPM11_POLICY_AUTHORITY]) > 0 {
			pcrPolicy += " as an authority approves"
		}
	}
	return pcrPolicy, a.Bool(tpmtoken.CKA_TPM11_PORTABLE)
}

// vendorNotes is list's note for bound, portable and linked keys.
func (o object) vendorNotes() string {
	var n []string
	switch {
	case o.Portable && o.Origin == "imported":
		n = append(n, "linked TPM key file")
	case o.Portable:
		n = append(n, "generated in the TPM, portable (tpm11 tss2 export)")
	case o.PCRPolicy != "":
		n = append(n, "generated in the TPM")
	}
	if o.PCRPolicy != "" {
		n = append(n, "bound to "+o.PCRPolicy)
	}
	return strings.Join(n, ", ")
}
