package main

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/attestation"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// Enrollment of the TPM's attestation key with an attestation CA
// (docs/attestation.md): enroll-ak on the device, ca on the CA's host.

func enrollAKCmd(g *globals) *cobra.Command {
	var caCert, caKey, passFile, akType, answer, install string
	var ekRoots []string
	var validity time.Duration
	var request bool
	c := &cobra.Command{
		Use:   "enroll-ak (--request | --answer CHALLENGE | --install AKCERT.pem | --ca-cert PEM --ca-key PEM --ek-roots PEM) [--ak-type rsa|ecc]",
		Short: "Have an attestation CA certify this TPM's attestation key",
		Long: `Get this TPM's attestation key (AK) certified, so its evidence verifies with
the attestation CA's certificate alone.

With the CA elsewhere, three files travel: "enroll-ak --request" prints the
request (the EK certificate, the AK, the TPM's identity); the CA answers
with a challenge (tpm11 ca challenge); "enroll-ak --answer CHALLENGE" has
the TPM recover its secret (credential activation) and prints the proof;
the CA issues the AK certificate (tpm11 ca issue); "enroll-ak --install"
keeps it with the token. The CA's key never comes to the device.

On one host, --ca-cert --ca-key --ek-roots do it all at once: check the EK
certificate against --ek-roots, bind the AK to the EK by credential
activation, issue the AK certificate (WebAuthn's AIK profile, naming the
device) and keep it with the token.`,
		Example: `  tpm11 enroll-ak --request --ak-type rsa > req.json
  tpm11 enroll-ak --answer chal.json > proof.json
  tpm11 enroll-ak --install akcert.pem
  tpm11 enroll-ak --ca-cert att-ca.pem --ca-key att-ca.key --ek-roots swtpm-localca-rootca-cert.pem --ek-roots issuercert.pem`,
		Args: maxArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			modes := 0
			for _, on := range []bool{request, answer != "", install != "", caCert != "" || caKey != ""} {
				if on {
					modes++
				}
			}
			if modes != 1 {
				return usagef("one of --request, --answer, --install, or --ca-cert with --ca-key")
			}
			if akType != "" && akType != tpm.AKRSA && akType != tpm.AKECC {
				return usagef("--ak-type %q: rsa or ecc", akType)
			}
			switch {
			case request:
				return g.withToken(cmd, nil, false, func(c *ctx) error {
					ev, err := c.l.AKEvidence(c.h, akType, nil)
					if err != nil {
						return err
					}
					b, err := ev.JSON()
					if err != nil {
						return err
					}
					_, err = c.out.Write(append(b, '\n'))
					return err
				})
			case answer != "":
				data, err := readInput(answer, "challenge")
				if err != nil {
					return err
				}
				ch, err := attestation.ParseChallenge(data)
				if err != nil {
					return err
				}
				return g.withToken(cmd, nil, false, func(c *ctx) error {
					secret, err := c.l.ActivateCredential(c.h, &ch.ActivationChallenge)
					if err != nil {
						return fmt.Errorf("credential activation failed: the challenge is not for this TPM's EK and AK: %w", err)
					}
					b, err := json.MarshalIndent(attestation.Proof{Format: attestation.ProofFormat, RequestID: ch.RequestID, Secret: secret}, "", "  ")
					if err != nil {
						return err
					}
					_, err = c.out.Write(append(b, '\n'))
					return err
				})
			case install != "":
				chain, err := readCerts([]string{install})
				if err != nil {
					return err
				}
				return g.withToken(cmd, nil, true, func(c *ctx) error {
					return installAKCert(c, chain)
				})
			}
			if caCert == "" || caKey == "" || len(ekRoots) == 0 {
				return usagef("--ca-cert, --ca-key and --ek-roots are required")
			}
			ca, err := readCertFile(caCert)
			if err != nil {
				return err
			}
			kf, err := readKeyFile(caKey, passFile)
			if err != nil {
				return err
			}
			roots, inter, err := ekPools(ekRoots)
			if err != nil {
				return err
			}
			return g.withToken(cmd, nil, true, func(c *ctx) error {
				ev, err := c.l.AKEvidence(c.h, akType, nil)
				if err != nil {
					return err
				}
				opts := attestation.VerifyOptions{EKRoots: roots, EKIntermediates: inter,
					Activate: func(ch *tpmtoken.ActivationChallenge) ([]byte, error) { return c.l.ActivateCredential(c.h, ch) }}
				var signer crypto.Signer = kf.key
				ak, err := attestation.IssueAKCertificate(ev, opts, ca, signer, validity)
				if err != nil {
					return err
				}
				return installAKCert(c, []*x509.Certificate{ak, ca})
			})
		},
	}
	c.Flags().BoolVar(&request, "request", false, "print an enrollment request for a CA elsewhere (tpm11 ca challenge)")
	c.Flags().StringVar(&answer, "answer", "", "answer the CA's challenge file: print the proof (tpm11 ca issue)")
	c.Flags().StringVar(&install, "install", "", "keep the AK certificate (PEM, then its chain) the CA issued")
	c.Flags().StringVar(&akType, "ak-type", "", "the attestation key: rsa or ecc (default: rsa where the TPM has RSA-2048)")
	c.Flags().StringVar(&caCert, "ca-cert", "", "one host: the attestation CA's certificate (PEM or DER)")
	c.Flags().StringVar(&caKey, "ca-key", "", "one host: the attestation CA's private key (PEM, PKCS#8 or SEC1/PKCS#1)")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "file holding the CA key's passphrase")
	c.Flags().StringArrayVar(&ekRoots, "ek-roots", nil, "one host: PEM file of EK certificate roots and issuers (repeatable)")
	c.Flags().DurationVar(&validity, "validity", 365*24*time.Hour, "one host: how long the AK certificate is valid (at most as long as the CA's)")
	return c
}

