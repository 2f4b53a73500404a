package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// tokenSigner is a crypto.Signer whose private key is in the TPM.
type tokenSigner struct {
	c    *ctx
	priv uint64
	pub  crypto.PublicKey
}

func (s *tokenSigner) Public() crypto.PublicKey { return s.pub }

// digestInfo prefixes for PKCS #1 v1.5 signatures (RFC 8017, 9.2 note 1).
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

func (s *tokenSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	m := tpmtoken.Mechanism{Type: ck.CKM_ECDSA}
	data := digest
	if _, isRSA := s.pub.(*rsa.PublicKey); isRSA {
		if _, pss := opts.(*rsa.PSSOptions); pss {
			return nil, errors.New("RSA-PSS signatures are not made here")
		}
		prefix, ok := digestInfo[opts.HashFunc()]
		if !ok {
			return nil, fmt.Errorf("hash %v not supported", opts.HashFunc())
		}
		m.Type, data = ck.CKM_RSA_PKCS, append(append([]byte{}, prefix...), digest...)
	}
	if err := s.c.l.SignInit(s.c.h, m, s.priv); err != nil {
		return nil, err
	}
	sig, err := s.c.l.Sign(s.c.h, data, tpmtoken.Dest{Cap: 1024})
	if err != nil {
		return nil, err
	}
	if m.Type == ck.CKM_ECDSA { // PKCS#11 gives r‖s; X.509 wants DER
		n := len(sig) / 2
		return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])})
	}
	return sig, nil
}

// sigAlg matches the hash to the key: P-384 with SHA-384, P-521 with SHA-512.
func sigAlg(pub crypto.PublicKey) x509.SignatureAlgorithm {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		switch k.Curve.Params().BitSize {
		case 384:
			return x509.ECDSAWithSHA384
		case 521:
			return x509.ECDSAWithSHA512
		}
		return x509.ECDSAWithSHA256
	}
	return x509.SHA256WithRSA
}

var subjectOIDs = map[string]asn1.ObjectIdentifier{
	"emailaddress": {1, 2, 840, 113549, 1, 9, 1}, "email": {1, 2, 840, 113549, 1, 9, 1},
	"dc": {0, 9, 2342, 19200300, 100, 1, 25}, "uid": {0, 9, 2342, 19200300, 100, 1, 1},
}

// parseSubject reads "/CN=a/O=b" (openssl), "CN=a, O=b" (RFC 4514, with
// \, escapes) or a bare common name.
func parseSubject(s string) (pkix.Name, error) {
	var n pkix.Name
	var parts []string
	switch {
	case strings.HasPrefix(s, "/"):
		parts = strings.Split(s[1:], "/")
	case strings.Contains(s, "="):
		cur := ""
		for i := 0; i < len(s); i++ {
			switch {
			case s[i] == '\\' && i+1 < len(s):
				cur += string(s[i+1])
				i++
			case s[i] == ',':
				parts, cur = append(parts, cur), ""
			default:
				cur += string(s[i])
			}
		}
		parts = append(parts, cur)
	default:
		n.CommonName = s
		return n, nil
	}
	for _, p := range parts {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || v == "" {
			return n, usagef("--subject: %q is not KEY=value", p)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "cn":
			n.CommonName = v
		case "o":
			n.Organization = append(n.Organization, v)
		case "ou":
			n.OrganizationalUnit = append(n.OrganizationalUnit, v)
		case "c":
			n.Country = append(n.Country, v)
		case "st":
			n.Province = append(n.Province, v)
		case "l":
			n.Locality = append(n.Locality, v)
		case "street":
			n.StreetAddress = append(n.StreetAddress, v)
		case "postalcode":
			n.PostalCode = append(n.PostalCode, v)
		case "serialnumber":
			n.SerialNumber = v
		default:
			oid, ok := subjectOIDs[strings.ToLower(strings.TrimSpace(k))]
			if !ok {
				return n, usagef("--subject: unknown attribute %q (CN, O, OU, C, ST, L, STREET, postalCode, serialNumber, emailAddress, DC, UID)", k)
			}
			n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: oid, Value: v})
		}
	}
	return n, nil
}

// sans holds --san values: DNS:, IP:, email:, URI: (or guessed).
type sans struct {
	dns, email []string
	ips        []net.IP
	uris       []*url.URL
}

func parseSANs(vals []string) (sans, error) {
	var s sans
	for _, v := range vals {
		kind, val, ok := strings.Cut(v, ":")
		if !ok || strings.Contains(kind, ".") || strings.Contains(kind, "/") {
			kind, val = "", v
			switch {
			case net.ParseIP(v) != nil:
				kind = "ip"
			case strings.Contains(v, "@"):
				kind = "email"
			default:
				kind = "dns"
			}
		}
		switch strings.ToLower(kind) {
		case "dns":
			s.dns = append(s.dns, val)
		case "ip":
			ip := net.ParseIP(val)
			if ip == nil {
				return s, usagef("--san %q: not an IP address", v)
			}
			s.ips = append(s.ips, ip)
		case "email":
			s.email = append(s.email, val)
		case "uri":
			u, err := url.Parse(val)
			if err != nil {
				return s, usagef("--san %q: %v", v, err)
			}
			s.uris = append(s.uris, u)
		default:
			return s, usagef("--san %q: DNS:, IP:, email: or URI:", v)
		}
	}
	return s, nil
}

// maxSubject bounds --subject: real subjects are tens of bytes (RFC 5280's
// upper bounds are 64 for a common name, at most a few hundred for any).
const maxSubject = 1024

