// Package attestation is the verifier's and the attestation CA's side of
// key attestation (docs/attestation.md); tpmtoken makes the evidence.
// It needs no TPM: the checks of the TPM structures are go-attestation's
// (the library step-ca's device-attest-01 uses), the certificate chains
// Go's crypto/x509, credential activation's encryption go-tpm's.
//
// It also makes the CBOR forms of evidence (ACME device-attest-01 and
// WebAuthn attestation objects). None of it is linked into the PKCS#11
// module (libtpm11.so): only the tpm11 command and Go programs use it.
package attestation
