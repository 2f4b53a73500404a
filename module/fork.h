/* What entry.c, fork.c, lists.c and the Go side share about forked
 * processes (see fork.c). */
#ifndef TPM11_FORK_H
#define TPM11_FORK_H
#include "ck.h"

#define TPM11_HIDDEN __attribute__((visibility("hidden")))

#define TPM11_CKR_HOST_MEMORY 0x002UL
#define TPM11_CKR_GENERAL_ERROR 0x005UL
#define TPM11_CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define TPM11_CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL
#define TPM11_CKR_SESSION_ASYNC_NOT_SUPPORTED 0x205UL
#define TPM11_CKF_OS_LOCKING_OK 0x2UL
#define TPM11_CKF_ASYNC_SESSION 0x8UL
#define TPM11_CKF_ASYNC_SESSION_SUPPORTED 0x04000000UL

/* Nonzero in a process forked from the one whose Go runtime started (set by
 * the pthread_atfork child handler): there no Go code may run, and every
 * call goes to tpm11_child_<name>. */
extern int tpm11_forked TPM11_HIDDEN;

/* In a forked process, between its C_Initialize and C_Finalize: the function
 * list of the helper serving it (p11-kit-client's); otherwise NULL. Its
 * version says which members exist. */
CK_FUNCTION_LIST_3_0 *tpm11_child_list(void) TPM11_HIDDEN;

/* The calls of a forked process: entry.c forwards each one to
 * tpm11_child_list(); fork.c replaces a few. */
#define TPM11_CHILD_DECL(kind, name, params) CK_RV tpm11_child_##name params TPM11_HIDDEN;
CK_FUNCTIONS_2_40(TPM11_CHILD_DECL)
CK_FUNCTIONS_3_0(TPM11_CHILD_DECL)
CK_FUNCTIONS_3_2(TPM11_CHILD_DECL)

/* Called from Go's C_Initialize with the TPM backend spec: a forked child
 * closes its copy of a connection to that swtpm (fork.c). */
void tpm11_fork_note_tpm(const char *spec) TPM11_HIDDEN;

/* Around every call into the helper's client: p11-kit-client writes to
 * the helper's socket with write(2), which raises SIGPIPE in the host when
 * the helper died. SIGPIPE is blocked in the calling thread for the call,
 * and one the call raised is taken off before it is unblocked (fork.c). */
#include <signal.h>
struct tpm11_nopipe {
  sigset_t old;
  int pending; /* a SIGPIPE was pending before: not ours to take */
};
void tpm11_nopipe_enter(struct tpm11_nopipe *g) TPM11_HIDDEN;
void tpm11_nopipe_leave(struct tpm11_nopipe *g) TPM11_HIDDEN;

/* C_OpenSession of the 2.40 and 3.0 lists (lists.c). */
CK_RV openSessionSyncOnly(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                          CK_SESSION_HANDLE_PTR phSession) TPM11_HIDDEN;

#endif
