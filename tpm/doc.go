// Package tpm owns every conversation with the TPM: the transports (Linux
// device, swtpm socket, the in-process simulator), the retry of transient
// response codes, and the Engine that keeps objects loaded in the TPM's few
// object slots. An Engine is not safe for concurrent use: exactly one
// goroutine (asyncq's worker) owns it, so no lock is held across a TPM call.
package tpm
