// Package tpm owns every conversation with the TPM: the transports (a
// Linux device; a socket to swtpm or to a simulator served by `tpm11
// simulator`; a simulator in this process only in programs that import
// tpm/sim, which the PKCS#11 module does not), the one reader of the
// command and response header (wire.go), the retry of transient response
// codes, and the Engine that keeps objects loaded in the TPM's few object
// slots. Constants and types are go-tpm's. The commands that cost most
// through go-tpm's reflection are marshalled by hand, byte for byte as
// go-tpm would (hot_test.go and context_test.go compare hot.go's and
// context.go's): TPM2_Sign, TPM2_RSA_Decrypt and TPM2_HMAC with a password session
// (hot.go), TPM2_EncryptDecrypt2 and TPM2_ECDH_ZGen (symmetric.go),
// TPM2_ContextLoad and TPM2_FlushContext (context.go), TPM2_Create over the
// kept salted session (kept_session.go). So are the commands go-tpm's tpm2
// package has no struct for: the v1.85 post-quantum ones (pqc_commands.go),
// TPM2_StirRandom and TPM2_DictionaryAttackParameters (da.go). Those with
// an HMAC session (ECDH_ZGen, Create, the post-quantum ones) run through
// execRaw (raw_exec.go), which drives go-tpm's tpm2.Session; the others
// carry a password session or none. All read responses with one reader
// and write TPM2Bs with one appendTPM2B (wire.go).
//
// Who calls what, when, under which lock:
//
//   - An Engine takes no lock and is not safe for concurrent use: its
//     caller runs one job at a time on it. In the token that is asyncq's
//     rule: a job runs on asyncq's worker goroutine, or on the thread of
//     a synchronous caller (asyncq.Do) that found the queue idle with
//     nothing queued. The queue's running flag, set and cleared under its
//     mutex but not held while the job runs, makes the two exclusive, so
//     whichever thread runs a job is the Engine's only user. The idle and
//     yield hooks (SaveAll, Disconnected, Device.Release) run under the
//     same rule, with the resource taken.
//   - A Loadable's fields, its Auth above all, are read (and the token's
//     wiping of Auth done) only within jobs.
//   - A Stream (the device and socket transports) serializes commands
//     with its mutex, held for one round trip, which its deadline bounds
//     (deadline.go). Device.Held and Device.Contended take it too: the
//     yield policy calls them between jobs, when no command is in flight.
//     Device.Busy reads atomics only and may be called from any goroutine
//     at any time: slot and token queries use it never to wait on a stuck
//     TPM.
//   - Stream.Abort runs from the token's closing watch (its own
//     goroutine) while a command is in flight, so it does not take
//     Stream.mu (held by that command): it takes only Stream.cmu, which
//     guards the connection while it is replaced or closed, so Abort shuts
//     down a descriptor that is still the connection's.
//   - Lock order: asyncq's queue mutex is never held while a job runs, so
//     never together with Stream.mu; Stream.mu is taken before a turn
//     ticket's file lock (turns.go) and released after it is given back;
//     Stream.cmu is a leaf, taken after Stream.mu (or alone, by Abort).
//     Callers' locks come before Stream.mu (the token's everyAtMost lock
//     around Device.Contended: docs/design.md "Locks").
package tpm
