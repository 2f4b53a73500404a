/* Template attributes (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE,
 * CKA_DERIVE_TEMPLATE, CKA_ENCAPSULATE_TEMPLATE, CKA_DECAPSULATE_TEMPLATE)
 * in a forked child, which has no Go and reaches the module through
 * p11-kit's RPC (fork.c, docs/fork.md). p11-kit 0.24 does not carry them:
 * an array of the first three fails inside its RPC as CKR_DEVICE_ERROR and
 * leaves the child's connection to the helper dead for every later call;
 * the last two, which the 3.2 header defines without CKF_ARRAY_ATTRIBUTE,
 * it would carry as bytes, sending the child's pointers. So none ever goes
 * to the helper: a template (C_CreateObject, C_GenerateKey(Pair),
 * C_UnwrapKey, C_DeriveKey, C_CopyObject, C_SetAttributeValue) holding one
 * is CKR_TEMPLATE_INCONSISTENT, which key_objects.md gives a token unable to
 * process one; C_FindObjectsInit matching on one is
 * CKR_ATTRIBUTE_VALUE_INVALID; C_GetAttributeValue answers the others
 * through the helper and these as an attribute the object lacks
 * (CK_UNAVAILABLE_INFORMATION, CKR_ATTRIBUTE_TYPE_INVALID). The keys'
 * templates still hold in the helper: C_WrapKey, C_UnwrapKey and
 * C_DeriveKey there apply them. */
#include <stdlib.h>
#include <string.h>
#include "fork.h"

#define CKR_ATTRIBUTE_TYPE_INVALID_ 0x012UL
#define CKR_ATTRIBUTE_VALUE_INVALID_ 0x013UL
#define CKR_TEMPLATE_INCONSISTENT_ 0x0D1UL
#define CKR_BUFFER_TOO_SMALL_ 0x150UL
#define CKR_ATTRIBUTE_SENSITIVE_ 0x011UL
#define CKA_CLASS_ 0x000UL

static int is_template(CK_ATTRIBUTE_TYPE t) {
  return t == 0x40000211UL || t == 0x40000212UL || t == 0x40000213UL || t == 0x62aUL || t == 0x62bUL;
}

/* has_template: does the caller's template hold a template attribute? A
 * NULL template holds none (the helper answers CKR_ARGUMENTS_BAD). */
static int has_template(const CK_ATTRIBUTE *t, CK_ULONG n) {
  if (t == NULL) return 0;
  for (CK_ULONG i = 0; i < n; i++)
    if (is_template(t[i].type)) return 1;
  return 0;
}

#define HELPER_CALL(rv, call)                                            \
  do {                                                                   \
    CK_FUNCTION_LIST_3_0 *r_ = tpm11_child_list();                       \
    if (r_ == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;           \
    struct tpm11_nopipe g_;                                              \
    tpm11_nopipe_enter(&g_);                                             \
    rv = r_->call;                                                       \
    tpm11_nopipe_leave(&g_);                                             \
  } while (0)

CK_RV tpm11_child_C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
                                 CK_OBJECT_HANDLE_PTR phObject) {
  if (has_template(pTemplate, ulCount)) return CKR_TEMPLATE_INCONSISTENT_;
  CK_RV rv;
  HELPER_CALL(rv, C_CreateObject(hSession, pTemplate, ulCount, phObject));
  return rv;
}

CK_RV tpm11_child_C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                               CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject) {
  if (has_template(pTemplate, ulCount)) return CKR_TEMPLATE_INCONSISTENT_;
  CK_RV rv;
  HELPER_CALL(rv, C_CopyObject(hSession, hObject, pTemplate, ulCount, phNewObject));
  return rv;
}

CK_RV tpm11_child_C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                                      CK_ULONG ulCount) {
  if (has_template(pTemplate, ulCount)) return CKR_TEMPLATE_INCONSISTENT_;
  CK_RV rv;
  HELPER_CALL(rv, C_SetAttributeValue(hSession, hObject, pTemplate, ulCount));
  return rv;
}

