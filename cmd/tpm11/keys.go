package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"golang.org/x/crypto/ssh"
)

func listCmd(g *globals) *cobra.Command {
	var sel objectFlags
	var asJSON, public bool
	c := &cobra.Command{
		Use:   "list [pkcs11:URI]",
		Short: "List objects by ID, with their pkcs11: URIs",
		Long: `List the token's objects sorted and grouped by ID: class, key type and size,
usage, origin (generated in the TPM or imported) and the RFC 7512 pkcs11: URI
to give ssh, openssl or p11tool. Private objects are shown after login: the
user PIN is asked for when the token has some (--public skips them).`,
		Args: maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, err := sel.selection(args)
			if err != nil {
				return err
			}
			return g.withToken(cmd, uri, false, func(c *ctx) error {
				hidden, err := c.l.PrivateObjects(c.t.Slot)
				if err != nil {
					return err
				}
				if hidden > 0 && !public && c.pinAvailable() {
					if err := c.login(); err != nil {
						return err
					}
					hidden = 0
				}
				objs, err := c.objects(tmpl...)
				if err != nil {
					return err
				}
				if asJSON {
					if objs == nil {
						objs = []object{}
					}
					return printJSON(c.out, struct {
						Token  tokenJSON `json:"token"`
						Hidden int       `json:"private_objects_not_shown"`
						Objs   []object  `json:"objects"`
					}{c.t.json(), hidden, objs})
				}
				printList(c.out, c.t, objs)
				if hidden > 0 {
					fmt.Fprintf(os.Stderr, "%d private %s not shown: give the user PIN (TPM11_PIN, --pin-file or a terminal) to see them\n",
						hidden, plural(hidden, "object", "objects"))
				}
				return nil
			})
		},
	}
	sel.register(c, true)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&public, "public", false, "list public objects only, without asking for the PIN")
	return c
}

