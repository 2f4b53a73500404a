// Package tpmtoken is the PKCS#11 token in pure Go: slots, tokens, sessions,
// objects and attributes, mechanisms, PINs and the object store. Every TPM
// command is a job on one asyncq.Queue that holds the tpm.Engine: one job
// at a time, run by the caller's own goroutine when the TPM is idle and
// nothing is queued (asyncq.Do), else by the queue's worker in turn; an
// async session's job is submitted and may pend. No lock of this package
// is held across a job (lock order: docs/design.md "Locks"). Errors carry
// their CK_RV as *ck.Error; the C layer turns them into return codes.
package tpmtoken
