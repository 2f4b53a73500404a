/* PKCS#11 3.2 asynchronous operations against libtpm11.so, with a TPM that
 * answers every command 20 ms late (the runner points TPM11_TPM at
 * testdata/slowtpm), so that CKR_PENDING is deterministic. Each block tests one rule of
 * docs/async.md. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "test.h"



static CK_FUNCTION_LIST_3_2 *f;
static CK_BYTE ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static CK_MECHANISM sign_mech = {CKM_ECDSA_SHA256, NULL, 0};

/* complete polls C_AsyncComplete until the operation is no longer pending
 * (60 s at most: only a hang reaches it). */
static CK_RV complete(CK_SESSION_HANDLE h, const char *fn, CK_ASYNC_DATA *res) {
  for (int i = 0; i < 30000; i++) {
    CK_RV r = f->C_AsyncComplete(h, (CK_UTF8CHAR_PTR)fn, res);
    if (r != CKR_PENDING) return r;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  return CKR_PENDING;
}

int main(int argc, char **argv) {
  void *so = dlopen(argc > 1 ? argv[1] : "build/libtpm11.so", RTLD_NOW);
  if (!so) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  CK_VERSION v32 = {3, 2};
  RV(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v32, &ip, 0), CKR_OK);
  f = ip->pFunctionList;
  RV(f->C_Initialize(NULL), CKR_OK);

  /* Provision a token and an EC key on a synchronous session. */
  CK_BYTE label[32];
  memset(label, ' ', 32);
  RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
  CK_TOKEN_INFO ti;
  RV(f->C_GetTokenInfo(0, &ti), CKR_OK);
  CHECK(ti.flags & CKF_ASYNC_SESSION_SUPPORTED, "token does not advertise async sessions");
  CK_SESSION_HANDLE sync;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sync), CKR_OK);
  RV(f->C_Login(sync, CKU_SO, (CK_UTF8CHAR_PTR) "so-secret", 9), CKR_OK);
  RV(f->C_InitPIN(sync, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  RV(f->C_Logout(sync), CKR_OK);
  RV(f->C_Login(sync, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
  CK_BBOOL yes = 1;
  CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1}, {CKA_EC_PARAMS, ec_params, sizeof ec_params}};
  CK_ATTRIBUTE prv[] = {{CKA_TOKEN, &yes, 1}, {CKA_DERIVE, &yes, 1}};
  CK_OBJECT_HANDLE hpub, hpriv;
  RV(f->C_GenerateKeyPair(sync, &gen, pub, 2, prv, 2, &hpub, &hpriv), CKR_OK);

  /* Synchronous sessions never pend, even on a slow TPM. */
  CK_BYTE sig[64];
  CK_ULONG siglen = sizeof sig;
  RV(f->C_SignInit(sync, &sign_mech, hpriv), CKR_OK);
  RV(f->C_Sign(sync, (CK_BYTE_PTR) "m", 1, sig, &siglen), CKR_OK);

  /* An async session reports the flag. */
  CK_SESSION_HANDLE as;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &as), CKR_OK);
  CK_SESSION_INFO si;
  RV(f->C_GetSessionInfo(as, &si), CKR_OK);
  CHECK(si.flags & CKF_ASYNC_SESSION, "session info lacks CKF_ASYNC_SESSION");

  /* Length queries and too-small buffers never pend. */
  RV(f->C_SignInit(as, &sign_mech, hpriv), CKR_OK);
  siglen = 0;
  RV(f->C_Sign(as, (CK_BYTE_PTR) "m", 1, NULL, &siglen), CKR_OK);
  CHECK(siglen == 64, "length query %lu", siglen);
  siglen = 10;
  RV(f->C_Sign(as, (CK_BYTE_PTR) "m", 1, sig, &siglen), CKR_BUFFER_TOO_SMALL);
  CHECK(siglen == 64, "too small %lu", siglen);

  /* C_Sign pends; *pulSignatureLen is not written after CKR_PENDING. */
  CK_BYTE *buf = malloc(64);
  CK_ULONG buflen = 64;
  RV(f->C_Sign(as, (CK_BYTE_PTR) "async", 5, buf, &buflen), CKR_PENDING);
  CHECK(buflen == 64, "pulSignatureLen written after PENDING");
  /* While pending: other calls on the session are refused; queries stay allowed. */
  RV(f->C_SignInit(as, &sign_mech, hpriv), CKR_OPERATION_ACTIVE);
  RV(f->C_FindObjectsInit(as, NULL, 0), CKR_OPERATION_ACTIVE);
  RV(f->C_GetSessionInfo(as, &si), CKR_OK);
  /* Wrong, unknown and NULL names; NULL result for an op with outputs; bad version. */
  CK_ASYNC_DATA res = {0, NULL, 0, 0, 0};
  RV(f->C_AsyncComplete(as, (CK_UTF8CHAR_PTR) "C_GenerateKeyPair", &res), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_AsyncComplete(as, (CK_UTF8CHAR_PTR) "C_NoSuchFunction", &res), CKR_ARGUMENTS_BAD);
  RV(f->C_AsyncComplete(as, NULL, &res), CKR_ARGUMENTS_BAD);
  RV(f->C_AsyncComplete(as, (CK_UTF8CHAR_PTR) "C_Sign", NULL), CKR_ARGUMENTS_BAD);
  res.ulVersion = 1;
  RV(f->C_AsyncComplete(as, (CK_UTF8CHAR_PTR) "C_Sign", &res), CKR_ARGUMENTS_BAD);
  res.ulVersion = 0;
  RV(f->C_AsyncComplete(as, (CK_UTF8CHAR_PTR) "C_Sign", &res), CKR_PENDING);
  CHECK(res.pValue == NULL, "pResult modified while pending");
  RV(complete(as, "C_Sign", &res), CKR_OK);
  CHECK(res.pValue == buf, "pValue is not the original buffer");
  CHECK(res.ulValue == 64, "ulValue %lu", res.ulValue);
  RV(f->C_AsyncComplete(as, (CK_UTF8CHAR_PTR) "C_Sign", &res), CKR_OPERATION_NOT_INITIALIZED);
  /* A NULL result is bad arguments even with nothing pending. */
  RV(f->C_AsyncComplete(as, (CK_UTF8CHAR_PTR) "C_Sign", NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_VerifyInit(sync, &sign_mech, hpub), CKR_OK);
  RV(f->C_Verify(sync, (CK_BYTE_PTR) "async", 5, buf, 64), CKR_OK);

  /* C_SessionCancel drops the pending sign; the session is usable again. */
  RV(f->C_SignInit(as, &sign_mech, hpriv), CKR_OK);
  buflen = 64;
  RV(f->C_Sign(as, (CK_BYTE_PTR) "x", 1, buf, &buflen), CKR_PENDING);
  RV(f->C_SessionCancel(as, CKF_SIGN), CKR_OK);
  RV(f->C_AsyncComplete(as, (CK_UTF8CHAR_PTR) "C_Sign", &res), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_SignInit(as, &sign_mech, hpriv), CKR_OK);
  RV(f->C_SessionCancel(as, CKF_SIGN), CKR_OK);

  /* C_GenerateKeyPair pends and completes with both handles, public first. */
  memset(&res, 0, sizeof res);
  RV(f->C_GenerateKeyPair(as, &gen, pub, 2, prv, 2, &hpub, &hpriv), CKR_PENDING);
  RV(complete(as, "C_GenerateKeyPair", &res), CKR_OK);
  CHECK(res.hObject != 0 && res.hAdditionalObject != 0, "keygen handles missing");
  RV(f->C_SignInit(sync, &sign_mech, res.hAdditionalObject), CKR_OK);
  siglen = sizeof sig;
  RV(f->C_Sign(sync, (CK_BYTE_PTR) "k", 1, sig, &siglen), CKR_OK);
  RV(f->C_VerifyInit(sync, &sign_mech, res.hObject), CKR_OK);
  RV(f->C_Verify(sync, (CK_BYTE_PTR) "k", 1, sig, siglen), CKR_OK);

  /* C_GenerateRandom pends and fills the original buffer on completion. */
  CK_BYTE rnd[32];
  memset(rnd, 0, sizeof rnd);
  memset(&res, 0, sizeof res);
  RV(f->C_GenerateRandom(as, rnd, sizeof rnd), CKR_PENDING);
  RV(complete(as, "C_GenerateRandom", &res), CKR_OK);
  CHECK(res.pValue == rnd && res.ulValue == 32, "random result");
  int zero = 1;
  for (int i = 0; i < 32; i++) zero &= rnd[i] == 0;
  CHECK(!zero, "random buffer not filled");

  /* C_GenerateKey pends and completes with the key's handle. */
  CK_ULONG len32 = 32;
  CK_ATTRIBUTE vl[] = {{CKA_VALUE_LEN, &len32, sizeof len32}};
  CK_MECHANISM agen = {CKM_AES_KEY_GEN, NULL, 0};
  CK_OBJECT_HANDLE aes = 0;
  memset(&res, 0, sizeof res);
  RV(f->C_GenerateKey(as, &agen, vl, 1, &aes), CKR_PENDING);
  CHECK(aes == 0, "phKey written after PENDING");
  RV(complete(as, "C_GenerateKey", &res), CKR_OK);
  aes = res.hObject;
  CHECK(aes != 0, "C_GenerateKey completed without a handle");

  /* C_Encrypt and C_Decrypt with that key pend, fill the original buffers, and round-trip. */
  CK_BYTE iv[16] = {9};
  CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, sizeof iv};
  CK_BYTE ct[48], pt[48];
  CK_ULONG ctlen = sizeof ct, ptlen = sizeof pt;
  RV(f->C_EncryptInit(as, &cbc, aes), CKR_OK);
  RV(f->C_Encrypt(as, (CK_BYTE_PTR) "thirty-three bytes of plain text!", 33, ct, &ctlen), CKR_PENDING);
  memset(&res, 0, sizeof res);
  RV(complete(as, "C_Encrypt", &res), CKR_OK);
  CHECK(res.pValue == ct && res.ulValue == 48, "encrypt result %p %lu", (void *)res.pValue, res.ulValue);
  RV(f->C_DecryptInit(as, &cbc, aes), CKR_OK);
  RV(f->C_Decrypt(as, ct, 48, pt, &ptlen), CKR_PENDING);
  memset(&res, 0, sizeof res);
  RV(complete(as, "C_Decrypt", &res), CKR_OK);
  CHECK(res.pValue == pt && res.ulValue == 33 && memcmp(pt, "thirty-three bytes of plain text!", 33) == 0, "decrypt result");
  /* A decryption is never detached: its plaintext would have to be stored. */
  RV(f->C_DecryptInit(as, &cbc, aes), CKR_OK);
  ptlen = sizeof pt;
  RV(f->C_Decrypt(as, ct, 48, pt, &ptlen), CKR_PENDING);
  CK_ULONG id;
  RV(f->C_AsyncGetID(as, (CK_UTF8CHAR_PTR) "C_Decrypt", &id), CKR_STATE_UNSAVEABLE);
  RV(complete(as, "C_Decrypt", &res), CKR_OK);

  /* C_DeriveKey (ECDH in the TPM) pends and completes with a handle. */
  CK_BYTE point[80];
  CK_ATTRIBUTE gp[] = {{CKA_EC_POINT, point, sizeof point}};
  RV(f->C_GetAttributeValue(sync, hpub, gp, 1), CKR_OK);
  CK_ECDH1_DERIVE_PARAMS dp = {CKD_NULL, 0, NULL, 65, point + 2};
  CK_MECHANISM derive = {CKM_ECDH1_DERIVE, &dp, sizeof dp};
  CK_OBJECT_HANDLE dk = 0;
  memset(&res, 0, sizeof res);
  RV(f->C_DeriveKey(as, &derive, hpriv, NULL, 0, &dk), CKR_PENDING);
  RV(complete(as, "C_DeriveKey", &res), CKR_OK);
  CHECK(res.hObject != 0 && dk == 0, "derive result");

  /* Closing a session with pending work cancels it and returns CKR_OK. */
  RV(f->C_SignInit(as, &sign_mech, hpriv), CKR_OK);
  buflen = 64;
  RV(f->C_Sign(as, (CK_BYTE_PTR) "x", 1, buf, &buflen), CKR_PENDING);
  RV(f->C_CloseSession(as), CKR_OK);
  RV(f->C_AsyncComplete(as, (CK_UTF8CHAR_PTR) "C_Sign", &res), CKR_SESSION_HANDLE_INVALID);

  /* C_Finalize with pending work returns promptly. */
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &as), CKR_OK);
  RV(f->C_SignInit(as, &sign_mech, hpriv), CKR_OK);
  buflen = 64;
  RV(f->C_Sign(as, (CK_BYTE_PTR) "x", 1, buf, &buflen), CKR_PENDING);
  RV(f->C_Finalize(NULL), CKR_OK);
  free(buf);
  if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
  printf("async_test: all checks passed\n");
  return 0;
}
