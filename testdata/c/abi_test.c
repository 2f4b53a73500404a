/* ABI test for libtpm11.so, driven from C as a real host would: interface
 * lists and versions, C_Initialize/C_Finalize rules, return codes for calls
 * before initialization and for bad arguments, then a token, a key and
 * signatures, secret keys and ECDH, and 16 threads with mixed operations
 * on their own sessions. */
#include <dlfcn.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"



_Static_assert(sizeof(CK_ULONG) == 8, "CK_ULONG");
_Static_assert(sizeof(CK_INFO) == 88, "CK_INFO");
_Static_assert(sizeof(CK_SLOT_INFO) == 112, "CK_SLOT_INFO");
_Static_assert(sizeof(CK_TOKEN_INFO) == 208, "CK_TOKEN_INFO");
_Static_assert(sizeof(CK_INTERFACE) == 24, "CK_INTERFACE");
_Static_assert(sizeof(CK_ATTRIBUTE) == 24, "CK_ATTRIBUTE");
_Static_assert(sizeof(CK_MECHANISM) == 24, "CK_MECHANISM");
_Static_assert(sizeof(CK_SESSION_INFO) == 32, "CK_SESSION_INFO");
_Static_assert(sizeof(CK_ASYNC_DATA) == 40, "CK_ASYNC_DATA");
_Static_assert(sizeof(CK_C_INITIALIZE_ARGS) == 48, "CK_C_INITIALIZE_ARGS");
_Static_assert(sizeof(CK_FUNCTION_LIST) == 8 + 68 * 8, "2.40 list");
_Static_assert(sizeof(CK_FUNCTION_LIST_3_0) == 8 + 92 * 8, "3.0 list");
_Static_assert(sizeof(CK_FUNCTION_LIST_3_2) == 8 + 104 * 8, "3.2 list");

static CK_FUNCTION_LIST_3_2 *f;
static CK_OBJECT_HANDLE priv_key, pub_key;
static CK_BYTE ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static void check_entries(void *list, int n, const char *what) {
  void **e = (void **)((char *)list + 8);
  for (int i = 0; i < n; i++) CHECK(e[i] != NULL, "%s entry %d is NULL", what, i);
}

static CK_FUNCTION_LIST_PTR fl_2_40(void *so) {
  CK_RV (*get_fl)(CK_FUNCTION_LIST_PTR_PTR) = dlsym(so, "C_GetFunctionList");
  CK_FUNCTION_LIST_PTR fl = NULL;
  return get_fl && get_fl(&fl) == CKR_OK ? fl : NULL;
}