func printList(w io.Writer, t token, objs []object) {
	fmt.Fprintf(w, "token %q serial %s  %s\n", t.Label, t.Serial, t.URI())
	if len(objs) == 0 {
		fmt.Fprintln(w, "no objects")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLABEL\tOBJECT\tTYPE\tUSAGE\tNOTES\tURI")
	for i, o := range objs {
		id, label := o.ID, o.Label
		if id == "" {
			id = "-"
		}
		if i > 0 && o.ID == objs[i-1].ID {
			id = ""
			if o.Label == objs[i-1].Label {
				label = ""
			}
		}
		if label != "" {
			label = strconv.Quote(label)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, label, o.classText(), o.kind(), strings.Join(o.Usage, ","), o.notes(), o.URI)
	}
	tw.Flush()
}

// keySpec is a key type as --type names it.
type keySpec struct {
	name  string // canonical: ec:p256, rsa:2048, aes:256, hmac:256
	kind  string // rsa, ec, aes, hmac
	bits  int
	curve *tpmtoken.Curve
	param ck.ULong // ml-dsa, ml-kem: CKA_PARAMETER_SET
}

// pqcTypes are the post-quantum key types by name (ml-dsa-65, ...), with
// their CKA_PARAMETER_SET; a TPM of the v1.85 specification makes them.
var pqcTypes = map[string]keySpec{
	"ml-dsa-44":   {name: "ml-dsa-44", kind: "ml-dsa", param: ck.CKP_ML_DSA_44},
	"ml-dsa-65":   {name: "ml-dsa-65", kind: "ml-dsa", param: ck.CKP_ML_DSA_65},
	"ml-dsa-87":   {name: "ml-dsa-87", kind: "ml-dsa", param: ck.CKP_ML_DSA_87},
	"ml-kem-512":  {name: "ml-kem-512", kind: "ml-kem", param: ck.CKP_ML_KEM_512},
	"ml-kem-768":  {name: "ml-kem-768", kind: "ml-kem", param: ck.CKP_ML_KEM_768},
	"ml-kem-1024": {name: "ml-kem-1024", kind: "ml-kem", param: ck.CKP_ML_KEM_1024},
}

// curveAliases are other names of the curves (tpmtoken.CurveNamed knows
// "p256" and its like).
var curveAliases = map[string]string{"prime256v1": "p256", "secp256r1": "p256", "nistp256": "p256",
	"prime192v1": "p192", "secp192r1": "p192", "nistp192": "p192", "secp224r1": "p224", "nistp224": "p224", "secp384r1": "p384", "nistp384": "p384", "secp521r1": "p521", "nistp521": "p521"}

// curveByName finds a curve by any of its names: p256, P-256, prime256v1...
func curveByName(s string) *tpmtoken.Curve {
	s = strings.ReplaceAll(strings.ToLower(s), "-", "")
	if a, ok := curveAliases[s]; ok {
		s = a
	}
	return tpmtoken.CurveNamed(s)
}

func parseKeyType(s string) (keySpec, error) {
	if k, ok := pqcTypes[strings.ReplaceAll(strings.ToLower(s), ":", "-")]; ok {
		return k, nil
	}
	kind, size, _ := strings.Cut(strings.ToLower(s), ":")
	bad := usagef("--type %q: one of rsa:BITS, ec:CURVE, aes:BITS, hmac:BITS, ml-dsa-44|65|87, ml-kem-512|768|1024 (tpm11 keygen --help lists what this TPM offers)", s)
	switch kind {
	case "ec", "ecdsa":
		if size == "" {
			size = "p256"
		}
		c := curveByName(size)
		if c == nil {
			return keySpec{}, bad
		}
		return keySpec{name: "ec:" + c.Name, kind: "ec", bits: c.Bits, curve: c}, nil
	case "rsa", "aes", "hmac":
		def := map[string]int{"rsa": 2048, "aes": 256, "hmac": 256}[kind]
		bits := def
		if size != "" {
			n, err := strconv.Atoi(size)
			if err != nil || n <= 0 || n > 1<<16 {
				return keySpec{}, bad
			}
			bits = n
		}
		if kind == "hmac" && (bits%8 != 0 || bits > 1024) {
			return keySpec{}, usagef("--type %q: an HMAC key is 8 to 1024 bits, a multiple of 8", s)
		}
		return keySpec{name: fmt.Sprintf("%s:%d", kind, bits), kind: kind, bits: bits}, nil
	}
	return keySpec{}, bad
}

// display names the key in words: "EC P-256 key pair", "AES-256 key".
func (k keySpec) display() string {
	switch k.kind {
	case "ec":
		return fmt.Sprintf("EC P-%d key pair", k.bits)
	case "rsa":
		return fmt.Sprintf("RSA-%d key pair", k.bits)
	case "aes":
		return fmt.Sprintf("AES-%d key", k.bits)
	case "ml-dsa", "ml-kem":
		return strings.ToUpper(k.name) + " key pair"
	}
	return fmt.Sprintf("%d-bit HMAC key", k.bits)
}

// offered lists the key types this TPM makes.
func offered(d tpmtoken.Diagnostics) []string {
	var out []string
	for _, b := range d.Caps.RSABits {
		out = append(out, fmt.Sprintf("rsa:%d", b))
	}
	for _, c := range d.Curves {
		out = append(out, "ec:"+c.Name)
	}
	for _, b := range d.Caps.AESBits {
		out = append(out, fmt.Sprintf("aes:%d", b))
	}
	out = append(out, "hmac:8..1024")
	pq := slices.Sorted(maps.Keys(d.PQCKeyTypes()))
	return append(out, pq...)
}

func (k keySpec) offeredBy(d tpmtoken.Diagnostics) bool {
	switch k.kind {
	case "rsa":
		return slices.Contains(d.Caps.RSABits, k.bits)
	case "ec":
		return slices.Contains(d.Curves, k.curve)
	case "aes":
		return slices.Contains(d.Caps.AESBits, k.bits)
	case "ml-dsa", "ml-kem":
		_, ok := d.PQCKeyTypes()[k.name]
		return ok
	}
	return true
}

var allKeyTypes = []string{"rsa:1024", "rsa:2048", "rsa:3072", "rsa:4096", "ec:p224", "ec:p256", "ec:p384", "ec:p521", "aes:128", "aes:192", "aes:256", "hmac:256",
	"ml-dsa-44", "ml-dsa-65", "ml-dsa-87", "ml-kem-512", "ml-kem-768", "ml-kem-1024"}

func keygenCmd(g *globals) *cobra.Command {
	var idHex, label, typ, pcrs, pcrAuthority string
	var replace, asJSON, sshOut, portable bool
	c := &cobra.Command{
		Use:   "keygen [--type TYPE] [--id HEX] [--label LABEL] [--pcr LIST [--pcr-authority PEM]] [--portable]",
		Short: "Generate an RSA, EC, ML-DSA, ML-KEM, AES or HMAC key in the TPM",
		Long: `Generate a key inside the TPM: an RSA or EC key pair (the public key is
printed as PEM, or as an OpenSSH line with --ssh) or an AES or HMAC secret
key. Types: rsa:BITS, ec:p224|p256|p384|p521, aes:128|192|256, hmac:BITS (8 to
1024); on a TPM of the v1.85 specification also ml-dsa-44|65|87 and
ml-kem-512|768|1024 (post-quantum; the public key's PEM names the NIST
OID). tpm11 keygen --help (at its end) and tpm11 info list what this TPM
offers.

Without --id the smallest free one-byte ID is used. An ID already in use is
refused (pkcs11:id=... would become ambiguous) unless --replace, which
destroys the old objects once the new key exists.

--pcr 7,16 binds a key pair to platform state: it signs only while those
PCRs (SHA-256) hold their current values, or, with --pcr-authority (a
public key), values that authority approved (tpm11 policy). --portable
makes a key pair tpm2-openssl can use (tpm11 tss2 export), which needs no
PIN.`,
		Example: `  tpm11 keygen --type ec:p256 --label ssh
  tpm11 keygen --type rsa:3072 --id 02 --label web
  tpm11 keygen --type aes:256 --label backup`,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := parseKeyType(typ)
			if err != nil {
				return err
			}
			vendor, err := keygenVendor(pcrs, pcrAuthority, portable) // attest.go
			if err != nil {
				return err
			}
			if vendor != nil && spec.kind != "ec" && spec.kind != "rsa" {
				return usagef("--pcr and --portable are for RSA and EC key pairs")
			}
			if err := checkLabel(label, 256); err != nil {
				return err
			}
			var id []byte
			if idHex != "" {
				if id, err = parseID(idHex); err != nil {
					return err
				}
			}
			return g.withToken(cmd, nil, true, func(c *ctx) error {
				d, err := c.l.Diagnose()
				if err != nil {
					return err
				}
				if !spec.offeredBy(d) {
					return fmt.Errorf("this TPM does not make %s keys; it offers %s", spec.name, strings.Join(offered(d), ", "))
				}
				var handles []uint64
				// The ID is looked for and the key written as one step
				// against other processes (two never get one ID).
				err = c.l.Claim(c.t.Slot, func() error {
					if id == nil {
						if id, err = freeID(c.l, c.h); err != nil {
							return err
						}
					}
					old, err := c.idFree(id, replace)
					if err != nil {
						return err
					}
					err = progress("generating the "+spec.display()+" in the TPM", func() error {
						handles, err = generate(c, spec, id, label, vendor...)
						return err
					})
					if err != nil {
						return err
					}
					return c.replaceOld(old)
				})
				if err != nil {
					return err
				}
				return report(c, "generated in the TPM", spec.display(), handles, asJSON, sshOut)
			})
		},
	}
	c.Flags().StringVar(&typ, "type", "ec:p256", "key type: rsa:BITS, ec:CURVE, aes:BITS, hmac:BITS, ml-dsa-65, ml-kem-768...")
	c.Flags().StringVar(&idHex, "id", "", "CKA_ID in hex (default: the smallest free one-byte ID)")
	c.Flags().StringVar(&label, "label", "", "CKA_LABEL")
	c.Flags().BoolVar(&replace, "replace", false, "replace the objects that already use this ID")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&sshOut, "ssh", false, "print the public key as an OpenSSH authorized_keys line instead of PEM")
	c.Flags().StringVar(&pcrs, "pcr", "", "bind the key to these PCRs' values, e.g. 7,16")
	c.Flags().StringVar(&pcrAuthority, "pcr-authority", "", "with --pcr: a public key (PEM) whose approvals of PCR values count instead")
	c.Flags().BoolVar(&portable, "portable", false, "make the key a TSS2 key file can hold (no PIN)")
	_ = c.RegisterFlagCompletionFunc("type", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return g.completeKeyTypes(), cobra.ShellCompDirectiveNoFileComp
	})
	_ = c.RegisterFlagCompletionFunc("id", cobra.NoFileCompletions)
	_ = c.RegisterFlagCompletionFunc("label", cobra.NoFileCompletions)
	c.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		cmd.Root().HelpFunc()(cmd, args)
		fmt.Fprintln(cmd.OutOrStdout(), "\n"+g.offeredHelp())
	})
	return c
}

