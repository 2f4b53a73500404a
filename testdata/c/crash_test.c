/* Processes killed (SIGKILL) at random points: testdata/faults-test.sh.
 *   crash_test MODULE init           : a token, SO PIN so-secret, user PIN user-pin.
 *   crash_test MODULE work           : logs in, then for ever: generates an EC
 *       key pair (token objects, a fresh CKA_ID), signs with it, and destroys
 *       every other one; prints "created ID" once C_GenerateKeyPair returned,
 *       "deleting ID" before the two C_DestroyObject and "deleted ID" once
 *       both returned.
 *   crash_test MODULE check LOG      : after the kills: logs in (a TPM full of
 *       the dead ones' sessions would refuse), every private key has its
 *       public half and the other way round (but for one being deleted),
 *       every key LOG says was created and not deleted is there, every
 *       deleted one is gone, and a key signs.
 * Exit status 0 on success; 1 with FAIL lines on stderr. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "test.h"

#define CKO_PUBLIC_KEY 2UL
#define CKO_PRIVATE_KEY 3UL
#define MAXKEYS 4096

static CK_FUNCTION_LIST_3_2 *f;
static CK_BYTE ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static CK_SESSION_HANDLE login(void) {
  CK_SESSION_HANDLE h;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  return h;
}

static void hex(const CK_BYTE *b, CK_ULONG n, char *out) {
  for (CK_ULONG i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
  out[2 * n] = 0;
}

/* find lists the objects of class cls: handles and CKA_IDs as hex. */
static int find(CK_SESSION_HANDLE h, CK_ULONG cls, CK_OBJECT_HANDLE *objs, char ids[][40]) {
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}};
  RV(f->C_FindObjectsInit(h, t, 1), CKR_OK);
  CK_ULONG n = 0;
  RV(f->C_FindObjects(h, objs, MAXKEYS, &n), CKR_OK);
  RV(f->C_FindObjectsFinal(h), CKR_OK);
  for (CK_ULONG i = 0; i < n; i++) {
    CK_BYTE id[16];
    CK_ATTRIBUTE a = {CKA_ID, id, sizeof id};
    RV(f->C_GetAttributeValue(h, objs[i], &a, 1), CKR_OK);
    hex(id, a.ulValueLen, ids[i]);
  }
  return (int) n;
}

static int has(char ids[][40], int n, const char *id) {
  for (int i = 0; i < n; i++)
    if (strcmp(ids[i], id) == 0) return 1;
  return 0;
}

static int sign_with(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key) {
  CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
  CK_BYTE sig[64];
  CK_ULONG n = sizeof sig;
  CK_RV r = f->C_SignInit(h, &m, key);
  if (r == CKR_OK) r = f->C_Sign(h, (CK_BYTE_PTR) "data", 4, sig, &n);
  return r == CKR_OK;
}

/* in_log reports whether log has the line "what id"; it leaves the
 * position where it was. */
static int in_log(FILE *log, const char *what, const char *id) {
  if (!log) return 0;
  long pos = ftell(log);
  rewind(log);
  char w[16], i[40];
  int found = 0;
  while (!found && fscanf(log, "%15s %39s", w, i) == 2) found = strcmp(w, what) == 0 && strcmp(i, id) == 0;
  fseek(log, pos, SEEK_SET);
  return found;
}

static char priv_ids[MAXKEYS][40], pub_ids[MAXKEYS][40];
static CK_OBJECT_HANDLE privs[MAXKEYS], pubs[MAXKEYS];

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  void *so = dlopen(argv[1], RTLD_NOW);
  if (!so) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  RV(get_iface(NULL, NULL, &ip, 0), CKR_OK);
  f = ip->pFunctionList;
  RV(f->C_Initialize(NULL), CKR_OK);
  if (strcmp(argv[2], "init") == 0) {
    CK_BYTE label[32];
    memset(label, ' ', 32);
    memcpy(label, "crash", 5);
    RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
    CK_SESSION_HANDLE h;
    RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
    RV(f->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR) "so-secret", 9), CKR_OK);
    RV(f->C_InitPIN(h, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  } else if (strcmp(argv[2], "work") == 0) {
    CK_SESSION_HANDLE h = login();
    if (failures) return 1;
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_BBOOL yes = 1;
    for (unsigned i = 0;; i++) {
      CK_BYTE id[8];
      unsigned pid = (unsigned) getpid();
      memcpy(id, &pid, 4);
      memcpy(id + 4, &i, 4);
      char idhex[40];
      hex(id, 8, idhex);
      CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1}, {CKA_EC_PARAMS, ec_params, sizeof ec_params}, {CKA_ID, id, 8}};
      CK_ATTRIBUTE prv[] = {{CKA_TOKEN, &yes, 1}, {CKA_ID, id, 8}};
      CK_OBJECT_HANDLE hpub, hpriv;
      CK_RV r = f->C_GenerateKeyPair(h, &gen, pub, 3, prv, 2, &hpub, &hpriv);
      if (r != CKR_OK) { fprintf(stderr, "FAIL keygen 0x%lx\n", r); return 1; }
      printf("created %s\n", idhex);
      fflush(stdout);
      if (!sign_with(h, hpriv)) { fprintf(stderr, "FAIL sign\n"); return 1; }
      if (i % 2 == 1) {
        /* Two calls: killed between them, the pair is half gone, as the
         * application asked. */
        printf("deleting %s\n", idhex);
        fflush(stdout);
        RV(f->C_DestroyObject(h, hpriv), CKR_OK);
        RV(f->C_DestroyObject(h, hpub), CKR_OK);
        if (failures) return 1;
        printf("deleted %s\n", idhex);
        fflush(stdout);
      }
    }
  } else if (strcmp(argv[2], "check") == 0 && argc == 4) {
    CK_SESSION_HANDLE h = login();
    if (failures) return 1;
    int np = find(h, CKO_PRIVATE_KEY, privs, priv_ids);
    int nu = find(h, CKO_PUBLIC_KEY, pubs, pub_ids);
    FILE *log = fopen(argv[3], "r");
    CHECK(log != NULL, "open %s", argv[3]);
    for (int i = 0; i < np; i++)
      CHECK(has(pub_ids, nu, priv_ids[i]) || in_log(log, "deleting", priv_ids[i]), "private key %s has no public half", priv_ids[i]);
    for (int i = 0; i < nu; i++)
      CHECK(has(priv_ids, np, pub_ids[i]) || in_log(log, "deleting", pub_ids[i]), "public key %s has no private half", pub_ids[i]);
    char what[16], id[40];
    int created = 0, deleted = 0;
    while (log && fscanf(log, "%15s %39s", what, id) == 2) {
      if (strcmp(what, "created") == 0) {
        created++;
        /* Being deleted? Then it is checked there. */
        if (!in_log(log, "deleting", id)) CHECK(has(priv_ids, np, id), "key %s was reported created and is gone", id);
      } else if (strcmp(what, "deleted") == 0) {
        deleted++;
        CHECK(!has(priv_ids, np, id) && !has(pub_ids, nu, id), "key %s was reported deleted and is there", id);
      }
    }
    if (np > 0) CHECK(sign_with(h, privs[0]), "sign with a surviving key");
    printf("keys %d created %d deleted %d\n", np, created, deleted);
  } else {
    return 2;
  }
  RV(f->C_Finalize(NULL), CKR_OK);
  return failures ? 1 : 0;
}