CK_RV tpm11_child_C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) {
  if (has_template(pTemplate, ulCount)) return CKR_ATTRIBUTE_VALUE_INVALID_;
  CK_RV rv;
  HELPER_CALL(rv, C_FindObjectsInit(hSession, pTemplate, ulCount));
  return rv;
}

CK_RV tpm11_child_C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate,
                                CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey) {
  if (has_template(pTemplate, ulCount)) return CKR_TEMPLATE_INCONSISTENT_;
  CK_RV rv;
  HELPER_CALL(rv, C_GenerateKey(hSession, pMechanism, pTemplate, ulCount, phKey));
  return rv;
}

CK_RV tpm11_child_C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                    CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
                                    CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
                                    CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey) {
  if (has_template(pPublicKeyTemplate, ulPublicKeyAttributeCount) ||
      has_template(pPrivateKeyTemplate, ulPrivateKeyAttributeCount))
    return CKR_TEMPLATE_INCONSISTENT_;
  CK_RV rv;
  HELPER_CALL(rv, C_GenerateKeyPair(hSession, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount,
                                    pPrivateKeyTemplate, ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey));
  return rv;
}

CK_RV tpm11_child_C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hUnwrappingKey,
                              CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate,
                              CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey) {
  if (has_template(pTemplate, ulAttributeCount)) return CKR_TEMPLATE_INCONSISTENT_;
  CK_RV rv;
  HELPER_CALL(rv, C_UnwrapKey(hSession, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen, pTemplate,
                              ulAttributeCount, phKey));
  return rv;
}

CK_RV tpm11_child_C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey,
                              CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey) {
  if (has_template(pTemplate, ulAttributeCount)) return CKR_TEMPLATE_INCONSISTENT_;
  CK_RV rv;
  HELPER_CALL(rv, C_DeriveKey(hSession, pMechanism, hBaseKey, pTemplate, ulAttributeCount, phKey));
  return rv;
}

/* C_GetAttributeValue: the other attributes through the helper, in a copy
 * of the caller's template without the template attributes (their values
 * and lengths copied back), these CK_UNAVAILABLE_INFORMATION. */
CK_RV tpm11_child_C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                                      CK_ULONG ulCount) {
  CK_RV rv;
  if (!has_template(pTemplate, ulCount)) {
    HELPER_CALL(rv, C_GetAttributeValue(hSession, hObject, pTemplate, ulCount));
    return rv;
  }
  /* One slot more: with only template attributes asked for, the helper is
   * still asked (for CKA_CLASS's length), so a bad session or object handle
   * gets its own code. */
  CK_ATTRIBUTE *rest = malloc((ulCount + 1) * sizeof *rest);
  if (rest == NULL) return TPM11_CKR_HOST_MEMORY;
  CK_ULONG n = 0;
  for (CK_ULONG i = 0; i < ulCount; i++)
    if (!is_template(pTemplate[i].type)) rest[n++] = pTemplate[i];
  CK_ULONG probe = n == 0;
  if (probe) rest[0] = (CK_ATTRIBUTE){CKA_CLASS_, NULL, 0};
  rv = CKR_OK;
  {
    CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
    if (r == NULL) {
      free(rest);
      return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    struct tpm11_nopipe g;
    tpm11_nopipe_enter(&g);
    rv = r->C_GetAttributeValue(hSession, hObject, rest, n + probe);
    tpm11_nopipe_leave(&g);
  }
  /* Only the three answers that processed every attribute are copied back;
   * any other is the call's whole answer. */
  int processed = rv == CKR_OK || rv == CKR_ATTRIBUTE_TYPE_INVALID_ || rv == CKR_ATTRIBUTE_SENSITIVE_ || rv == CKR_BUFFER_TOO_SMALL_;
  if (processed) {
    for (CK_ULONG i = 0, j = 0; i < ulCount; i++) {
      if (is_template(pTemplate[i].type)) pTemplate[i].ulValueLen = (CK_ULONG)-1;
      else pTemplate[i].ulValueLen = rest[j++].ulValueLen;
    }
    if (rv == CKR_OK) rv = CKR_ATTRIBUTE_TYPE_INVALID_;
  }
  free(rest);
  return rv;
}
