// Function lists, interfaces and typed stubs: static C memory, as the ABI
// requires (never Go pointers in C memory).
#include <string.h>
#include "ck.h"
#include "_cgo_export.h"

#define DEFINE_GO(name, params)
#define DEFINE_C(name, params) CK_RV name params;
#define DEFINE_STUB(name, params) CK_RV name params { return CKR_FUNCTION_NOT_SUPPORTED; }
#define DEFINE(kind, name, params) DEFINE_##kind(name, params)
CK_FUNCTIONS_2_40(DEFINE)
CK_FUNCTIONS_3_0(DEFINE)
CK_FUNCTIONS_3_2(DEFINE)

#define ENTRY(kind, name, params) name,
static CK_FUNCTION_LIST list_2_40 = {{2, 40}, CK_FUNCTIONS_2_40(ENTRY)};
static CK_FUNCTION_LIST_3_0 list_3_0 = {{3, 0}, CK_FUNCTIONS_2_40(ENTRY) CK_FUNCTIONS_3_0(ENTRY)};
static CK_FUNCTION_LIST_3_2 list_3_2 = {{3, 2}, CK_FUNCTIONS_2_40(ENTRY) CK_FUNCTIONS_3_0(ENTRY) CK_FUNCTIONS_3_2(ENTRY)};

static CK_UTF8CHAR interface_name[] = "PKCS 11";
// Newest first: a caller asking for "any" interface gets 3.2. Never
// CKF_INTERFACE_FORK_SAFE: a Go runtime does not survive fork.
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