// offeredHelp says what this TPM makes, for keygen --help. It asks the TPM
// only when the store exists already: help never creates one.
func (g *globals) offeredHelp() string {
	cfg := tpmtoken.LoadConfig(g.env)
	if _, err := os.Stat(cfg.Store); err != nil {
		return "Key types: " + strings.Join(allKeyTypes[:len(allKeyTypes)-1], " ") + " hmac:8..1024 (tpm11 info shows what your TPM offers)"
	}
	l, err := tpmtoken.Open(cfg)
	if err != nil {
		return "Key types: unknown (" + err.Error() + ")"
	}
	defer l.Close()
	d, err := l.Diagnose()
	if err != nil {
		return fmt.Sprintf("Key types: the TPM (%s) is not reachable: %v", cfg.TPM, err)
	}
	return fmt.Sprintf("Key types this TPM (%s) offers (HMAC: any multiple of 8 bits):\n  %s", cfg.TPM, strings.Join(offered(d), "\n  "))
}

// completeKeyTypes offers the key types this TPM makes (asked as
// offeredHelp asks it), every type tpm11 knows when it cannot be asked.
func (g *globals) completeKeyTypes() []string {
	cfg := tpmtoken.LoadConfig(g.env)
	if _, err := os.Stat(cfg.Store); err != nil {
		return allKeyTypes
	}
	l, err := tpmtoken.Open(cfg)
	if err != nil {
		return allKeyTypes
	}
	defer l.Close()
	d, err := l.Diagnose()
	if err != nil {
		return allKeyTypes
	}
	out := offered(d)
	return append(out[:len(out)-1], "hmac:256")
}