// installAKCert keeps chain with the token after checking that its first
// certificate is for this TPM's AK of that key's type.
func installAKCert(c *ctx, chain []*x509.Certificate) error {
	typ := tpm.AKECC
	if _, ok := chain[0].PublicKey.(*rsa.PublicKey); ok {
		typ = tpm.AKRSA
	}
	ev, err := c.l.AKEvidence(c.h, typ, nil)
	if err != nil {
		return err
	}
	ak, err := attestation.AKPublicKey(ev)
	if err != nil {
		return err
	}
	if !attestation.PublicEqual(ak, chain[0].PublicKey) {
		return errors.New("the certificate is not for this TPM's attestation key")
	}
	if err := c.l.SetAKCertificates(c.h, chain); err != nil {
		return err
	}
	id := attestation.PermanentIdentifier(chain[0])
	fmt.Fprintf(c.out, "AK certificate (%s AK) serial %x issued by %q, valid until %s, device %s, kept with token %s\n",
		typ, chain[0].SerialNumber, chain[0].Issuer.String(), chain[0].NotAfter.Format(time.DateOnly), id, c.t)
	return pem.Encode(c.out, &pem.Block{Type: "CERTIFICATE", Bytes: chain[0].Raw})
}

func caCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ca",
		Short: "An attestation CA's side of enrollment (no TPM needed)",
		Long: `The attestation CA's steps of remote enrollment (tpm11 enroll-ak): "ca
challenge" checks a device's request (its EK certificate against --ek-roots)
and makes a challenge only that TPM can answer; "ca issue" checks the
device's proof and prints the AK certificate, then its chain. Neither needs
a TPM or a token store; the pending challenges are kept in --state (each
good once, for --ttl).`,
	}
	var ekRoots []string
	var state string
	var ttl time.Duration
	stateDir := func() (string, error) {
		if state != "" {
			return state, nil
		}
		if d := os.Getenv("XDG_STATE_HOME"); d != "" {
			return filepath.Join(d, "tpm11-ca"), nil
		}
		home, err := os.UserHomeDir()
		if err != nil {
			return "", errors.New("no home directory: give --state")
		}
		return filepath.Join(home, ".local", "state", "tpm11-ca"), nil
	}
	challenge := &cobra.Command{
		Use:     "challenge --ek-roots PEM [--ek-roots PEM] REQUEST",
		Short:   "Check an enrollment request and print a challenge for its TPM",
		Args:    exactArgs(1, "one request file"),
		Example: `  tpm11 ca challenge --ek-roots ek-root.pem --ek-roots ek-issuer.pem req.json > chal.json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(ekRoots) == 0 {
				return usagef("--ek-roots is required")
			}
			req, err := readInput(args[0], "request")
			if err != nil {
				return err
			}
			roots, inter, err := ekPools(ekRoots)
			if err != nil {
				return err
			}
			ch, pending, err := attestation.NewChallenge(req, attestation.VerifyOptions{EKRoots: roots, EKIntermediates: inter}, ttl)
			if err != nil {
				return fmt.Errorf("request refused: %w", err)
			}
			dir, err := stateDir()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			pb, _ := json.Marshal(pending)
			if err := os.WriteFile(filepath.Join(dir, pending.RequestID+".json"), pb, 0o600); err != nil {
				return err
			}
			b, err := json.MarshalIndent(ch, "", "  ")
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(append(b, '\n'))
			return err
		},
	}
	challenge.Flags().StringArrayVar(&ekRoots, "ek-roots", nil, "PEM file of EK certificate roots and issuers (repeatable)")
	challenge.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the challenge may be answered")

	var caCert, caKey, passFile string
	var validity time.Duration
	issue := &cobra.Command{
		Use:     "issue REQUEST PROOF --ca-cert PEM --ca-key PEM",
		Short:   "Check a device's proof and print its AK certificate and chain (PEM)",
		Args:    exactArgs(2, "the request and the proof"),
		Example: `  tpm11 ca issue req.json proof.json --ca-cert att-ca.pem --ca-key att-ca.key > akcert.pem`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if caCert == "" || caKey == "" {
				return usagef("--ca-cert and --ca-key are required")
			}
			req, err := readInput(args[0], "request")
			if err != nil {
				return err
			}
			pdata, err := readInput(args[1], "proof")
			if err != nil {
				return err
			}
			proof, err := attestation.ParseProof(pdata)
			if err != nil {
				return err
			}
			cas, err := readCerts([]string{caCert})
			if err != nil {
				return err
			}
			kf, err := readKeyFile(caKey, passFile)
			if err != nil {
				return err
			}
			dir, err := stateDir()
			if err != nil {
				return err
			}
			// A challenge is answered once: the pending record goes
			// before the proof is looked at, so a replay finds none.
			file := filepath.Join(dir, attestation.RequestID(req)+".json")
			pb, err := os.ReadFile(file)
			if err != nil {
				return errors.New("no pending challenge for this request (never made, already answered, or made with another --state)")
			}
			if err := os.Remove(file); err != nil {
				return err
			}
			var pending attestation.Pending
			if err := json.Unmarshal(pb, &pending); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			ak, err := attestation.IssueFromProof(req, proof, &pending, cas[0], kf.key, validity)
			if err != nil {
				return fmt.Errorf("not issued: %w", err)
			}
			out := cmd.OutOrStdout()
			if err := pem.Encode(out, &pem.Block{Type: "CERTIFICATE", Bytes: ak.Raw}); err != nil {
				return err
			}
			for _, c := range cas {
				if !attestation.SelfSigned(c) {
					if err := pem.Encode(out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	issue.Flags().StringVar(&caCert, "ca-cert", "", "the attestation CA's certificate, then its chain (PEM)")
	issue.Flags().StringVar(&caKey, "ca-key", "", "the attestation CA's private key (PEM)")
	issue.Flags().StringVar(&passFile, "passphrase-file", "", "file holding the CA key's passphrase")
	issue.Flags().DurationVar(&validity, "validity", 365*24*time.Hour, "how long the AK certificate is valid (at most as long as the CA's)")
	c.PersistentFlags().StringVar(&state, "state", "", "directory of pending challenges (default $XDG_STATE_HOME/tpm11-ca or ~/.local/state/tpm11-ca)")
	c.AddCommand(challenge, issue)
	return c
}
