/* Keys that need no PIN, and what C_Logout does to private ones, through
 * libtpm11.so: a key pair made without login (CKA_PRIVATE false) is found
 * and signs without login after C_Finalize/C_Initialize; a private key's
 * operation begun while logged in returns CKR_USER_NOT_LOGGED_IN after
 * C_Logout (never CKR_PIN_INCORRECT), and a search begun while logged in
 * stops returning private objects. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "setup.h"

static const CK_ULONG K_CKA_PRIVATE = 0x2UL, K_CKO_PRIVATE_KEY = 3UL, K_CKM_ECDSA_SHA256 = 0x1044UL;
static CK_FUNCTION_LIST_3_2 *f;
static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE h, const char *id) {
  CK_ULONG cls = K_CKO_PRIVATE_KEY;
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, (void *)id, strlen(id)}};
  CK_OBJECT_HANDLE o = 0;
  CK_ULONG n = 0;
  RV(f->C_FindObjectsInit(h, t, 2), CKR_OK);
  RV(f->C_FindObjects(h, &o, 1, &n), CKR_OK);
  RV(f->C_FindObjectsFinal(h), CKR_OK);
  return n == 1 ? o : 0;
}

static CK_RV sign(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k) {
  CK_MECHANISM m = {K_CKM_ECDSA_SHA256, NULL, 0};
  CK_BYTE sig[64];
  CK_ULONG n = sizeof sig;
  CK_RV r = f->C_SignInit(h, &m, k);
  return r != CKR_OK ? r : f->C_Sign(h, (CK_BYTE_PTR) "x", 1, sig, &n);
}

int main(int argc, char **argv) {
  f = load_module(argc, argv);
  CK_SESSION_HANDLE h = make_token(f);

  /* No login: a host key. */
  CK_BBOOL yes = 1, no = 0;
  CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
  CK_ATTRIBUTE pubt[] = {{CKA_TOKEN, &yes, 1}, {CKA_EC_PARAMS, p256, sizeof p256}, {CKA_ID, "host", 4}};
  CK_ATTRIBUTE privt[] = {{CKA_TOKEN, &yes, 1}, {K_CKA_PRIVATE, &no, 1}, {CKA_ID, "host", 4}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 3, privt, 3, &pub, &priv), CKR_OK);
  RV(sign(h, priv), CKR_OK);
  /* A private key needs the user. */
  CK_ATTRIBUTE privy[] = {{CKA_TOKEN, &yes, 1}, {CKA_ID, "user", 4}};
  CK_ATTRIBUTE pubu[] = {{CKA_TOKEN, &yes, 1}, {CKA_EC_PARAMS, p256, sizeof p256}, {CKA_ID, "user", 4}};
  CK_OBJECT_HANDLE upub, upriv;
  RV(f->C_GenerateKeyPair(h, &gen, pubu, 3, privy, 2, &upub, &upriv), CKR_USER_NOT_LOGGED_IN);

  /* After C_Finalize/C_Initialize: found by ID and used without a PIN, same handle. */
  RV(f->C_Finalize(NULL), CKR_OK);
  RV(f->C_Initialize(NULL), CKR_OK);
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  CHECK(find_one(h, "host") == priv, "the no-PIN key is found, with the same handle");
  RV(sign(h, priv), CKR_OK);

  /* Logged in: a private key; C_Logout ends its use. */
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  RV(f->C_GenerateKeyPair(h, &gen, pubu, 3, privy, 2, &upub, &upriv), CKR_OK);
  CK_SESSION_HANDLE ro;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
  CK_MECHANISM m = {K_CKM_ECDSA_SHA256, NULL, 0};
  RV(f->C_SignInit(h, &m, upriv), CKR_OK);
  CK_ULONG cls = K_CKO_PRIVATE_KEY;
  CK_ATTRIBUTE all[] = {{CKA_CLASS, &cls, sizeof cls}};
  RV(f->C_FindObjectsInit(ro, all, 1), CKR_OK);
  RV(f->C_Logout(h), CKR_OK);
  CK_BYTE sig[64];
  CK_ULONG n = sizeof sig;
  RV(f->C_Sign(h, (CK_BYTE_PTR) "x", 1, sig, &n), CKR_USER_NOT_LOGGED_IN);
  CK_OBJECT_HANDLE got[4];
  CK_ULONG count = 0;
  RV(f->C_FindObjects(ro, got, 4, &count), CKR_OK);
  CHECK(count == 1 && got[0] == priv, "after logout the search returns only the no-PIN key (%lu)", count);
  RV(f->C_FindObjectsFinal(ro), CKR_OK);
  RV(sign(h, upriv), 0x060UL); /* CKR_KEY_HANDLE_INVALID: the private key is no longer visible */
  RV(sign(h, priv), CKR_OK);

  RV(f->C_Finalize(NULL), CKR_OK);
  if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
  printf("nopin_test: all checks passed\n");
  return 0;
}
