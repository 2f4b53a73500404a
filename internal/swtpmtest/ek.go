package swtpmtest

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// EKCA is a private local CA for EK certificates: swtpm_localca's state
// (root CA, intermediate and signing key, made on first use) in a
// directory of the test's own, so a test never depends on or touches
// /var/lib/swtpm-localca.
type EKCA struct {
	Dir    string
	config string
}

// NewEKCA makes an empty CA directory and the swtpm_setup and
// swtpm_localca configuration files pointing at it. It skips the test if
// swtpm_setup is not installed (Debian's swtpm-tools).
func NewEKCA(t testing.TB) *EKCA {
	t.Helper()
	for _, tool := range []string{"swtpm", "swtpm_setup", "swtpm_localca"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian swtpm-tools)", tool)
		}
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := os.Mkdir(ca, 0o700); err != nil {
		t.Fatal(err)
	}
	localca := filepath.Join(dir, "swtpm-localca.conf")
	write(t, localca, "statedir = "+ca+"\nsigningkey = "+ca+"/signkey.pem\nissuercert = "+ca+
		"/issuercert.pem\ncertserial = "+ca+"/certserial\n")
	opts := filepath.Join(dir, "swtpm-localca.options")
	write(t, opts, "--platform-manufacturer tpm11\n--platform-version 1.0\n--platform-model test\n")
	// swtpm_setup names the TPM's manufacturer by swtpm's PCI vendor ID
	// (id:00001014); a manufacturer's EK certificate names the TCG
	// registered vendor ID the TPM reports as TPM_PT_MANUFACTURER (IBM:
	// id:49424D00), and WebAuthn verifiers check it against the registry.
	tool := filepath.Join(dir, "localca.sh")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\nfor a; do shift; [ \"$a\" = id:00001014 ] && a=id:49424D00; set -- \"$@\" \"$a\"; done\n"+
		"exec swtpm_localca \"$@\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	setup := filepath.Join(dir, "swtpm_setup.conf")
	write(t, setup, "create_certs_tool = "+tool+"\ncreate_certs_tool_config = "+localca+
		"\ncreate_certs_tool_options = "+opts+"\nactive_pcr_banks = sha256\n")
	return &EKCA{Dir: ca, config: setup}
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Manufacture makes a TPM state as a manufacturer would: swtpm_setup
// creates the RSA and ECC EKs (kept at 0x81010001 and 0x81010016) and
// writes their certificates, issued by this CA, into NV (0x01c00002 and
// 0x01c00016). It returns the state directory, for SocketOn. About a
// second on swtpm; the first call also makes the CA.
func (ca *EKCA) Manufacture(t testing.TB) string {
	t.Helper()
	state := t.TempDir()
	args := []string{"--tpm2", "--tpmstate", state, "--create-ek-cert", "--overwrite",
		"--config", ca.config, "--logfile", filepath.Join(state, "setup.log")}
	if os.Geteuid() == 0 {
		args = append(args, "--runas", "root") // else it drops to the tss user
	}
	if out, err := exec.Command("swtpm_setup", args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(state, "setup.log"))
		t.Fatalf("swtpm_setup: %v\n%s\n%s", err, out, log)
	}
	return state
}

// Roots is the CA's root certificate, the trust anchor of its EK
// certificates.
func (ca *EKCA) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert(t, "swtpm-localca-rootca-cert.pem"))
	return pool
}

// Intermediate is the CA certificate that signs the EK certificates.
func (ca *EKCA) Intermediate(t testing.TB) *x509.Certificate {
	t.Helper()
	return ca.cert(t, "issuercert.pem")
}

// RootPEM is the root certificate's file.
func (ca *EKCA) RootPEM() string { return filepath.Join(ca.Dir, "swtpm-localca-rootca-cert.pem") }

func (ca *EKCA) cert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ca.Dir, name))
	if err != nil {
		t.Fatalf("CA certificate (Manufacture makes it): %v", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", name)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Intermediates is a pool holding Intermediate.
func (ca *EKCA) Intermediates(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Intermediate(t))
	return pool
}
