package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// keyTemplates are the private- and public-key objects for an imported key.
func keyTemplates(key crypto.Signer) (priv, pub []tpmtoken.Attr, what string, err error) {
	priv = []tpmtoken.Attr{tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_PRIVATE_KEY), tpmtoken.BoolAttr(ck.CKA_TOKEN, true), tpmtoken.BoolAttr(ck.CKA_SIGN, true),
		tpmtoken.BoolAttr(ck.CKA_PRIVATE, true), tpmtoken.BoolAttr(ck.CKA_SENSITIVE, true)}
	pub = []tpmtoken.Attr{tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_PUBLIC_KEY), tpmtoken.BoolAttr(ck.CKA_TOKEN, true), tpmtoken.BoolAttr(ck.CKA_VERIFY, true)}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		k.Precompute()
		e := big.NewInt(int64(k.E)).Bytes()
		priv = append(priv, tpmtoken.ULongAttr(ck.CKA_KEY_TYPE, ck.CKK_RSA), tpmtoken.BoolAttr(ck.CKA_DECRYPT, true),
			attr(ck.CKA_MODULUS, k.N.Bytes()), attr(ck.CKA_PUBLIC_EXPONENT, e),
			attr(ck.CKA_PRIVATE_EXPONENT, k.D.Bytes()), attr(ck.CKA_PRIME_1, k.Primes[0].Bytes()),
			attr(ck.CKA_PRIME_2, k.Primes[1].Bytes()))
		pub = append(pub, tpmtoken.ULongAttr(ck.CKA_KEY_TYPE, ck.CKK_RSA), tpmtoken.BoolAttr(ck.CKA_ENCRYPT, true),
			attr(ck.CKA_MODULUS, k.N.Bytes()), attr(ck.CKA_PUBLIC_EXPONENT, e))
		return priv, pub, fmt.Sprintf("RSA %d key", k.N.BitLen()), nil
	case *ecdsa.PrivateKey:
		c := tpmtoken.CurveOfGo(k.Curve)
		if c == nil {
			return nil, nil, "", fmt.Errorf("curve %s cannot go into the TPM (the NIST P curves can)", k.Curve.Params().Name)
		}
		ecdhKey, err := k.ECDH()
		if err != nil {
			return nil, nil, "", err
		}
		point, _ := asn1.Marshal(ecdhKey.PublicKey().Bytes())
		priv = append(priv, tpmtoken.ULongAttr(ck.CKA_KEY_TYPE, ck.CKK_EC), tpmtoken.BoolAttr(ck.CKA_DERIVE, true),
			attr(ck.CKA_EC_PARAMS, c.Params), attr(ck.CKA_VALUE, ecdhKey.Bytes()))
		pub = append(pub, tpmtoken.ULongAttr(ck.CKA_KEY_TYPE, ck.CKK_EC), attr(ck.CKA_EC_PARAMS, c.Params), attr(ck.CKA_EC_POINT, point))
		return priv, pub, fmt.Sprintf("EC P-%d key", c.Bits), nil
	}
	return nil, nil, "", fmt.Errorf("%T keys cannot go into a TPM", key)
}

// offersKey checks the TPM makes keys of this size or curve.
func offersKey(d tpmtoken.Diagnostics, key crypto.Signer) error {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if !slices.Contains(d.Caps.RSABits, k.N.BitLen()) {
			return fmt.Errorf("this TPM has no RSA-%d (it has RSA %v)", k.N.BitLen(), d.Caps.RSABits)
		}
	case *ecdsa.PrivateKey:
		if c := tpmtoken.CurveOfGo(k.Curve); c == nil || !slices.Contains(d.Curves, c) {
			return fmt.Errorf("this TPM has no curve %s", k.Curve.Params().Name)
		}
	}
	return nil
}

func certTemplate(c *x509.Certificate, id []byte, label string) []tpmtoken.Attr {
	t := []tpmtoken.Attr{tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_CERTIFICATE), tpmtoken.BoolAttr(ck.CKA_TOKEN, true),
		tpmtoken.ULongAttr(ck.CKA_CERTIFICATE_TYPE, ck.CKC_X_509), attr(ck.CKA_VALUE, c.Raw), attr(ck.CKA_ID, id)}
	if label != "" {
		t = append(t, attr(ck.CKA_LABEL, []byte(label)))
	}
	return t
}

func samePublicKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func importCmd(g *globals) *cobra.Command {
	var idHex, label, passFile string
	var replace, asJSON, sshOut bool
	c := &cobra.Command{
		Use:   "import [--id HEX] [--label LABEL] FILE",
		Short: "Import a private key (PEM, PKCS#8, PKCS#12, OpenSSH) into the TPM",
		Long: `Import a private key into the TPM (TPM2_Import: from then on only the TPM can
use it), with its public key and, if the file has one, its certificate,
all under one ID.

FILE is PEM (PKCS#8, encrypted PKCS#8, PKCS#1, SEC1, legacy encrypted PEM),
an OpenSSH private key, PKCS#12 (.p12/.pfx) or DER. An encrypted file's
passphrase is asked for on the terminal, or read from --passphrase-file or
TPM11_PASSPHRASE. RSA and EC (NIST P) keys of the sizes and curves the TPM
offers can be imported; Ed25519 cannot (TPMs have no Ed25519).

Without --id the smallest free one-byte ID is used; an ID already in use is
refused unless --replace. Without --label the certificate's common name is
used.`,
		Example: `  tpm11 import --id 02 --label web server.p12
  tpm11 import ~/.ssh/id_ecdsa`,
		Args: exactArgs(1, "one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkLabel(label, 256); err != nil {
				return err
			}
			var id []byte
			var err error
			if idHex != "" {
				if id, err = parseID(idHex); err != nil {
					return err
				}
			}
			kf, err := readKeyFile(args[0], passFile)
			if err != nil {
				return err
			}
			privT, pubT, what, err := keyTemplates(kf.key)
			if err != nil {
				return err
			}
			var cert *x509.Certificate
			others := 0
			for _, c := range kf.certs {
				if cert == nil && samePublicKey(kf.key.Public(), c.PublicKey) {
					cert = c
				} else {
					others++
				}
			}
			if label == "" && cert != nil {
				label = cert.Subject.CommonName
			}
			return g.withToken(cmd, nil, true, func(c *ctx) error {
				d, err := c.l.Diagnose()
				if err != nil {
					return err
				}
				if err := offersKey(d, kf.key); err != nil {
					return err
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
					named := func(t []tpmtoken.Attr) []tpmtoken.Attr {
						t = append(t, attr(ck.CKA_ID, id))
						if label != "" {
							t = append(t, attr(ck.CKA_LABEL, []byte(label)))
						}
						return t
					}
					err = progress("importing the key into the TPM", func() error {
						h, err := c.l.CreateObject(c.h, named(privT))
						if err != nil {
							return fmt.Errorf("private key: %w", err)
						}
						handles = append(handles, h)
						return nil
					})
					if err != nil {
						return err
					}
					h, err := c.l.CreateObject(c.h, named(pubT))
					if err != nil {
						return fmt.Errorf("public key: %w", err)
					}
					handles = append(handles, h)
					if cert != nil {
						h, err := c.l.CreateObject(c.h, certTemplate(cert, id, label))
						if err != nil {
							return fmt.Errorf("certificate: %w", err)
						}
						handles = append(handles, h)
					}
					return c.replaceOld(old)
				})
				if err != nil {
					return err
				}
				if others > 0 {
					fmt.Fprintf(os.Stderr, "note: %d other %s in %s not imported (not for this key: a CA chain?)\n",
						others, plural(others, "certificate", "certificates"), kf.name)
				}
				return report(c, "imported into the TPM", what, handles, asJSON, sshOut)
			})
		},
	}
	c.Flags().StringVar(&idHex, "id", "", "CKA_ID in hex (default: the smallest free one-byte ID)")
	c.Flags().StringVar(&label, "label", "", "CKA_LABEL (default: the certificate's common name)")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the file's passphrase from the first line of this file")
	c.Flags().BoolVar(&replace, "replace", false, "replace the objects that already use this ID")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&sshOut, "ssh", false, "print the public key as an OpenSSH authorized_keys line instead of PEM")
	_ = c.RegisterFlagCompletionFunc("id", cobra.NoFileCompletions)
	_ = c.RegisterFlagCompletionFunc("label", cobra.NoFileCompletions)
	return c
}

func importCertCmd(g *globals) *cobra.Command {
	var sel objectFlags
	var replace, asJSON bool
	c := &cobra.Command{
		Use:   "import-cert [--id HEX | pkcs11:URI] CERT-FILE",
		Short: "Add a certificate to the key it belongs to",
		Long: `Add a certificate to a key already on the token, under the key's ID: the
last step of key → CSR (tpm11 csr) → CA → certificate. The key is found by
the certificate's public key (or named by --id, --label or a URI, and then
checked against it). A certificate already on the key is replaced only with
--replace.`,
		Example: `  tpm11 csr --id 01 --subject CN=host.example.com > host.csr
  # ... the CA signs host.csr into host.crt ...
  tpm11 import-cert host.crt`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || len(args) > 2 {
				return usagef("import-cert takes a certificate file (and optionally a pkcs11: URI first)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[len(args)-1]
			uri, tmpl, err := sel.selection(args[:len(args)-1])
			if err != nil {
				return err
			}
			cert, err := readCertFile(file)
			if err != nil {
				return err
			}
			return g.withToken(cmd, uri, true, func(c *ctx) error {
				objs, err := c.objects(tmpl...)
				if err != nil {
					return err
				}
				var key *object
				for i, o := range objs {
					if o.class != ck.CKO_PUBLIC_KEY && o.class != ck.CKO_PRIVATE_KEY {
						continue
					}
					a, err := getAttrs(c.l, c.h, o.handle, ck.CKA_PUBLIC_KEY_INFO)
					if err != nil {
						return err
					}
					if pub, err := x509.ParsePKIXPublicKey(a[ck.CKA_PUBLIC_KEY_INFO]); err == nil && samePublicKey(pub, cert.PublicKey) {
						key = &objs[i]
						break
					}
				}
				if key == nil {
					if len(tmpl) > 0 {
						return fmt.Errorf("the certificate (%s) is not for the key named: its public key differs", cert.Subject)
					}
					return fmt.Errorf("no key on token %q has the certificate's public key (%s)", c.t.Label, cert.Subject)
				}
				old, err := c.objects(attr(ck.CKA_ID, key.id), tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_CERTIFICATE))
				if err != nil {
					return err
				}
				if len(old) > 0 && !replace {
					return fmt.Errorf("key id %s has a certificate already (%s): give --replace to replace it", key.ID, old[0].Subject)
				}
				h, err := c.l.CreateObject(c.h, certTemplate(cert, key.id, key.Label))
				if err != nil {
					return fmt.Errorf("certificate: %w", err)
				}
				if err := c.replaceOld(old); err != nil {
					return err
				}
				return report(c, "certificate added", fmt.Sprintf("%s, until %s", cert.Subject, cert.NotAfter.UTC().Format("2006-01-02")), []uint64{h}, asJSON, false)
			})
		},
	}
	sel.register(c, false)
	c.Flags().BoolVar(&replace, "replace", false, "replace the key's certificate")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