// generate makes the key; it returns the new objects' handles.
func generate(c *ctx, k keySpec, id []byte, label string, vendor ...tpmtoken.Attr) ([]uint64, error) {
	common := []tpmtoken.Attr{tpmtoken.BoolAttr(ck.CKA_TOKEN, true), attr(ck.CKA_ID, id)}
	if label != "" {
		common = append(common, attr(ck.CKA_LABEL, []byte(label)))
	}
	with := func(extra ...tpmtoken.Attr) []tpmtoken.Attr { return append(slices.Clone(common), extra...) }
	switch k.kind {
	case "ec", "rsa":
		m := tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN}
		pubT := with(tpmtoken.BoolAttr(ck.CKA_VERIFY, true))
		privT := with(tpmtoken.BoolAttr(ck.CKA_SIGN, true), tpmtoken.BoolAttr(ck.CKA_PRIVATE, true), tpmtoken.BoolAttr(ck.CKA_SENSITIVE, true))
		if k.kind == "ec" {
			pubT = append(pubT, attr(ck.CKA_EC_PARAMS, k.curve.Params))
			privT = append(privT, tpmtoken.BoolAttr(ck.CKA_DERIVE, true))
		} else {
			m.Type = ck.CKM_RSA_PKCS_KEY_PAIR_GEN
			pubT = append(pubT, tpmtoken.ULongAttr(ck.CKA_MODULUS_BITS, k.bits), tpmtoken.BoolAttr(ck.CKA_ENCRYPT, true))
			privT = append(privT, tpmtoken.BoolAttr(ck.CKA_DECRYPT, true))
		}
		privT = withVendor(privT, vendor) // attest.go
		priv, pub, err := keyPair(c, m, pubT, privT)
		return []uint64{priv, pub}, err
	case "ml-dsa", "ml-kem":
		m := tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN}
		pubT := with(tpmtoken.ULongAttr(ck.CKA_PARAMETER_SET, k.param))
		privT := with(tpmtoken.BoolAttr(ck.CKA_PRIVATE, true), tpmtoken.BoolAttr(ck.CKA_SENSITIVE, true))
		if k.kind == "ml-kem" {
			m.Type = ck.CKM_ML_KEM_KEY_PAIR_GEN
			pubT, privT = append(pubT, tpmtoken.BoolAttr(ck.CKA_ENCAPSULATE, true)), append(privT, tpmtoken.BoolAttr(ck.CKA_DECAPSULATE, true))
		} else {
			pubT, privT = append(pubT, tpmtoken.BoolAttr(ck.CKA_VERIFY, true)), append(privT, tpmtoken.BoolAttr(ck.CKA_SIGN, true))
		}
		priv, pub, err := keyPair(c, m, pubT, privT)
		return []uint64{priv, pub}, err
	case "aes":
		h, err := c.l.GenerateKey(c.h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN},
			with(tpmtoken.ULongAttr(ck.CKA_VALUE_LEN, k.bits/8), tpmtoken.BoolAttr(ck.CKA_ENCRYPT, true), tpmtoken.BoolAttr(ck.CKA_DECRYPT, true)))
		return []uint64{h}, err
	default:
		h, err := c.l.GenerateKey(c.h, tpmtoken.Mechanism{Type: ck.CKM_GENERIC_SECRET_KEY_GEN},
			with(tpmtoken.ULongAttr(ck.CKA_KEY_TYPE, ck.CKK_GENERIC_SECRET), tpmtoken.ULongAttr(ck.CKA_VALUE_LEN, k.bits/8),
				tpmtoken.BoolAttr(ck.CKA_SIGN, true), tpmtoken.BoolAttr(ck.CKA_VERIFY, true)))
		return []uint64{h}, err
	}
}

