// Package interop holds tests only: tpm11's attestation evidence checked
// by the verifiers people run — step-ca's own ACME device-attest-01
// validation (github.com/smallstep/certificates/acme) and go-webauthn's
// registration ceremony — unmodified, against a swtpm with EK
// certificates. It is a module of its own so that these verifiers and
// their many dependencies never enter tpm11's go.mod (nor, a fortiori,
// the PKCS#11 module); `make test` runs it (cd interop && go test ./...).
//
// Beside the tests, acmeca runs stock step-ca as a server in-process
// (ca.New + Run, as its cmd/step-ca does) with a device-attest-01 ACME
// provisioner, and cmd/acme-ca wraps it for testdata/acme-test.sh: the
// whole fleet flow through the tpm11 command and openssl.
package interop
