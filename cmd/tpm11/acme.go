package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"golang.org/x/crypto/acme"
)

// deviceAttest01 is the challenge of draft-acme-device-attest: the client
// answers with {"attObj": base64url(attestation object)} whose nonce is
// SHA-256 of the key authorization.
const deviceAttest01 = "device-attest-01"

// acmeCmd is `tpm11 acme`: one command from a token key to a certificate
// on the token, through an ACME CA's device-attest-01 (step-ca). The ACME
// protocol is golang.org/x/crypto/acme's (Challenge.Payload carries the
// attestation object); only the evidence and the CSR are ours.
func acmeCmd(g *globals) *cobra.Command {
	var sel objectFlags
	var directory, permID, rootsFile, chainOut string
	var replace, asJSON bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "acme (--id HEX | --label LABEL | pkcs11:URI) --directory URL",
		Short: "Get a certificate for a token key from an ACME CA by device attestation",
		Long: `Get a certificate for a key made in the TPM from an ACME CA (step-ca) by the
device-attest-01 challenge, and add it to the key on the token. The order's
identifier is the device's permanent-identifier (the one in the AK
certificate, by default); the CA checks that the TPM certified the key with
the key authorization's hash as nonce and that the AK certificate chains to
one of its attestation roots, then signs a CSR made by the key. The AK must
be enrolled first (tpm11 enroll-ak). The ACME account key is a fresh
software key, used for this one order.`,
		Example: `  tpm11 acme --id 01 --directory https://ca.example:9000/acme/tpm/directory --ca-roots root.pem --chain-out chain.pem`,
		Args:    maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, err := sel.selection(args)
			if err != nil {
				return err
			}
			if len(tmpl) == 0 {
				return usagef("name the key: --id, --label or a pkcs11: URI")
			}
			if directory == "" {
				return usagef("--directory is required: the CA's ACME directory URL")
			}
			httpClient := &http.Client{Timeout: timeout}
			if rootsFile != "" {
				p, err := os.ReadFile(rootsFile)
				if err != nil {
					return err
				}
				roots := x509.NewCertPool()
				if !roots.AppendCertsFromPEM(p) {
					return fmt.Errorf("--ca-roots %s: no PEM certificate", rootsFile)
				}
				httpClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
			}
			return g.withToken(cmd, uri, true, func(c *ctx) error {
				o, err := c.privateKey(tmpl)
				if err != nil {
					return err
				}
				pub, err := publicKeyOf(c, o)
				if err != nil {
					return err
				}
				old, err := c.objects(attr(ck.CKA_ID, o.id), tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_CERTIFICATE))
				if err != nil {
					return err
				}
				if len(old) > 0 && !replace {
					return fmt.Errorf("key id %s has a certificate already (%s): give --replace to replace it", o.ID, old[0].Subject)
				}
				attest := func(nonce []byte) ([]byte, *tpmtoken.Evidence, error) {
					ev, err := c.l.Attest(c.h, o.handle, tpmtoken.AttestOptions{Nonce: nonce})
					if err != nil {
						return nil, nil, err
					}
					obj, err := attestation.ACME(ev)
					return obj, ev, err
				}
				if permID == "" {
					if permID, err = enrolledIdentifier(attest); err != nil {
						return err
					}
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				chain, err := acmeOrder(ctx, directory, httpClient, permID, &tokenSigner{c: c, priv: o.handle, pub: pub},
					func(nonce []byte) ([]byte, error) { obj, _, err := attest(nonce); return obj, err })
				if err != nil {
					return err
				}
				if !samePublicKey(chain[0].PublicKey, pub) {
					return errors.New("the CA's certificate is not for this key")
				}
				h, err := c.l.CreateObject(c.h, certTemplate(chain[0], o.id, o.Label))
				if err != nil {
					return fmt.Errorf("certificate: %w", err)
				}
				if err := c.replaceOld(old); err != nil {
					return err
				}
				if chainOut != "" {
					var p []byte
					for _, crt := range chain {
						p = append(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: crt.Raw})...)
					}
					if err := os.WriteFile(chainOut, p, 0o644); err != nil {
						return err
					}
				}
				return report(c, "certificate added", fmt.Sprintf("for %s from %s, until %s", permID, chain[0].Issuer.CommonName,
					chain[0].NotAfter.UTC().Format("2006-01-02")), []uint64{h}, asJSON, false)
			})
		},
	}
	sel.register(c, false)
	c.Flags().StringVar(&directory, "directory", "", "the CA's ACME directory URL")
	c.Flags().StringVar(&permID, "permanent-identifier", "", "the identifier to order (default: the device identifier in the AK certificate)")
	c.Flags().StringVar(&rootsFile, "ca-roots", "", "PEM file of the roots the ACME server's TLS certificate chains to (default: the system's)")
	c.Flags().StringVar(&chainOut, "chain-out", "", "also write the certificate and its chain (PEM) to this file")
	c.Flags().BoolVar(&replace, "replace", false, "replace the key's certificate")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up on the CA after this long")
	return c
}

