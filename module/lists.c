// Function lists, interfaces and typed stubs: static C memory, as the ABI
// requires (never Go pointers in C memory). The lists point at the C entry
// points (entry.c), which are safe to call in a forked child.
#include <string.h>
#include "ck.h"
#include "fork.h"

#define DEFINE_GO(name, params) CK_RV name params;
#define DEFINE_GOV(name, params) CK_RV name params;
#define DEFINE_C(name, params) CK_RV name params;
#define DEFINE_STUB(name, params) CK_RV name params { return CKR_FUNCTION_NOT_SUPPORTED; }
#define DEFINE(kind, name, params) DEFINE_##kind(name, params)
CK_FUNCTIONS_2_40(DEFINE)
CK_FUNCTIONS_3_0(DEFINE)
CK_FUNCTIONS_3_2(DEFINE)

/* A caller that reached the module through the 2.40 list (C_GetFunctionList
 * or the 2.40 interface) or the 3.0 list sees no flag bit its version does
 * not define, and cannot open the asynchronous session it could not use
 * (those lists have no C_AsyncComplete). The bits each version defines, as
 * the 3.2 text's flag tables give them, less those it ties to what the
 * older lists lack:
 * - CK_TOKEN_INFO.flags, 2.40 and 3.0: CKF_RNG, WRITE_PROTECTED,
 *   LOGIN_REQUIRED, USER_PIN_INITIALIZED, RESTORE_KEY_NOT_NEEDED,
 *   CLOCK_ON_TOKEN, PROTECTED_AUTHENTICATION_PATH, DUAL_CRYPTO_OPERATIONS,
 *   TOKEN_INITIALIZED, SECONDARY_AUTHENTICATION, USER_/SO_PIN_COUNT_LOW,
 *   _FINAL_TRY, _LOCKED, _TO_BE_CHANGED, ERROR_STATE. Masked: 3.2's
 *   CKF_SEED_RANDOM_REQUIRED (0x02000000) and CKF_ASYNC_SESSION_SUPPORTED
 *   (0x04000000, async sessions: section 5.21, 3.2 list functions).
 * - CK_SESSION_INFO.flags, 2.40 and 3.0: CKF_RW_SESSION, CKF_SERIAL_SESSION.
 *   Masked: CKF_ASYNC_SESSION (0x8, 3.2), set on a session another caller
 *   opened through the 3.2 list.
 * - CK_MECHANISM_INFO.flags, 2.40: CKF_HW, ENCRYPT, DECRYPT, DIGEST, SIGN,
 *   SIGN_RECOVER, VERIFY, VERIFY_RECOVER, GENERATE, GENERATE_KEY_PAIR, WRAP,
 *   UNWRAP, DERIVE, EC_F_P, EC_F_2M, EC_ECPARAMETERS, EC_OID (2.40's
 *   EC_NAMEDCURVE), EC_UNCOMPRESS, EC_COMPRESS, EXTENSION. Masked: 3.0's
 *   CKF_MESSAGE_ENCRYPT/DECRYPT/SIGN/VERIFY, MULTI_MESSAGE (0x2..0x20, for
 *   the C_Message* functions of the 3.0 list), FIND_OBJECTS (0x40, for
 *   C_SessionCancel, 3.0) and EC_CURVENAME (0x04000000, 3.0); 3.2's
 *   CKF_ENCAPSULATE and DECAPSULATE (0x10000000, 0x20000000, for
 *   C_EncapsulateKey/C_DecapsulateKey of the 3.2 list). 3.0 callers see
 *   all but the 3.2 ones.
 * - C_OpenSession with CKF_ASYNC_SESSION: CKR_SESSION_ASYNC_NOT_SUPPORTED,
 *   the spec's code for a token without asynchronous sessions, which is
 *   what these callers are shown (openSessionSyncOnly, after the usual
 *   checks). */
#define TOKEN_FLAGS_2_40 0x01FF0F6FUL
#define TOKEN_FLAGS_3_0 TOKEN_FLAGS_2_40
#define SESSION_FLAGS_2_40 0x00000006UL
#define SESSION_FLAGS_3_0 SESSION_FLAGS_2_40
#define MECHANISM_FLAGS_2_40 0x83FFFF01UL
#define MECHANISM_FLAGS_3_0 (MECHANISM_FLAGS_2_40 | 0x0400007EUL)

static CK_RV token_info(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo, CK_FLAGS known) {
  CK_RV rv = C_GetTokenInfo(slotID, pInfo);
  if (rv == CKR_OK) pInfo->flags &= known;
  return rv;
}

static CK_RV session_info(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo, CK_FLAGS known) {
  CK_RV rv = C_GetSessionInfo(hSession, pInfo);
  if (rv == CKR_OK) pInfo->flags &= known;
  return rv;
}

