// Package tpmtoken is the PKCS#11 token in pure Go: slots, tokens, sessions,
// objects and attributes, mechanisms, PINs and the object store. Every TPM
// command goes through one asyncq worker that owns the tpm.Engine. Errors
// carry their CK_RV as *ck.Error; the C layer turns them into return codes.
package tpmtoken
