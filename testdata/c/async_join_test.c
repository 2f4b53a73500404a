/* The two-process C_AsyncGetID / C_AsyncJoin test.
 *   async_join_test MODULE start IDFILE : process A starts C_GenerateKeyPair on
 *       an async session, takes the ID, writes it to IDFILE, C_Finalize, exits.
 *   async_join_test MODULE join IDFILE  : process B joins the ID, completes it,
 *       and signs with the new key.
 * Run with a slow TPM (testdata/slowtpm, set by the runner) so the keygen pends. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "test.h"

static CK_FUNCTION_LIST_3_2 *f;
static CK_BYTE ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static CK_SESSION_HANDLE login(CK_FLAGS extra) {
  CK_SESSION_HANDLE h;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION | extra, NULL, NULL, &h), CKR_OK);
  CK_RV r = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8);
  CHECK(r == CKR_OK || r == CKR_USER_ALREADY_LOGGED_IN, "login 0x%lx", r);
  return h;
}

int main(int argc, char **argv) {
  if (argc != 4) return 2;
  void *so = dlopen(argv[1], RTLD_NOW);
  if (!so) return 2;
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  RV(get_iface(NULL, NULL, &ip, 0), CKR_OK);
  f = ip->pFunctionList;
  RV(f->C_Initialize(NULL), CKR_OK);
  if (strcmp(argv[2], "start") == 0) {
    CK_BYTE label[32];
    memset(label, ' ', 32);
    RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
    CK_SESSION_HANDLE so_h;
    RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &so_h), CKR_OK);
    RV(f->C_Login(so_h, CKU_SO, (CK_UTF8CHAR_PTR) "so-secret", 9), CKR_OK);
    RV(f->C_InitPIN(so_h, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
    RV(f->C_CloseSession(so_h), CKR_OK);
    CK_SESSION_HANDLE h = login(CKF_ASYNC_SESSION);
    CK_ULONG id = 0;
    /* Random is secret: its pending operation cannot be saved. */
    CK_BYTE rnd[16];
    RV(f->C_GenerateRandom(h, rnd, sizeof rnd), CKR_PENDING);
    RV(f->C_AsyncGetID(h, (CK_UTF8CHAR_PTR) "C_GenerateRandom", &id), CKR_STATE_UNSAVEABLE);
    RV(f->C_AsyncGetID(h, (CK_UTF8CHAR_PTR) "C_Sign", &id), CKR_OPERATION_NOT_INITIALIZED);
    RV(f->C_SessionCancel(h, ~0UL), CKR_OK);
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_BBOOL yes = 1;
    CK_BYTE kid[] = {0x77};
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1}, {CKA_EC_PARAMS, ec_params, sizeof ec_params}, {CKA_ID, kid, 1}};
    CK_ATTRIBUTE prv[] = {{CKA_TOKEN, &yes, 1}, {CKA_ID, kid, 1}};
    CK_OBJECT_HANDLE hpub, hpriv;
    RV(f->C_GenerateKeyPair(h, &gen, pub, 3, prv, 2, &hpub, &hpriv), CKR_PENDING);
    RV(f->C_AsyncGetID(h, (CK_UTF8CHAR_PTR) "C_GenerateKeyPair", NULL), CKR_ARGUMENTS_BAD);
    RV(f->C_AsyncGetID(h, (CK_UTF8CHAR_PTR) "C_GenerateKeyPair", &id), CKR_OK);
    CHECK(id != 0, "zero ID");
    /* Detached: the session no longer has it. */
    CK_ASYNC_DATA res = {0, NULL, 0, 0, 0};
    RV(f->C_AsyncComplete(h, (CK_UTF8CHAR_PTR) "C_GenerateKeyPair", &res), CKR_OPERATION_NOT_INITIALIZED);
    FILE *out = fopen(argv[3], "w");
    fprintf(out, "%lu\n", id);
    fclose(out);
    RV(f->C_Finalize(NULL), CKR_OK);
  } else {
    CK_ULONG id = 0;
    FILE *in = fopen(argv[3], "r");
    CHECK(in && fscanf(in, "%lu", &id) == 1, "read ID");
    if (in) fclose(in);
    CK_SESSION_HANDLE h;
    RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &h), CKR_OK);
    RV(f->C_AsyncJoin(h, (CK_UTF8CHAR_PTR) "C_GenerateKeyPair", id, NULL, 0), CKR_SAVED_STATE_INVALID); /* not logged in */
    h = login(CKF_ASYNC_SESSION);
    RV(f->C_AsyncJoin(h, (CK_UTF8CHAR_PTR) "C_GenerateKeyPair", id ^ 1, NULL, 0), CKR_SAVED_STATE_INVALID);
    RV(f->C_AsyncJoin(h, (CK_UTF8CHAR_PTR) "C_Sign", id, NULL, 0), CKR_SAVED_STATE_INVALID);
    RV(f->C_AsyncJoin(h, (CK_UTF8CHAR_PTR) "C_GenerateKeyPair", id, NULL, 0), CKR_OK);
    CK_ASYNC_DATA res = {0, NULL, 0, 0, 0};
    RV(f->C_AsyncComplete(h, (CK_UTF8CHAR_PTR) "C_GenerateKeyPair", &res), CKR_OK);
    CHECK(res.hObject && res.hAdditionalObject, "joined keygen gave no handles");
    RV(f->C_AsyncJoin(h, (CK_UTF8CHAR_PTR) "C_GenerateKeyPair", id, NULL, 0), CKR_SAVED_STATE_INVALID); /* consumed */
    CK_SESSION_HANDLE s = login(0);
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    CK_BYTE sig[64];
    CK_ULONG n = sizeof sig;
    RV(f->C_SignInit(s, &m, res.hAdditionalObject), CKR_OK);
    RV(f->C_Sign(s, (CK_BYTE_PTR) "joined", 6, sig, &n), CKR_OK);
    RV(f->C_VerifyInit(s, &m, res.hObject), CKR_OK);
    RV(f->C_Verify(s, (CK_BYTE_PTR) "joined", 6, sig, n), CKR_OK);
    RV(f->C_Finalize(NULL), CKR_OK);
  }
  if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
  printf("async_join_test %s: all checks passed\n", argv[2]);
  return 0;
}