func keyPair(c *ctx, m tpmtoken.Mechanism, pubT, privT []tpmtoken.Attr) (priv, pub uint64, err error) {
	pub, priv, err = c.l.GenerateKeyPair(c.h, m, pubT, privT)
	return priv, pub, err
}

// keyResult is keygen's and import's --json output.
type keyResult struct {
	Token     tokenJSON `json:"token"`
	Objects   []object  `json:"objects"`
	PublicKey string    `json:"public_key_pem,omitempty"`
	SSH       string    `json:"ssh_public_key,omitempty"`
}

// report prints what keygen or import made.
func report(c *ctx, verb, what string, handles []uint64, asJSON, sshOut bool) error {
	r := keyResult{Token: c.t.json()}
	var spki []byte
	for _, h := range handles {
		o, err := describe(c.l, c.h, c.t, h)
		if err != nil {
			return err
		}
		r.Objects = append(r.Objects, o)
		if o.class == ck.CKO_PUBLIC_KEY {
			a, err := getAttrs(c.l, c.h, h, ck.CKA_PUBLIC_KEY_INFO)
			if err != nil {
				return err
			}
			spki = a[ck.CKA_PUBLIC_KEY_INFO]
		}
	}
	if spki != nil {
		r.PublicKey = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
		r.SSH, _ = sshLine(spki, r.Objects[0].Label)
	}
	if asJSON {
		return printJSON(c.out, r)
	}
	o := r.Objects[0]
	fmt.Fprintf(c.out, "%s: %s, id %s", verb, what, o.ID)
	if o.Label != "" {
		fmt.Fprintf(c.out, ", label %q", o.Label)
	}
	fmt.Fprintln(c.out)
	for _, o := range r.Objects {
		fmt.Fprintf(c.out, "  %-12s %s\n", o.classText(), o.URI)
	}
	switch {
	case sshOut && r.SSH != "":
		fmt.Fprintln(c.out, r.SSH)
	case r.PublicKey != "":
		fmt.Fprint(c.out, r.PublicKey)
	}
	return nil
}

// sshLine is an OpenSSH authorized_keys line for a SubjectPublicKeyInfo.
func sshLine(spki []byte, comment string) (string, error) {
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
	if comment != "" {
		line += " " + comment
	}
	return line, nil
}

func exportCmd(g *globals) *cobra.Command {
	var sel objectFlags
	var cert, sshOut bool
	var outFile string
	c := &cobra.Command{
		Use:   "export (--id HEX | --label LABEL | pkcs11:URI)",
		Short: "Print a public key (PEM, OpenSSH) or certificate",
		Args:  maxArgs(1, "at most one pkcs11: URI"),
		Example: `  tpm11 export --id 01 > key.pub.pem
  tpm11 export --id 01 --ssh >> ~/.ssh/authorized_keys
  tpm11 export 'pkcs11:id=%01;type=cert' > cert.pem`,
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, err := sel.selection(args)
			if err != nil {
				return err
			}
			if len(tmpl) == 0 {
				return usagef("name the key: --id, --label or a pkcs11: URI")
			}
			if cert && sshOut {
				return usagef("--cert and --ssh: choose one")
			}
			return g.withToken(cmd, uri, false, func(c *ctx) error {
				objs, err := c.objects(tmpl...)
				if err != nil {
					return err
				}
				if len(objs) == 0 && !c.loggedIn {
					if n, _ := c.l.PrivateObjects(c.t.Slot); n > 0 && c.pinAvailable() {
						if err := c.login(); err != nil {
							return err
						}
						if objs, err = c.objects(tmpl...); err != nil {
							return err
						}
					}
				}
				return export(c, objs, cert, sshOut, outFile)
			})
		},
	}
	sel.register(c, false)
	c.Flags().BoolVar(&cert, "cert", false, "print the certificate instead of the public key")
	c.Flags().BoolVar(&sshOut, "ssh", false, "print the public key as an OpenSSH authorized_keys line")
	c.Flags().StringVarP(&outFile, "out", "o", "", "write to this file instead of standard output")
	return c
}

