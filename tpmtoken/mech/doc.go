// Package mech is tpm11's knowledge of PKCS#11 mechanisms, with no TPM and
// no sessions: the tables of hashes and curves, the RSA encodings (PKCS#1
// v1.5, DigestInfo, PSS, OAEP), the X9.63 KDF, key-import parsing, AES
// chaining, and the typed parameters the C layer decodes into. Each
// operation value owns its parameters, knows its output length before any
// work, and says what it needs from the TPM as plain data (a TPMCall);
// tpmtoken turns that into a job on the TPM worker. Everything here is
// unit-tested without a TPM.
package mech