func csrCmd(g *globals) *cobra.Command {
	var sel objectFlags
	var subject, outFile string
	var sanList []string
	var selfSigned bool
	var days int
	c := &cobra.Command{
		Use:   "csr (--id HEX | --label LABEL | pkcs11:URI) --subject SUBJECT",
		Short: "Make a CSR (or self-signed certificate) signed by a token key",
		Long: `Make a PKCS#10 certificate signing request for a key on the token, signed
by the key in the TPM, to send to a CA. Add the certificate the CA returns
with tpm11 import-cert. With --x509, make a self-signed certificate instead.

SUBJECT is "/CN=host/O=Example" (openssl's form), "CN=host,O=Example" or a
bare common name. --san adds subject alternative names: DNS:name, IP:addr,
email:addr, URI:uri (repeat it or separate with commas).`,
		Example: `  tpm11 csr --id 01 --subject CN=host.example.com --san DNS:host.example.com,DNS:www.example.com > host.csr
  tpm11 csr --id 01 --subject CN=me --x509 --days 365 | tpm11 import-cert --id 01 /dev/stdin`,
		Args: maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, err := sel.selection(args)
			if err != nil {
				return err
			}
			if len(tmpl) == 0 {
				return usagef("name the key: --id, --label or a pkcs11: URI")
			}
			if subject == "" {
				return usagef("--subject is required (e.g. --subject CN=host.example.com)")
			}
			if len(subject) > maxSubject {
				return usagef("--subject is %d bytes; a subject of at most %d is accepted", len(subject), maxSubject)
			}
			name, err := parseSubject(subject)
			if err != nil {
				return err
			}
			alt, err := parseSANs(sanList)
			if err != nil {
				return err
			}
			if days < 1 || days > 36500 {
				return usagef("--days %d: 1 to 36500", days)
			}
			return g.withToken(cmd, uri, true, func(c *ctx) error {
				objs, err := c.objects(append(tmpl, tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_PRIVATE_KEY))...)
				if err != nil {
					return err
				}
				switch {
				case len(objs) == 0:
					return errors.New("no private key matches")
				case len(objs) > 1:
					return fmt.Errorf("%d private keys match: %s; name one by --id or --unique-id", len(objs), candidates(objs))
				}
				pub, err := publicKeyOf(c, objs[0])
				if err != nil {
					return err
				}
				signer := &tokenSigner{c: c, priv: objs[0].handle, pub: pub}
				var block pem.Block
				if selfSigned {
					serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
					if err != nil {
						return err
					}
					now := time.Now()
					t := &x509.Certificate{SerialNumber: serial, Subject: name, NotBefore: now.Add(-time.Minute),
						NotAfter: now.AddDate(0, 0, days), SignatureAlgorithm: sigAlg(pub),
						KeyUsage:    x509.KeyUsageDigitalSignature,
						ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
						DNSNames:    alt.dns, IPAddresses: alt.ips, EmailAddresses: alt.email, URIs: alt.uris,
						BasicConstraintsValid: true}
					if _, ok := pub.(*rsa.PublicKey); ok {
						t.KeyUsage |= x509.KeyUsageKeyEncipherment
					}
					der, err := x509.CreateCertificate(rand.Reader, t, t, pub, signer)
					if err != nil {
						return err
					}
					block = pem.Block{Type: "CERTIFICATE", Bytes: der}
				} else {
					der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: name,
						SignatureAlgorithm: sigAlg(pub), DNSNames: alt.dns, IPAddresses: alt.ips, EmailAddresses: alt.email,
						URIs: alt.uris}, signer)
					if err != nil {
						return err
					}
					block = pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}
				}
				data := pem.EncodeToMemory(&block)
				if outFile != "" {
					return os.WriteFile(outFile, data, 0o644)
				}
				_, err = c.out.Write(data)
				return err
			})
		},
	}
	sel.register(c, false)
	c.Flags().StringVar(&subject, "subject", "", "the subject: /CN=host/O=Org, CN=host,O=Org or a bare common name")
	c.Flags().StringSliceVar(&sanList, "san", nil, "subject alternative names: DNS:name, IP:addr, email:addr, URI:uri")
	c.Flags().BoolVar(&selfSigned, "x509", false, "make a self-signed certificate instead of a request")
	c.Flags().IntVar(&days, "days", 365, "validity of the --x509 certificate, in days")
	c.Flags().StringVarP(&outFile, "out", "o", "", "write to this file instead of standard output")
	return c
}

// publicKeyOf is the public key of a private-key object (its
// CKA_PUBLIC_KEY_INFO, else the public key of the same ID).
func publicKeyOf(c *ctx, priv object) (crypto.PublicKey, error) {
	a, err := getAttrs(c.l, c.h, priv.handle, ck.CKA_PUBLIC_KEY_INFO)
	if err != nil {
		return nil, err
	}
	spki := a[ck.CKA_PUBLIC_KEY_INFO]
	if len(spki) == 0 {
		pubs, err := c.objects(attr(ck.CKA_ID, priv.id), tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_PUBLIC_KEY))
		if err != nil {
			return nil, err
		}
		if len(pubs) == 0 {
			return nil, fmt.Errorf("no public key for %s", priv)
		}
		if a, err = getAttrs(c.l, c.h, pubs[0].handle, ck.CKA_PUBLIC_KEY_INFO); err != nil {
			return nil, err
		}
		spki = a[ck.CKA_PUBLIC_KEY_INFO]
	}
	return x509.ParsePKIXPublicKey(spki)
}
