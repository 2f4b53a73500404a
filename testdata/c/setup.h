/* Setup shared by the C tests: load the module's 3.2 interface, initialize
 * it, and make a token with SO PIN "so-secret" and user PIN "user-pin",
 * returning a R/W session with the user logged out. */
#ifndef TPM11_SETUP_H
#define TPM11_SETUP_H
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"

/* read_in and write_in are a whole file NAME in directory DIR, for the tests
 * that hand data to an outside checker (openssl, circl, noble); any failure
 * ends the test. */
static inline size_t read_in(const char *dir, const char *name, CK_BYTE *buf, size_t cap) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *fp = fopen(path, "rb");
  if (!fp) { perror(path); exit(1); }
  size_t n = fread(buf, 1, cap, fp);
  fclose(fp);
  return n;
}

static inline void write_in(const char *dir, const char *name, const CK_BYTE *buf, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *fp = fopen(path, "wb");
  if (!fp || fwrite(buf, 1, n, fp) != n) { perror(path); exit(1); }
  fclose(fp);
}

static CK_FUNCTION_LIST_3_2 *load_module(int argc, char **argv) {
  void *so = dlopen(argc > 1 ? argv[1] : "build/libtpm11.so", RTLD_NOW);
  if (!so) { fprintf(stderr, "dlopen: %s\n", dlerror()); exit(2); }
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  CK_VERSION v32 = {3, 2};
  RV(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v32, &ip, 0), CKR_OK);
  CK_FUNCTION_LIST_3_2 *fl = ip->pFunctionList;
  RV(fl->C_Initialize(NULL), CKR_OK);
  return fl;
}

static CK_SESSION_HANDLE make_token(CK_FUNCTION_LIST_3_2 *fl) {
  CK_BYTE label[32];
  memset(label, ' ', 32);
  RV(fl->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
  CK_SESSION_HANDLE h;
  RV(fl->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  RV(fl->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR) "so-secret", 9), CKR_OK);
  RV(fl->C_InitPIN(h, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  RV(fl->C_Logout(h), CKR_OK);
  return h;
}
#endif