static CK_RV mechanism_info(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo, CK_FLAGS known) {
  CK_RV rv = C_GetMechanismInfo(slotID, type, pInfo);
  if (rv == CKR_OK) pInfo->flags &= known;
  return rv;
}

static CK_RV C_GetTokenInfo_2_40(CK_SLOT_ID s, CK_TOKEN_INFO_PTR p) { return token_info(s, p, TOKEN_FLAGS_2_40); }
static CK_RV C_GetTokenInfo_3_0(CK_SLOT_ID s, CK_TOKEN_INFO_PTR p) { return token_info(s, p, TOKEN_FLAGS_3_0); }
static CK_RV C_GetSessionInfo_2_40(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR p) { return session_info(h, p, SESSION_FLAGS_2_40); }
static CK_RV C_GetSessionInfo_3_0(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR p) { return session_info(h, p, SESSION_FLAGS_3_0); }
static CK_RV C_GetMechanismInfo_2_40(CK_SLOT_ID s, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR p) { return mechanism_info(s, t, p, MECHANISM_FLAGS_2_40); }
static CK_RV C_GetMechanismInfo_3_0(CK_SLOT_ID s, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR p) { return mechanism_info(s, t, p, MECHANISM_FLAGS_3_0); }
#define C_OpenSession_2_40 openSessionSyncOnly
#define C_OpenSession_3_0 openSessionSyncOnly

#define ENTRY(kind, name, params) name,
#define ENTRY_OLD(kind, name, v) ENTRY_OLD_##kind(name, v)
#define ENTRY_OLD_GO(name, v) name,
#define ENTRY_OLD_C(name, v) name,
#define ENTRY_OLD_STUB(name, v) name,
#define ENTRY_OLD_GOV(name, v) name##_##v,
#define ENTRY_2_40(kind, name, params) ENTRY_OLD(kind, name, 2_40)
#define ENTRY_3_0(kind, name, params) ENTRY_OLD(kind, name, 3_0)
static CK_FUNCTION_LIST list_2_40 = {{2, 40}, CK_FUNCTIONS_2_40(ENTRY_2_40)};
static CK_FUNCTION_LIST_3_0 list_3_0 = {{3, 0}, CK_FUNCTIONS_2_40(ENTRY_3_0) CK_FUNCTIONS_3_0(ENTRY_3_0)};
static CK_FUNCTION_LIST_3_2 list_3_2 = {{3, 2}, CK_FUNCTIONS_2_40(ENTRY) CK_FUNCTIONS_3_0(ENTRY) CK_FUNCTIONS_3_2(ENTRY)};

static CK_UTF8CHAR interface_name[] = "PKCS 11";
// Newest first: a caller asking for "any" interface gets 3.2. Never
// CKF_INTERFACE_FORK_SAFE: that flag promises a forked child the parent's
// sessions, login and operation states. A child forked here gets a working
// module (fork.c), but like any PKCS#11 2.x child it calls C_Initialize and
// starts with no sessions; only object handles carry over.
static CK_INTERFACE interfaces[] = {
  {interface_name, &list_3_2, 0},
  {interface_name, &list_3_0, 0},
  {interface_name, &list_2_40, 0},
};
#define N_INTERFACES (sizeof(interfaces) / sizeof(interfaces[0]))

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList) {
  if (ppFunctionList == NULL) return CKR_ARGUMENTS_BAD;
  *ppFunctionList = &list_2_40;
  return CKR_OK;
}

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount) {
  if (pulCount == NULL) return CKR_ARGUMENTS_BAD;
  if (pInterfacesList == NULL) {
    *pulCount = N_INTERFACES;
    return CKR_OK;
  }
  if (*pulCount < N_INTERFACES) {
    *pulCount = N_INTERFACES;
    return CKR_BUFFER_TOO_SMALL;
  }
  memcpy(pInterfacesList, interfaces, sizeof(interfaces));
  *pulCount = N_INTERFACES;
  return CKR_OK;
}

CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                     CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags) {
  if (ppInterface == NULL) return CKR_ARGUMENTS_BAD;
  for (unsigned i = 0; i < N_INTERFACES; i++) {
    CK_VERSION *v = (CK_VERSION *)interfaces[i].pFunctionList;
    if (pInterfaceName != NULL && strcmp((const char *)pInterfaceName, (const char *)interface_name) != 0) continue;
    if (pVersion != NULL && (v->major != pVersion->major || v->minor != pVersion->minor)) continue;
    if ((flags & interfaces[i].flags) != flags) continue;
    *ppInterface = &interfaces[i];
    return CKR_OK;
  }
  // No interface has that name, version or flags: the spec lists no
  // "not found" code for C_GetInterface, so the request itself is bad.
  return CKR_ARGUMENTS_BAD;
}