func export(c *ctx, objs []object, cert, sshOut bool, outFile string) error {
	var data []byte
	if err := oneKey(objs); err != nil {
		return err
	}
	for _, o := range objs {
		if cert && o.class == ck.CKO_CERTIFICATE {
			a, err := getAttrs(c.l, c.h, o.handle, ck.CKA_VALUE)
			if err != nil {
				return err
			}
			data = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a[ck.CKA_VALUE]})
			break
		}
		if !cert && (o.class == ck.CKO_PUBLIC_KEY || o.class == ck.CKO_PRIVATE_KEY) {
			a, err := getAttrs(c.l, c.h, o.handle, ck.CKA_PUBLIC_KEY_INFO)
			if err != nil {
				return err
			}
			spki := a[ck.CKA_PUBLIC_KEY_INFO]
			if len(spki) == 0 {
				continue
			}
			if sshOut {
				line, err := sshLine(spki, o.Label)
				if err != nil {
					return err
				}
				data = []byte(line + "\n")
			} else {
				data = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
			}
			break
		}
	}
	if data == nil {
		what := "public key"
		if cert {
			what = "certificate"
		}
		if len(objs) == 0 {
			return fmt.Errorf("no object matches")
		}
		return fmt.Errorf("no %s among %s", what, describeAll(objs))
	}
	return writeOut(c, outFile, data)
}

func deleteCmd(g *globals) *cobra.Command {
	var sel objectFlags
	var yes bool
	c := &cobra.Command{
		Use:   "delete (--id HEX | --label LABEL | --unique-id UID | pkcs11:URI) [--type TYPE] [--yes]",
		Short: "Destroy a key (all objects of an ID, label or URI)",
		Long: `Destroy the objects of one key: its private and public key and its
certificate, named by --id, --label, --unique-id or a pkcs11: URI. When the
selection matches more than one key (several IDs, or two keys under one ID
or label), tpm11 lists them and asks on a terminal; otherwise it refuses
unless --yes.`,
		Args: maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, err := sel.selection(args)
			if err != nil {
				return err
			}
			if !uri.hasID && uri.object == "" && sel.uid == "" {
				return usagef("name what to delete: --id, --label, --unique-id or a pkcs11: URI with id= or object=")
			}
			return g.withToken(cmd, uri, true, func(c *ctx) error {
				objs, err := c.objects(tmpl...)
				if err != nil {
					return err
				}
				if len(objs) == 0 {
					return errors.New("no object matches: nothing deleted")
				}
				if why := ambiguity(objs); why != "" && !yes {
					if !interactive() {
						return fmt.Errorf("that matches %s, which is more than one key: %s; nothing deleted: give --yes to delete them all, or name one by --id or --unique-id", why, candidates(objs))
					}
					fmt.Fprintf(os.Stderr, "that matches %s:\n", why)
					for _, o := range objs {
						fmt.Fprintf(os.Stderr, "  %s  --unique-id %s\n", o, o.UniqueID)
					}
					ok, err := confirm(fmt.Sprintf("delete all %d objects?", len(objs)))
					if err != nil {
						return err
					}
					if !ok {
						return errors.New("nothing deleted")
					}
				}
				for _, o := range objs {
					if err := c.l.DestroyObject(c.h, o.handle); err != nil {
						return fmt.Errorf("%s: %w", o, err)
					}
					fmt.Fprintf(c.out, "deleted %s  %s\n", o, o.URI)
				}
				return nil
			})
		},
	}
	sel.register(c, true)
	c.Flags().BoolVarP(&yes, "yes", "y", false, "delete every matching object even when they are more than one key")
	return c
}