static void test_interfaces(void *so) {
  CK_RV (*get_list)(CK_INTERFACE_PTR, CK_ULONG_PTR) = dlsym(so, "C_GetInterfaceList");
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_RV (*get_fl)(CK_FUNCTION_LIST_PTR_PTR) = dlsym(so, "C_GetFunctionList");
  CHECK(get_list && get_iface && get_fl, "missing entry points");
  CK_ULONG n = 0;
  RV(get_list(NULL, NULL), CKR_ARGUMENTS_BAD);
  RV(get_list(NULL, &n), CKR_OK);
  CHECK(n == 3, "%lu interfaces, want 3", n);
  CK_INTERFACE ifs[3];
  CK_ULONG small = 1;
  RV(get_list(ifs, &small), CKR_BUFFER_TOO_SMALL);
  CHECK(small == 3, "too-small count not updated");
  RV(get_list(ifs, &n), CKR_OK);
  const CK_BYTE want[3][2] = {{3, 2}, {3, 0}, {2, 40}};
  const int entries[3] = {104, 92, 68};
  for (int i = 0; i < 3; i++) {
    CK_VERSION *v = ifs[i].pFunctionList;
    CHECK(strcmp((char *)ifs[i].pInterfaceName, "PKCS 11") == 0, "interface %d name", i);
    CHECK(v->major == want[i][0] && v->minor == want[i][1], "interface %d version %d.%d", i, v->major, v->minor);
    CHECK((ifs[i].flags & 1) == 0, "interface %d claims fork safety", i);
    check_entries(ifs[i].pFunctionList, entries[i], "interface");
  }
  CK_INTERFACE_PTR ip = NULL;
  RV(get_iface(NULL, NULL, &ip, 0), CKR_OK);
  CHECK(ip && ((CK_VERSION *)ip->pFunctionList)->major == 3 && ((CK_VERSION *)ip->pFunctionList)->minor == 2, "default interface is not 3.2");
  f = ip->pFunctionList;
  CK_VERSION v30 = {3, 0};
  RV(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &ip, 0), CKR_OK);
  CHECK(((CK_VERSION *)ip->pFunctionList)->minor == 0, "3.0 interface");
  CK_VERSION v240 = {2, 40};
  RV(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &ip, 0), CKR_OK);
  CHECK(ip->pFunctionList == fl_2_40(so), "2.40 interface is not C_GetFunctionList's list");
  RV(get_iface(NULL, &v30, &ip, 0), CKR_OK);
  CHECK(((CK_VERSION *)ip->pFunctionList)->minor == 0, "NULL name, version 3.0");
  /* No such name, version or flags: CKR_ARGUMENTS_BAD, *ppInterface untouched. */
  CK_VERSION v31 = {3, 1}, v211 = {2, 11};
  ip = NULL;
  RV(get_iface((CK_UTF8CHAR_PTR) "Vendor X", NULL, &ip, 0), CKR_ARGUMENTS_BAD);
  RV(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v31, &ip, 0), CKR_ARGUMENTS_BAD);
  RV(get_iface(NULL, &v211, &ip, 0), CKR_ARGUMENTS_BAD);
  RV(get_iface(NULL, NULL, &ip, 1 /* FORK_SAFE */), CKR_ARGUMENTS_BAD);
  RV(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &ip, 1), CKR_ARGUMENTS_BAD);
  CHECK(ip == NULL, "a failed C_GetInterface wrote *ppInterface");
  RV(get_iface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
  CK_FUNCTION_LIST_PTR fl = NULL;
  RV(get_fl(&fl), CKR_OK);
  CHECK(fl->version.major == 2 && fl->version.minor == 40, "C_GetFunctionList version %d.%d", fl->version.major, fl->version.minor);
  RV(get_fl(NULL), CKR_ARGUMENTS_BAD);
}

