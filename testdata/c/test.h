/* Constants and check macros shared by the C tests. */
#ifndef TPM11_TEST_H
#define TPM11_TEST_H
#include <stdio.h>
#include "ck.h"

#define CKA_EC_PARAMS 0x180UL
#define CKA_EC_POINT 0x181UL
#define CKA_ID 0x102UL
#define CKA_TOKEN 0x1UL
#define CKA_VALUE 0x11UL
#define CKF_ASYNC_SESSION 8UL
#define CKF_ASYNC_SESSION_SUPPORTED 0x04000000UL
#define CKF_GENERATE_KEY_PAIR 0x10000UL
#define CKF_LIBRARY_CANT_CREATE_OS_THREADS 1UL
#define CKF_OS_LOCKING_OK 2UL
#define CKF_RW_SESSION 2UL
#define CKF_SERIAL_SESSION 4UL
#define CKF_SIGN 0x800UL
#define CKF_TOKEN_INITIALIZED 0x400UL
#define CKM_ECDSA_SHA256 0x1044UL
#define CKM_EC_KEY_PAIR_GEN 0x1040UL
#define CKR_ATTRIBUTE_SENSITIVE 0x011UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKR_MECHANISM_INVALID 0x070UL
#define CKR_NEED_TO_CREATE_THREADS 0x009UL
#define CKR_OBJECT_HANDLE_INVALID 0x082UL
#define CKR_OPERATION_ACTIVE 0x090UL
#define CKR_OPERATION_NOT_INITIALIZED 0x091UL
#define CKR_PENDING 0x204UL
#define CKR_PIN_INCORRECT 0x0A0UL
#define CKR_SESSION_HANDLE_INVALID 0x0B3UL
#define CKR_SESSION_PARALLEL_NOT_SUPPORTED 0x0B4UL
#define CKR_SIGNATURE_INVALID 0x0C0UL
#define CKR_SLOT_ID_INVALID 0x003UL
#define CKR_USER_NOT_LOGGED_IN 0x101UL
#define CKU_SO 0UL
#define CKU_USER 1UL
#define CK_UNAVAILABLE_INFORMATION (~0UL)

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define RV(call, want) do { CK_RV _r = (call); CHECK(_r == (want), "%s = 0x%lx, want 0x%lx", #call, _r, (CK_ULONG)(want)); } while (0)
#endif
