/*
 * tpm11.h: tpm11's vendor-defined PKCS#11 constants, for applications that
 * use what a TPM can prove through libtpm11.so (docs/attestation.md).
 * Include after pkcs11.h (any PKCS#11 2.40 or later header: CK_ULONG,
 * CKA_VENDOR_DEFINED). All are CKA_VENDOR_DEFINED | 0x54504Dnn ("TPM").
 * tpm11 defines no vendor mechanisms, key types or return codes.
 */
#ifndef TPM11_H
#define TPM11_H

/* Byte array, read-only, on private keys generated in the TPM: the key's
 * attestation evidence (JSON, tpm11-key-attestation/1, no nonce). Absent
 * (CKR_ATTRIBUTE_TYPE_INVALID) on keys imported or otherwise not made in
 * and fixed to the TPM, and on TPMs without an EK certificate. */
#define CKA_TPM11_ATTESTATION      (CKA_VENDOR_DEFINED | 0x54504D01UL)
/* ASCII PCR list ("0,7,16", SHA-256 bank): in a private key's template at
 * C_GenerateKeyPair, binds the key to those PCRs' values. */
#define CKA_TPM11_PCR_POLICY       (CKA_VENDOR_DEFINED | 0x54504D02UL)
/* DER SubjectPublicKeyInfo (ECDSA P-256 or RSA), with CKA_TPM11_PCR_POLICY:
 * the PCR values this key's signed approvals allow, instead of the values
 * at generation. */
#define CKA_TPM11_POLICY_AUTHORITY (CKA_VENDOR_DEFINED | 0x54504D03UL)
/* JSON, read-only: a bound key's policy as the TPM enforces it. */
#define CKA_TPM11_POLICY           (CKA_VENDOR_DEFINED | 0x54504D04UL)
/* CK_BBOOL: in a private key's template (with CKA_PRIVATE false), makes
 * the key a child of the owner's storage primary, exportable as a TSS2 key
 * file; true on linked key files. */
#define CKA_TPM11_PORTABLE         (CKA_VENDOR_DEFINED | 0x54504D05UL)

#endif /* TPM11_H */
