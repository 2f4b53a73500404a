/* Processes sharing one TPM: testdata/faults-test.sh and make bench.
 *   fair_test MODULE init            : a token (user PIN user-pin) with an EC key, CKA_ID "fair".
 *   fair_test MODULE sign SECONDS    : from dlopen: log in, then sign with the key
 *       for SECONDS; prints "signs N login_ms L stall_ms S" (S: the longest
 *       wait for one signature, C_SignInit + C_Sign).
 *   fair_test MODULE sign SECONDS TIMES : the same, and writes to the file
 *       TIMES when each signature ended (CLOCK_MONOTONIC seconds, one a
 *       line, written at the end): make bench merges the processes' times to
 *       see the turns between them (how often the TPM changes hands and
 *       how long it stands idle then).
 * Several "sign" processes run at once on the same swtpm. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "test.h"

static CK_FUNCTION_LIST_3_2 *f;
static CK_BYTE ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  double t0 = now();
  void *so = dlopen(argv[1], RTLD_NOW);
  if (!so) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  RV(get_iface(NULL, NULL, &ip, 0), CKR_OK);
  f = ip->pFunctionList;
  RV(f->C_Initialize(NULL), CKR_OK);
  CK_BYTE id[] = "fair";
  CK_BBOOL yes = 1;
  CK_SESSION_HANDLE h;
  if (strcmp(argv[2], "init") == 0) {
    CK_BYTE label[32];
    memset(label, ' ', 32);
    RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
    RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
    RV(f->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR) "so-secret", 9), CKR_OK);
    RV(f->C_InitPIN(h, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
    RV(f->C_Logout(h), CKR_OK);
    RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1}, {CKA_EC_PARAMS, ec_params, sizeof ec_params}, {CKA_ID, id, 4}};
    CK_ATTRIBUTE prv[] = {{CKA_TOKEN, &yes, 1}, {CKA_ID, id, 4}};
    CK_OBJECT_HANDLE hpub, hpriv;
    RV(f->C_GenerateKeyPair(h, &gen, pub, 3, prv, 2, &hpub, &hpriv), CKR_OK);
  } else if (strcmp(argv[2], "sign") == 0 && (argc == 4 || argc == 5)) {
    double secs = atof(argv[3]);
    /* Times kept in memory (grown as needed) and written after the loop,
     * so the file costs the loop nothing. */
    size_t cap = argc == 5 ? 4096 : 0, nt = 0;
    double *times = cap ? malloc(cap * sizeof *times) : NULL;
    RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
    RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
    CK_ULONG cls = 3; /* CKO_PRIVATE_KEY */
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, id, 4}};
    CK_OBJECT_HANDLE key;
    CK_ULONG n = 0;
    RV(f->C_FindObjectsInit(h, t, 2), CKR_OK);
    RV(f->C_FindObjects(h, &key, 1, &n), CKR_OK);
    RV(f->C_FindObjectsFinal(h), CKR_OK);
    CHECK(n == 1, "key not found");
    double logged = now();
    if (failures) return 1;
    long signs = 0;
    double stall = 0, end = logged + secs, last = logged;
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    while (last < end) {
      CK_BYTE sig[64];
      CK_ULONG sl = sizeof sig;
      CK_RV r = f->C_SignInit(h, &m, key);
      if (r == CKR_OK) r = f->C_Sign(h, (CK_BYTE_PTR) "fair", 4, sig, &sl);
      if (r != CKR_OK) { fprintf(stderr, "FAIL sign 0x%lx\n", r); return 1; }
      double t1 = now();
      if (t1 - last > stall) stall = t1 - last;
      last = t1;
      signs++;
      if (times) {
        if (nt == cap && !(times = realloc(times, (cap *= 2) * sizeof *times))) return 3;
        times[nt++] = t1;
      }
    }
    if (times) {
      FILE *tf = fopen(argv[4], "w");
      if (!tf) { perror(argv[4]); return 3; }
      for (size_t i = 0; i < nt; i++) fprintf(tf, "%.6f\n", times[i]);
      if (fclose(tf) != 0) { perror(argv[4]); return 3; }
      free(times);
    }
    printf("signs %ld login_ms %.0f stall_ms %.0f\n", signs, (logged - t0) * 1000, stall * 1000);
  } else {
    return 2;
  }
  RV(f->C_Finalize(NULL), CKR_OK);
  return failures ? 1 : 0;
}