// enrolledIdentifier is the PermanentIdentifier of the AK certificate
// (enroll-ak), read from evidence made with a throwaway nonce.
func enrolledIdentifier(attest func([]byte) ([]byte, *tpmtoken.Evidence, error)) (string, error) {
	_, ev, err := attest(make([]byte, sha256.Size))
	if err != nil {
		return "", err
	}
	if len(ev.AK.Certificates) == 0 {
		return "", errors.New("the AK has no certificate: enroll it first (tpm11 enroll-ak)")
	}
	b, _ := pem.Decode([]byte(ev.AK.Certificates[0]))
	if b == nil {
		return "", errors.New("the AK certificate is not PEM")
	}
	crt, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", fmt.Errorf("the AK certificate: %w", err)
	}
	id := attestation.PermanentIdentifier(crt)
	if id == "" {
		return "", errors.New("the AK certificate names no device (no PermanentIdentifier): give --permanent-identifier")
	}
	return id, nil
}

// acmeOrder orders a certificate for the permanent identifier id, answers
// the device-attest-01 challenge with attObj(SHA-256(key authorization))
// and finalizes with a CSR signed by key; it returns the certificate and
// its chain.
func acmeOrder(ctx context.Context, directory string, hc *http.Client, id string, key *tokenSigner, attObj func(nonce []byte) ([]byte, error)) ([]*x509.Certificate, error) {
	account, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cl := &acme.Client{Key: account, DirectoryURL: directory, HTTPClient: hc, UserAgent: "tpm11"}
	if _, err := cl.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		return nil, fmt.Errorf("ACME account at %s: %w", directory, err)
	}
	order, err := cl.AuthorizeOrder(ctx, []acme.AuthzID{{Type: "permanent-identifier", Value: id}})
	if err != nil {
		return nil, fmt.Errorf("ACME order for %s: %w", id, err)
	}
	for _, u := range order.AuthzURLs {
		az, err := cl.GetAuthorization(ctx, u)
		if err != nil {
			return nil, err
		}
		if az.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for _, ch := range az.Challenges {
			if ch.Type == deviceAttest01 {
				chal = ch
			}
		}
		if chal == nil {
			return nil, fmt.Errorf("the CA offers no %s challenge for %s", deviceAttest01, id)
		}
		// The key authorization is token.thumbprint, as for http-01.
		ka, err := cl.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return nil, err
		}
		nonce := sha256.Sum256([]byte(ka))
		obj, err := attObj(nonce[:])
		if err != nil {
			return nil, err
		}
		if chal.Payload, err = json.Marshal(map[string]string{"attObj": base64.RawURLEncoding.EncodeToString(obj)}); err != nil {
			return nil, err
		}
		got, err := cl.Accept(ctx, chal)
		if err != nil {
			return nil, fmt.Errorf("the CA refused the attestation: %w", err)
		}
		// step-ca validates device-attest-01 within the request and marks
		// a refused challenge invalid while the authorization stays
		// pending: its verdict is the challenge's, not the authorization's.
		switch got.Status {
		case acme.StatusInvalid:
			return nil, fmt.Errorf("the CA refused the attestation: %s", problem(got.Error))
		case acme.StatusValid:
		default:
			if _, err := cl.WaitAuthorization(ctx, u); err != nil {
				return nil, fmt.Errorf("the CA refused the attestation: %w", err)
			}
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{SignatureAlgorithm: sigAlg(key.pub)}, key)
	if err != nil {
		return nil, err
	}
	ders, _, err := cl.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return nil, fmt.Errorf("ACME finalize: %w", err)
	}
	var chain []*x509.Certificate
	for _, d := range ders {
		crt, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("the CA's certificate: %w", err)
		}
		chain = append(chain, crt)
	}
	if len(chain) == 0 {
		return nil, errors.New("the CA returned no certificate")
	}
	return chain, nil
}

// problem is the CA's problem document of a challenge, without the HTTP
// status x/crypto/acme leaves 0 there.
func problem(err error) string {
	var ae *acme.Error
	if errors.As(err, &ae) {
		return strings.TrimSpace(ae.ProblemType + ": " + ae.Detail)
	}
	return fmt.Sprint(err)
}