static void test_not_initialized(void) {
  CK_INFO info;
  CK_ULONG n;
  CK_SESSION_HANDLE h;
  CK_BYTE buf[64];
  RV(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_GetSlotList(0, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_GetSlotInfo(0, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_GetTokenInfo(0, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_CloseSession(1), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_Login(1, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_FindObjectsInit(1, NULL, 0), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_SignInit(1, NULL, 1), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_Sign(1, buf, 1, buf, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_GenerateRandom(1, buf, 8), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_GenerateKeyPair(1, NULL, NULL, 0, NULL, 0, NULL, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_AsyncComplete(1, (CK_UTF8CHAR_PTR) "C_Sign", NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_GetFunctionStatus(1), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_CancelFunction(1), CKR_CRYPTOKI_NOT_INITIALIZED);
  CK_FLAGS fl;
  RV(f->C_GetSessionValidationFlags(1, 0, &fl), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static CK_RV dummy_mutex(CK_VOID_PTR p) { (void)p; return CKR_OK; }

static void test_initialize_rules(void) {
  CK_C_INITIALIZE_ARGS a;
  memset(&a, 0, sizeof a);
  a.pReserved = &a;
  RV(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
  memset(&a, 0, sizeof a);
  a.LockMutex = dummy_mutex; /* only some mutex functions */
  RV(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
  memset(&a, 0, sizeof a);
  a.flags = CKF_OS_LOCKING_OK | CKF_LIBRARY_CANT_CREATE_OS_THREADS; /* what p11-kit passes */
  RV(f->C_Initialize(&a), CKR_OK);
  RV(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
  RV(f->C_Finalize(&a), CKR_ARGUMENTS_BAD);
  RV(f->C_Finalize(NULL), CKR_OK);
  RV(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_Initialize(NULL), CKR_OK);

  CK_INFO info;
  RV(f->C_GetInfo(&info), CKR_OK);
  CHECK(info.cryptokiVersion.major == 3 && info.cryptokiVersion.minor == 2, "C_GetInfo version");
  CHECK(memchr(info.manufacturerID, 0, 32) == NULL, "manufacturerID has NUL bytes");
  RV(f->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
}

static void test_bad_arguments(void) {
  CK_ULONG n;
  CK_SESSION_HANDLE h;
  CK_SLOT_INFO si;
  CK_MECHANISM_INFO mi;
  CK_BYTE buf[8];
  RV(f->C_GetSlotList(0, NULL, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_GetSlotInfo(999, &si), CKR_SLOT_ID_INVALID);
  RV(f->C_GetSlotInfo(0, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_GetMechanismInfo(0, 0xdeadUL, &mi), CKR_MECHANISM_INVALID);
  RV(f->C_GetMechanismList(0, NULL, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_OpenSession(0, 0, NULL, NULL, &h), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_CloseSession(0x12345), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_Login(0x12345, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_Sign(0x12345, buf, 1, buf, &n), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_Sign(0x12345, buf, 1, buf, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_GenerateRandom(0x12345, NULL, 8), CKR_ARGUMENTS_BAD);
  RV(f->C_GetFunctionStatus(0x12345), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_CancelFunction(0x12345), CKR_SESSION_HANDLE_INVALID);
  /* The encryption, key-making and derivation entry points. */
  CK_MECHANISM m = {CKM_AES_CBC_PAD, NULL, 0};
  CK_OBJECT_HANDLE k;
  /* A NULL mechanism is no bad argument: it ends the operation (3.x). */
  RV(f->C_EncryptInit(0x12345, NULL, 1), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_EncryptInit(0x12345, &m, 1), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_Encrypt(0x12345, buf, 1, buf, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_Encrypt(0x12345, NULL, 8, buf, &n), CKR_ARGUMENTS_BAD);
  RV(f->C_EncryptUpdate(0x12345, buf, 1, buf, &n), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_EncryptFinal(0x12345, buf, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_DecryptUpdate(0x12345, buf, 1, buf, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_GenerateKey(0x12345, &m, NULL, 0, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_GenerateKey(0x12345, &m, NULL, 0, &k), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_DeriveKey(0x12345, NULL, 1, NULL, 0, &k), CKR_ARGUMENTS_BAD);
  CK_MECHANISM d = {CKM_ECDH1_DERIVE, buf, 3};
  RV(f->C_DeriveKey(0x12345, &d, 1, NULL, 0, &k), CKR_MECHANISM_PARAM_INVALID);
}

/* A forked child starts uninitialized, whatever its parent did, and gets a
 * working module from its own C_Initialize (a helper serves it: fork.c);
 * fork_test.c signs in children. */
static void test_fork(void) {
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20);
    CK_INFO info;
    int ok = f->C_GetInfo(&info) == CKR_CRYPTOKI_NOT_INITIALIZED && f->C_Initialize(NULL) == CKR_OK &&
             f->C_GetInfo(&info) == CKR_OK && info.cryptokiVersion.major == 3 && info.cryptokiVersion.minor == 2 &&
             f->C_Initialize(NULL) == CKR_CRYPTOKI_ALREADY_INITIALIZED &&
             /* What p11-kit's RPC does not carry (docs/fork.md). */
             f->C_SessionCancel(1, CKF_SIGN) == CKR_FUNCTION_NOT_SUPPORTED &&
             f->C_AsyncComplete(1, (CK_UTF8CHAR_PTR) "C_Sign", NULL) == CKR_FUNCTION_NOT_SUPPORTED &&
             f->C_Finalize(NULL) == CKR_OK &&
             f->C_Finalize(NULL) == CKR_CRYPTOKI_NOT_INITIALIZED;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child: not a working, separately initialized module (status 0x%x)", status);
}

static CK_OBJECT_HANDLE hmac_key, aes_key;

/* One of 16 threads, each on its own session, no application lock: by
 * thread number it signs with ECDSA, MACs with HMAC, round-trips AES-CBC in
 * the TPM, or finds objects and digests in software. */
static void *worker(void *arg) {
  long kind = (long)arg % 4;
  CK_SESSION_HANDLE h;
  CK_RV r = f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h);
  long bad = r != CKR_OK;
  CK_BYTE iv[16] = {1, 2, 3};
  CK_MECHANISM ecdsa = {CKM_ECDSA_SHA256, NULL, 0}, hmac = {CKM_SHA256_HMAC, NULL, 0},
               aes = {CKM_AES_CBC_PAD, iv, sizeof iv}, sha = {CKM_SHA256, NULL, 0};
  for (int i = 0; i < 30 && !bad; i++) {
    CK_BYTE out[64], back[64];
    CK_ULONG n = sizeof out, m = sizeof back, count = 0;
    CK_OBJECT_HANDLE found[4];
    switch (kind) {
    case 0:
      bad += f->C_SignInit(h, &ecdsa, priv_key) != CKR_OK;
      bad += f->C_Sign(h, (CK_BYTE_PTR) "thread", 6, out, &n) != CKR_OK || n != 64;
      break;
    case 1:
      bad += f->C_SignInit(h, &hmac, hmac_key) != CKR_OK;
      bad += f->C_Sign(h, (CK_BYTE_PTR) "thread", 6, out, &n) != CKR_OK || n != 32;
      bad += f->C_VerifyInit(h, &hmac, hmac_key) != CKR_OK;
      bad += f->C_Verify(h, (CK_BYTE_PTR) "thread", 6, out, n) != CKR_OK;
      break;
    case 2:
      bad += f->C_EncryptInit(h, &aes, aes_key) != CKR_OK;
      bad += f->C_Encrypt(h, (CK_BYTE_PTR) "sixteen bytes!!!+5", 18, out, &n) != CKR_OK || n != 32;
      bad += f->C_DecryptInit(h, &aes, aes_key) != CKR_OK;
      bad += f->C_Decrypt(h, out, n, back, &m) != CKR_OK || m != 18 || memcmp(back, "sixteen bytes!!!+5", 18) != 0;
      break;
    default:
      bad += f->C_FindObjectsInit(h, NULL, 0) != CKR_OK;
      bad += f->C_FindObjects(h, found, 4, &count) != CKR_OK || count == 0;
      bad += f->C_FindObjectsFinal(h) != CKR_OK;
      bad += f->C_DigestInit(h, &sha) != CKR_OK;
      bad += f->C_Digest(h, (CK_BYTE_PTR) "thread", 6, out, &n) != CKR_OK || n != 32;
    }
  }
  f->C_CloseSession(h);
  return (void *)bad;
}

/* Secret keys and ECDH through the C ABI, with bad arguments refused. */
static void test_secret(CK_SESSION_HANDLE h) {
  CK_ULONG len32 = 32;
  CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len32, sizeof len32}};
  CK_MECHANISM gen = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0}, agen = {CKM_AES_KEY_GEN, NULL, 0};
  RV(f->C_GenerateKey(h, &gen, t, 1, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_GenerateKey(h, &gen, t, 1, &hmac_key), CKR_OK);
  RV(f->C_GenerateKey(h, &agen, t, 1, &aes_key), CKR_OK);
  CK_BYTE iv[16] = {0};
  CK_MECHANISM aes = {CKM_AES_CBC_PAD, iv, sizeof iv};
  RV(f->C_EncryptInit(h, &aes, aes_key), CKR_OK);
  RV(f->C_Encrypt(h, (CK_BYTE_PTR) "abc", 3, NULL, NULL), CKR_ARGUMENTS_BAD);
  /* Bad arguments end the operation like any other failure. */
  CK_ULONG n = 0;
  RV(f->C_Encrypt(h, (CK_BYTE_PTR) "abc", 3, NULL, &n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_EncryptInit(h, &aes, aes_key), CKR_OK);
  RV(f->C_Encrypt(h, (CK_BYTE_PTR) "abc", 3, NULL, &n), CKR_OK);
  CHECK(n == 16, "CBC_PAD length query gave %lu", n);
  CK_BYTE ct[16];
  RV(f->C_Encrypt(h, (CK_BYTE_PTR) "abc", 3, ct, &n), CKR_OK);

  /* ECDH: our own public key as the peer's; NULL public data is refused. */
  CK_BYTE point[80];
  CK_ATTRIBUTE get[] = {{CKA_EC_POINT, point, sizeof point}};
  RV(f->C_GetAttributeValue(h, pub_key, get, 1), CKR_OK);
  CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, 65, point + 2};
  CK_MECHANISM derive = {CKM_ECDH1_DERIVE, &p, sizeof p};
  CK_ULONG cls = CKO_SECRET_KEY;
  CK_ULONG kt = CKK_GENERIC_SECRET;
  CK_BBOOL no = 0, yes = 1;
  CK_ATTRIBUTE dt[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_KEY_TYPE, &kt, sizeof kt},
                       {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
  CK_OBJECT_HANDLE dk;
  RV(f->C_DeriveKey(h, &derive, priv_key, dt, 4, &dk), CKR_OK);
  CK_BYTE z[66];
  CK_ATTRIBUTE zv[] = {{CKA_VALUE, z, sizeof z}};
  RV(f->C_GetAttributeValue(h, dk, zv, 1), CKR_OK);
  CHECK(zv[0].ulValueLen == 32, "shared secret length %lu", zv[0].ulValueLen);
  p.pPublicData = NULL;
  RV(f->C_DeriveKey(h, &derive, priv_key, dt, 4, &dk), CKR_MECHANISM_PARAM_INVALID);
  derive.ulParameterLen = 8;
  RV(f->C_DeriveKey(h, &derive, priv_key, dt, 4, &dk), CKR_MECHANISM_PARAM_INVALID);
}

static void test_token(void) {
  CK_BYTE label[32];
  memset(label, ' ', 32);
  memcpy(label, "abi-test", 8);
  RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
  CK_TOKEN_INFO ti;
  RV(f->C_GetTokenInfo(0, &ti), CKR_OK);
  CHECK(ti.flags & CKF_TOKEN_INITIALIZED, "token not initialized");
  CHECK(memcmp(ti.label, "abi-test   ", 11) == 0, "label not blank-padded");
  CK_ULONG n = 0;
  RV(f->C_GetSlotList(1, NULL, &n), CKR_OK);
  CHECK(n == 2, "want a token slot and an empty slot, got %lu slots", n);

  CK_SESSION_HANDLE h;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  RV(f->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR) "so-secret", 9), CKR_OK);
  RV(f->C_InitPIN(h, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  RV(f->C_Logout(h), CKR_OK);
  RV(f->C_Logout(h), CKR_USER_NOT_LOGGED_IN);
  /* The legacy parallel-function calls: never CKR_OK, the spec says. */
  RV(f->C_GetFunctionStatus(h), CKR_FUNCTION_NOT_PARALLEL);
  RV(f->C_CancelFunction(h), CKR_FUNCTION_NOT_PARALLEL);
  CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
  CK_BBOOL yes = 1;
  CK_BYTE id[] = {7};
  CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1}, {CKA_EC_PARAMS, ec_params, sizeof ec_params}, {CKA_ID, id, 1}};
  CK_ATTRIBUTE prv[] = {{CKA_TOKEN, &yes, 1}, {CKA_ID, id, 1}, {CKA_DERIVE, &yes, 1}};
  CK_OBJECT_HANDLE hpub;
  RV(f->C_GenerateKeyPair(h, &gen, pub, 3, prv, 3, &hpub, &priv_key), CKR_USER_NOT_LOGGED_IN);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9), CKR_PIN_INCORRECT);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  RV(f->C_GenerateKeyPair(h, &gen, pub, 3, prv, 3, &hpub, &priv_key), CKR_OK);
  pub_key = hpub;

  CK_BYTE point[80];
  CK_ATTRIBUTE get[] = {{CKA_EC_POINT, NULL, 0}, {CKA_VALUE, point, sizeof point}};
  RV(f->C_GetAttributeValue(h, hpub, get, 1), CKR_OK);
  CHECK(get[0].ulValueLen == 67, "EC_POINT length %lu", get[0].ulValueLen);
  get[0].pValue = point;
  get[0].ulValueLen = 10;
  RV(f->C_GetAttributeValue(h, hpub, get, 1), CKR_BUFFER_TOO_SMALL);
  CHECK(get[0].ulValueLen == CK_UNAVAILABLE_INFORMATION, "too small not marked unavailable");
  RV(f->C_GetAttributeValue(h, priv_key, get + 1, 1), CKR_ATTRIBUTE_SENSITIVE);
  RV(f->C_GetAttributeValue(h, 0x7fffffff, get, 1), CKR_OBJECT_HANDLE_INVALID);

  CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
  CK_BYTE sig[64];
  CK_ULONG siglen = 0;
  RV(f->C_Sign(h, (CK_BYTE_PTR) "x", 1, NULL, &siglen), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_SignInit(h, &m, priv_key), CKR_OK);
  RV(f->C_Sign(h, (CK_BYTE_PTR) "hello", 5, NULL, &siglen), CKR_OK);
  CHECK(siglen == 64, "length query gave %lu", siglen);
  siglen = 3;
  RV(f->C_Sign(h, (CK_BYTE_PTR) "hello", 5, sig, &siglen), CKR_BUFFER_TOO_SMALL);
  CHECK(siglen == 64, "too small gave %lu", siglen);
  siglen = sizeof sig;
  RV(f->C_Sign(h, (CK_BYTE_PTR) "hello", 5, sig, &siglen), CKR_OK);
  RV(f->C_VerifyInit(h, &m, hpub), CKR_OK);
  RV(f->C_Verify(h, (CK_BYTE_PTR) "hello", 5, sig, siglen), CKR_OK);
  sig[10] ^= 1;
  RV(f->C_VerifyInit(h, &m, hpub), CKR_OK);
  RV(f->C_Verify(h, (CK_BYTE_PTR) "hello", 5, sig, siglen), CKR_SIGNATURE_INVALID);

  /* Multi-part gives a signature the single-part verify accepts. */
  RV(f->C_SignInit(h, &m, priv_key), CKR_OK);
  RV(f->C_SignUpdate(h, (CK_BYTE_PTR) "hel", 3), CKR_OK);
  RV(f->C_SignUpdate(h, (CK_BYTE_PTR) "lo", 2), CKR_OK);
  siglen = sizeof sig;
  RV(f->C_SignFinal(h, sig, &siglen), CKR_OK);
  RV(f->C_VerifyInit(h, &m, hpub), CKR_OK);
  RV(f->C_Verify(h, (CK_BYTE_PTR) "hello", 5, sig, siglen), CKR_OK);

  test_secret(h);
  pthread_t t[16];
  for (long i = 0; i < 16; i++) pthread_create(&t[i], NULL, worker, (void *)i);
  long bad = 0;
  for (int i = 0; i < 16; i++) {
    void *r;
    pthread_join(t[i], &r);
    bad += (long)r;
  }
  CHECK(bad == 0, "%ld failures in 16 threads x 30 mixed operations", bad);

  /* C_Finalize resets state: old handles are gone after a new C_Initialize. */
  RV(f->C_Finalize(NULL), CKR_OK);
  RV(f->C_Initialize(NULL), CKR_OK);
  RV(f->C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_Finalize(NULL), CKR_OK);
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "build/libtpm11.so";
  void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!so) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  test_interfaces(so);
  test_not_initialized();
  test_initialize_rules();
  test_bad_arguments();
  test_fork();
  test_token();
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("abi_test: all checks passed\n");
  return 0;
}
