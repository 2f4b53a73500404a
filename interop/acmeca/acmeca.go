// Package acmeca runs stock step-ca (github.com/smallstep/certificates at
// the version interop/go.mod pins) in this process, as cmd/step-ca does —
// config.LoadConfiguration, ca.New, Run — with one ACME provisioner whose
// only challenge is device-attest-01 (format "tpm") and whose attestation
// roots are the attestation CA that enrolled the device's AK. It is the
// real CA code: its ACME server, its device-attest-01 validation, its
// database (bbolt) and its signing; only the PKI (a root and an
// intermediate, made here) and the port are the test's.
package acmeca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/ca"
)

// leafTemplate is step-ca's DefaultAttestedLeafTemplate with serverAuth
// added (the default has clientAuth only), so that the certificate can
// serve TLS: a provisioner option, as a CA operator would set it.
const leafTemplate = `{
	"subject": {{ toJson .Subject }},
	"sans": {{ toJson .SANs }},
{{- if typeIs "*rsa.PublicKey" .Insecure.CR.PublicKey }}
	"keyUsage": ["keyEncipherment", "digitalSignature"],
{{- else }}
	"keyUsage": ["digitalSignature"],
{{- end }}
	"extKeyUsage": ["serverAuth", "clientAuth"]
}`

// CA is a running step-ca.
type CA struct {
	// Directory is the ACME directory URL; Root the CA's root
	// certificate file (PEM), which its TLS and its certificates chain to.
	Directory, Root string
	ca              *ca.CA
	done            chan error
}

// Start runs step-ca in dir (created) with an ACME provisioner "tpm"
// trusting the PEM certificates in attestationRoots for device-attest-01,
// on a free loopback port. Stop it with Stop.
func Start(dir string, attestationRoots []byte) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writePKI(dir); err != nil {
		return nil, err
	}
	var lastErr error
	// The port is chosen free, then bound by step-ca: another process may
	// take it in between, hence a few tries.
	for range 5 {
		c, err := start(dir, attestationRoots)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(dir string, attestationRoots []byte) (*CA, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := map[string]any{
		"root": filepath.Join(dir, "root.pem"), "crt": filepath.Join(dir, "intermediate.pem"),
		"key": filepath.Join(dir, "intermediate.key"), "address": addr, "dnsNames": []string{"127.0.0.1", "localhost"},
		"db": map[string]any{"type": "bbolt", "dataSource": filepath.Join(dir, "db")},
		"authority": map[string]any{"provisioners": []any{map[string]any{
			"type": "ACME", "name": "tpm",
			"challenges":         []string{"device-attest-01"},
			"attestationFormats": []string{"tpm"},
			"attestationRoots":   attestationRoots,
			"options":            map[string]any{"x509": map[string]any{"template": leafTemplate}},
		}}},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "ca.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return nil, err
	}
	conf, err := config.LoadConfiguration(file)
	if err != nil {
		return nil, err
	}
	srv, err := ca.New(conf, ca.WithConfigFile(file), ca.WithQuiet(true))
	if err != nil {
		return nil, err
	}
	c := &CA{Directory: "https://" + addr + "/acme/tpm/directory", Root: filepath.Join(dir, "root.pem"), ca: srv, done: make(chan error, 1)}
	go func() { c.done <- srv.Run() }()
	if ran, err := c.wait(); err != nil {
		if !ran { // Run stops the CA itself when it fails
			_ = srv.Stop()
			<-c.done
		}
		return nil, err
	}
	return c, nil
}

// wait returns once the ACME directory answers over TLS checked against
// the root, or Run failed (the port taken: ran), or after a bound that
// catches a hang.
func (c *CA) wait() (ran bool, err error) {
	pem, err := os.ReadFile(c.Root)
	if err != nil {
		return false, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-c.done:
			return true, fmt.Errorf("step-ca stopped: %w", err)
		default:
		}
		res, err := client.Get(c.Directory)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return false, nil
			}
			err = errors.New(res.Status)
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("step-ca not answering at %s: %w", c.Directory, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a server that is starting
	}
}

// Stop stops the server and closes its database.
func (c *CA) Stop() error {
	err := c.ca.Stop()
	<-c.done
	return err
}

// writePKI makes the CA's root and intermediate (ECDSA P-256) in dir.
func writePKI(dir string) error {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "interop step-ca root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return err
	}
	intKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	intTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "interop step-ca intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(47 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	intDER, err := x509.CreateCertificate(rand.Reader, intTmpl, root, intKey.Public(), rootKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(intKey)
	if err != nil {
		return err
	}
	for name, block := range map[string]*pem.Block{
		"root.pem":         {Type: "CERTIFICATE", Bytes: rootDER},
		"intermediate.pem": {Type: "CERTIFICATE", Bytes: intDER},
		"intermediate.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	return nil
}
