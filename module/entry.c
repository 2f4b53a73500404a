// The exported C_* functions implemented in Go are these C entry points. In
// the process whose Go runtime started (the one that loaded the library)
// each one calls its Go implementation, tpm11go_<name>, at the cost of one
// load and compare. In a process forked from it no Go code may run (a Go
// runtime does not survive fork), so each one calls tpm11_child_<name>: by
// default a forwarder to the helper process serving that child (fork.c),
// with the module's answer for a function the helper's list lacks.
#include "ck.h"
#include "args.h"
#include "fork.h"
#include "_cgo_export.h"

/* Forwarders, weak: fork.c defines its own for the calls a child answers
 * differently (C_Initialize, C_Finalize, C_GetTokenInfo, C_OpenSession,
 * C_LoginUser). A helper list older than the function's version lacks it:
 * CKR_FUNCTION_NOT_SUPPORTED. A dead helper raises no SIGPIPE (fork.h). */
#define FWD_BODY(type, name, params, vmajor, vminor)                                              \
  __attribute__((weak)) CK_RV tpm11_child_##name params {                                      \
    CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();                                               \
    if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;                                         \
    if (r->version.major < vmajor || (r->version.major == vmajor && r->version.minor < vminor)) \
      return CKR_FUNCTION_NOT_SUPPORTED;                                                        \
    if (((type *)r)->name == NULL) return CKR_FUNCTION_NOT_SUPPORTED;                           \
    struct tpm11_nopipe g;                                                                      \
    tpm11_nopipe_enter(&g);                                                                     \
    CK_RV rv = ((type *)r)->name ARGS(params);                                                  \
    tpm11_nopipe_leave(&g);                                                                     \
    return rv;                                                                                  \
  }
#define FWD_NONE(name, params)
#define FWD_2_40_GO(name, params) FWD_BODY(CK_FUNCTION_LIST, name, params, 2, 0)
#define FWD_3_0_GO(name, params) FWD_BODY(CK_FUNCTION_LIST_3_0, name, params, 3, 0)
#define FWD_3_2_GO(name, params) FWD_BODY(CK_FUNCTION_LIST_3_2, name, params, 3, 2)
#define FWD_2_40_GOV FWD_2_40_GO
#define FWD_3_0_GOV FWD_3_0_GO
#define FWD_3_2_GOV FWD_3_2_GO
#define FWD_2_40_C FWD_NONE
#define FWD_3_0_C FWD_NONE
#define FWD_3_2_C FWD_NONE
#define FWD_2_40_STUB FWD_NONE
#define FWD_3_0_STUB FWD_NONE
#define FWD_3_2_STUB FWD_NONE
#define FWD_2_40(kind, name, params) FWD_2_40_##kind(name, params)
#define FWD_3_0(kind, name, params) FWD_3_0_##kind(name, params)
#define FWD_3_2(kind, name, params) FWD_3_2_##kind(name, params)
CK_FUNCTIONS_2_40(FWD_2_40)
CK_FUNCTIONS_3_0(FWD_3_0)
CK_FUNCTIONS_3_2(FWD_3_2)

/* The entry points. C and STUB functions are plain C in lists.c and safe in
 * any process. */
#define ENTRY_GO(name, params)                                                    \
  CK_RV name params {                                                             \
    if (__builtin_expect(tpm11_forked, 0)) return tpm11_child_##name ARGS(params); \
    return tpm11go_##name ARGS(params);                                           \
  }
#define ENTRY_GOV ENTRY_GO
#define ENTRY_C(name, params)
#define ENTRY_STUB(name, params)
#define ENTRY(kind, name, params) ENTRY_##kind(name, params)
CK_FUNCTIONS_2_40(ENTRY)
CK_FUNCTIONS_3_0(ENTRY)
CK_FUNCTIONS_3_2(ENTRY)

CK_RV openSessionSyncOnly(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                          CK_SESSION_HANDLE_PTR phSession) {
  /* A child refuses CKF_ASYNC_SESSION whatever list it came through. */
  if (__builtin_expect(tpm11_forked, 0)) return tpm11_child_C_OpenSession(slotID, flags, pApplication, Notify, phSession);
  return tpm11go_openSessionSyncOnly(slotID, flags, pApplication, Notify, phSession);
}
