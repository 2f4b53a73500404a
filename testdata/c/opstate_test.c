/* The operation state rules of PKCS#11 (§5.2 and the function
 * descriptions) through libtpm11.so, for digest, sign, verify, encrypt and
 * decrypt: what ends an operation, single-part vs multi-part, CK_ULONG
 * lengths, RSA decryption into a buffer of the plaintext's size, attacker
 * ciphertexts, and the async output buffer race; a mechanism on a key of
 * the wrong type at every *Init; the token's flags. */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "setup.h"

#define D(name, value) static const CK_ULONG name = value
D(K_CKM_SHA256, 0x250UL);
D(K_CKM_ECDSA, 0x1041UL);
D(K_CKM_ECDSA_SHA256, 0x1044UL);
D(K_CKM_EC_GEN, 0x1040UL);
D(K_CKM_RSA_GEN, 0x0UL);
D(K_CKM_RSA_PKCS, 0x1UL);
D(K_CKA_MODULUS_BITS, 0x121UL);
D(K_CKA_DECRYPT, 0x105UL);
D(K_CKA_ENCRYPT, 0x104UL);
D(K_CKR_FUNCTION_NOT_SUPPORTED, 0x054UL);
D(K_CKR_ENCRYPTED_DATA_INVALID, 0x040UL);
D(K_CKR_BUFFER_TOO_SMALL, 0x150UL);
D(K_CKR_KEY_TYPE_INCONSISTENT, 0x063UL);
D(K_CKM_AES_ECB, 0x1081UL);
D(K_CKM_AES_CBC, 0x1082UL);
D(K_CKM_RSA_X_509, 0x3UL);
D(K_CKM_RSA_PKCS_OAEP, 0x9UL);
D(K_CKM_SHA256_RSA_PKCS, 0x40UL);
D(K_CKF_DUAL_CRYPTO_OPERATIONS, 0x200UL);

static CK_FUNCTION_LIST_3_2 *f;
static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const CK_BYTE sha256_ab[32] = {0xfb, 0x8e, 0x20, 0xfc, 0x2e, 0x4c, 0x3f, 0x24, 0x8c, 0x60, 0xc3, 0x9b, 0xd6, 0x52, 0xf3, 0xc1,
                                      0x34, 0x72, 0x98, 0xbb, 0x97, 0x7b, 0x8b, 0x4d, 0x59, 0x03, 0xb8, 0x50, 0x55, 0x62, 0x06, 0x03};

static void test_digest(CK_SESSION_HANDLE h) {
  CK_MECHANISM sha = {K_CKM_SHA256, NULL, 0};
  CK_BYTE out[32];
  CK_ULONG n = sizeof out;
  /* Bad arguments end the operation. */
  RV(f->C_DigestInit(h, &sha), CKR_OK);
  RV(f->C_Digest(h, NULL, 5, out, &n), CKR_ARGUMENTS_BAD);
  RV(f->C_DigestUpdate(h, (CK_BYTE_PTR) "ab", 2), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_DigestInit(h, &sha), CKR_OK);
  RV(f->C_Digest(h, (CK_BYTE_PTR) "ab", 2, out, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_DigestFinal(h, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  /* After an update the single-part call is refused, and (§5.2: it did
   * not return CKR_OK, CKR_BUFFER_TOO_SMALL or a length) that ends the
   * operation. A length query is refused the same way. */
  RV(f->C_DigestInit(h, &sha), CKR_OK);
  RV(f->C_DigestUpdate(h, (CK_BYTE_PTR) "a", 1), CKR_OK);
  RV(f->C_Digest(h, (CK_BYTE_PTR) "b", 1, out, &n), CKR_OPERATION_ACTIVE);
  RV(f->C_DigestFinal(h, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_DigestInit(h, &sha), CKR_OK);
  RV(f->C_DigestUpdate(h, (CK_BYTE_PTR) "a", 1), CKR_OK);
  RV(f->C_Digest(h, (CK_BYTE_PTR) "b", 1, NULL, &n), CKR_OPERATION_ACTIVE);
  RV(f->C_DigestUpdate(h, (CK_BYTE_PTR) "b", 1), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_DigestInit(h, &sha), CKR_OK);
  RV(f->C_DigestUpdate(h, (CK_BYTE_PTR) "a", 1), CKR_OK);
  RV(f->C_DigestUpdate(h, (CK_BYTE_PTR) "b", 1), CKR_OK);
  n = sizeof out;
  RV(f->C_DigestFinal(h, out, &n), CKR_OK);
  CHECK(n == 32 && memcmp(out, sha256_ab, 32) == 0, "multi-part digest of \"ab\"");
  /* A length query and a too-small buffer keep the operation. */
  RV(f->C_DigestInit(h, &sha), CKR_OK);
  n = 0;
  RV(f->C_Digest(h, (CK_BYTE_PTR) "ab", 2, NULL, &n), CKR_OK);
  CHECK(n == 32, "digest length %lu", n);
  n = 31;
  RV(f->C_Digest(h, (CK_BYTE_PTR) "ab", 2, out, &n), K_CKR_BUFFER_TOO_SMALL);
  CHECK(n == 32, "too small gave %lu", n);
  /* CK_ULONG lengths: a huge length with a big-enough buffer is fine. */
  n = (CK_ULONG)-1;
  RV(f->C_Digest(h, (CK_BYTE_PTR) "ab", 2, out, &n), CKR_OK);
  CHECK(n == 32 && memcmp(out, sha256_ab, 32) == 0, "one-shot digest of \"ab\"");
  /* After a single-part length query, the final part is refused (and the
   * operation ends: pkcs11-tool starts anew with *Init after it). */
  RV(f->C_DigestInit(h, &sha), CKR_OK);
  RV(f->C_Digest(h, (CK_BYTE_PTR) "ab", 2, NULL, &n), CKR_OK);
  RV(f->C_DigestFinal(h, out, &n), CKR_OPERATION_ACTIVE);
  RV(f->C_DigestInit(h, &sha), CKR_OK);
  RV(f->C_DigestFinal(h, out, &n), CKR_OK);
}

static void test_sign(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub) {
  CK_MECHANISM ecdsa = {K_CKM_ECDSA, NULL, 0}, sha = {K_CKM_ECDSA_SHA256, NULL, 0};
  CK_BYTE sig[64], digest[32] = {1, 2, 3};
  CK_ULONG n = sizeof sig;
  /* Raw ECDSA has no multi-part form. */
  RV(f->C_SignInit(h, &ecdsa, priv), CKR_OK);
  RV(f->C_SignUpdate(h, digest, 32), K_CKR_FUNCTION_NOT_SUPPORTED);
  RV(f->C_SignFinal(h, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_VerifyInit(h, &ecdsa, pub), CKR_OK);
  RV(f->C_VerifyUpdate(h, digest, 32), K_CKR_FUNCTION_NOT_SUPPORTED);
  RV(f->C_VerifyFinal(h, sig, 64), CKR_OPERATION_NOT_INITIALIZED);
  /* Bad arguments end C_Sign and C_Verify. */
  RV(f->C_SignInit(h, &sha, priv), CKR_OK);
  RV(f->C_Sign(h, (CK_BYTE_PTR) "m", 1, sig, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_Sign(h, (CK_BYTE_PTR) "m", 1, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_VerifyInit(h, &sha, pub), CKR_OK);
  RV(f->C_Verify(h, (CK_BYTE_PTR) "m", 1, NULL, 64), CKR_ARGUMENTS_BAD);
  RV(f->C_VerifyUpdate(h, (CK_BYTE_PTR) "m", 1), CKR_OPERATION_NOT_INITIALIZED);
  /* Single-part after update refused, and that ends the operation. */
  RV(f->C_SignInit(h, &sha, priv), CKR_OK);
  RV(f->C_SignUpdate(h, (CK_BYTE_PTR) "m", 1), CKR_OK);
  RV(f->C_Sign(h, (CK_BYTE_PTR) "m", 1, sig, &n), CKR_OPERATION_ACTIVE);
  RV(f->C_SignFinal(h, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_VerifyInit(h, &sha, pub), CKR_OK);
  RV(f->C_VerifyUpdate(h, (CK_BYTE_PTR) "m", 1), CKR_OK);
  RV(f->C_Verify(h, (CK_BYTE_PTR) "m", 1, sig, 64), CKR_OPERATION_ACTIVE);
  RV(f->C_VerifyFinal(h, sig, 64), CKR_OPERATION_NOT_INITIALIZED);
  /* Multi-part; a huge length works. */
  RV(f->C_SignInit(h, &sha, priv), CKR_OK);
  RV(f->C_SignUpdate(h, (CK_BYTE_PTR) "m", 1), CKR_OK);
  n = (CK_ULONG)-1;
  RV(f->C_SignFinal(h, sig, &n), CKR_OK);
  CHECK(n == 64, "signature length %lu", n);
  RV(f->C_VerifyInit(h, &sha, pub), CKR_OK);
  RV(f->C_VerifyUpdate(h, (CK_BYTE_PTR) "m", 1), CKR_OK);
  RV(f->C_VerifyFinal(h, sig, 64), CKR_OK);
  /* A failed verification ends the operation too. */
  RV(f->C_VerifyInit(h, &sha, pub), CKR_OK);
  RV(f->C_Verify(h, (CK_BYTE_PTR) "x", 1, sig, 64), CKR_SIGNATURE_INVALID);
  RV(f->C_VerifyFinal(h, sig, 64), CKR_OPERATION_NOT_INITIALIZED);
}

static CK_OBJECT_HANDLE rsa_pub, rsa_priv;

static void test_rsa_decrypt(CK_SESSION_HANDLE h) {
  CK_MECHANISM gen = {K_CKM_RSA_GEN, NULL, 0}, pkcs = {K_CKM_RSA_PKCS, NULL, 0};
  CK_ULONG bits = 2048;
  CK_BBOOL yes = 1;
  CK_ATTRIBUTE pubt[] = {{K_CKA_MODULUS_BITS, &bits, sizeof bits}, {K_CKA_ENCRYPT, &yes, 1}};
  CK_ATTRIBUTE privt[] = {{K_CKA_DECRYPT, &yes, 1}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 2, privt, 1, &pub, &priv), CKR_OK);
  rsa_pub = pub, rsa_priv = priv;
  CK_BYTE ct[256], pt[256];
  CK_ULONG n = sizeof ct;
  RV(f->C_EncryptInit(h, &pkcs, pub), CKR_OK);
  RV(f->C_Encrypt(h, (CK_BYTE_PTR) "hello", 5, ct, &n), CKR_OK);
  CHECK(n == 256, "RSA ciphertext length %lu", n);
  /* Raw RSA has no multi-part form. */
  RV(f->C_DecryptInit(h, &pkcs, priv), CKR_OK);
  n = sizeof pt;
  RV(f->C_DecryptUpdate(h, ct, 256, pt, &n), K_CKR_FUNCTION_NOT_SUPPORTED);
  RV(f->C_Decrypt(h, ct, 256, pt, &n), CKR_OPERATION_NOT_INITIALIZED);
  /* A buffer of exactly the plaintext's size is enough. */
  RV(f->C_DecryptInit(h, &pkcs, priv), CKR_OK);
  n = 5;
  RV(f->C_Decrypt(h, ct, 256, pt, &n), CKR_OK);
  CHECK(n == 5 && memcmp(pt, "hello", 5) == 0, "decrypt into a 5-byte buffer");
  /* Too small: the size needed, the operation kept, the result the same. */
  RV(f->C_DecryptInit(h, &pkcs, priv), CKR_OK);
  n = 3;
  RV(f->C_Decrypt(h, ct, 256, pt, &n), K_CKR_BUFFER_TOO_SMALL);
  CHECK(n == 5, "needed %lu", n);
  RV(f->C_Decrypt(h, ct, 256, pt, &n), CKR_OK);
  CHECK(n == 5 && memcmp(pt, "hello", 5) == 0, "decrypt after BUFFER_TOO_SMALL");
  /* A ciphertext >= the modulus is the caller's error, never the device's. */
  memset(ct, 0xff, sizeof ct);
  RV(f->C_DecryptInit(h, &pkcs, priv), CKR_OK);
  n = sizeof pt;
  RV(f->C_Decrypt(h, ct, 256, pt, &n), K_CKR_ENCRYPTED_DATA_INVALID);
  RV(f->C_Decrypt(h, ct, 256, pt, &n), CKR_OPERATION_NOT_INITIALIZED);
}

/* An AES key in the TPM: encryption and decryption in parts, then the
 * single-part call refused, which ends the operation. */
static CK_OBJECT_HANDLE aes_key(CK_SESSION_HANDLE h) {
  CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
  CK_ULONG len = 16;
  CK_BBOOL yes = 1;
  CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len, sizeof len}, {K_CKA_ENCRYPT, &yes, 1}, {K_CKA_DECRYPT, &yes, 1}};
  CK_OBJECT_HANDLE k = 0;
  RV(f->C_GenerateKey(h, &gen, t, 3, &k), CKR_OK);
  return k;
}

static void test_cipher_forms(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE aes) {
  CK_BYTE iv[16] = {0}, in[32] = {1, 2, 3}, out[64];
  CK_MECHANISM cbc = {K_CKM_AES_CBC, iv, sizeof iv};
  CK_ULONG n = sizeof out;
  RV(f->C_EncryptInit(h, &cbc, aes), CKR_OK);
  RV(f->C_EncryptUpdate(h, in, 16, out, &n), CKR_OK);
  n = sizeof out;
  RV(f->C_Encrypt(h, in, 16, out, &n), CKR_OPERATION_ACTIVE);
  n = sizeof out;
  RV(f->C_EncryptFinal(h, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  n = sizeof out;
  RV(f->C_DecryptInit(h, &cbc, aes), CKR_OK);
  RV(f->C_DecryptUpdate(h, in, 16, out, &n), CKR_OK);
  n = sizeof out;
  RV(f->C_Decrypt(h, in, 16, out, &n), CKR_OPERATION_ACTIVE);
  n = sizeof out;
  RV(f->C_DecryptFinal(h, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  /* Still usable after: a whole multi-part encryption. */
  n = sizeof out;
  RV(f->C_EncryptInit(h, &cbc, aes), CKR_OK);
  RV(f->C_EncryptUpdate(h, in, 32, out, &n), CKR_OK);
  CHECK(n == 32, "CBC update of 32 bytes gave %lu", n);
  n = sizeof out;
  RV(f->C_EncryptFinal(h, out, &n), CKR_OK);
  CHECK(n == 0, "CBC final gave %lu", n);
}

/* A mechanism the token offers for the function, on a key of another type:
 * CKR_KEY_TYPE_INCONSISTENT at every *Init (not CKR_MECHANISM_INVALID); the
 * operation is not started. */
static void test_key_type_mismatch(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE aes, CK_OBJECT_HANDLE ecpriv, CK_OBJECT_HANDLE ecpub,
                                   CK_OBJECT_HANDLE rsapriv, CK_OBJECT_HANDLE rsapub) {
  CK_BYTE iv[16] = {0}, sig[256] = {0};
  CK_MECHANISM rsa_pkcs = {K_CKM_RSA_PKCS, NULL, 0}, x509 = {K_CKM_RSA_X_509, NULL, 0}, ecb = {K_CKM_AES_ECB, NULL, 0},
               cbc = {K_CKM_AES_CBC, iv, sizeof iv}, ecdsa = {K_CKM_ECDSA, NULL, 0}, ecdsa256 = {K_CKM_ECDSA_SHA256, NULL, 0},
               hmac = {CKM_SHA256_HMAC, NULL, 0}, sha_rsa = {K_CKM_SHA256_RSA_PKCS, NULL, 0};
  CK_RSA_PKCS_OAEP_PARAMS op = {K_CKM_SHA256, 2 /* CKG_MGF1_SHA256 */, 1 /* CKZ_DATA_SPECIFIED */, NULL, 0};
  CK_MECHANISM oaep = {K_CKM_RSA_PKCS_OAEP, &op, sizeof op};
  const CK_ULONG bad = K_CKR_KEY_TYPE_INCONSISTENT;
  RV(f->C_EncryptInit(h, &rsa_pkcs, aes), bad);
  RV(f->C_EncryptInit(h, &oaep, aes), bad);
  RV(f->C_DecryptInit(h, &rsa_pkcs, aes), bad);
  RV(f->C_DecryptInit(h, &x509, aes), bad);
  RV(f->C_EncryptInit(h, &ecb, rsapub), bad);
  RV(f->C_EncryptInit(h, &cbc, rsapub), bad);
  RV(f->C_DecryptInit(h, &ecb, rsapriv), bad);
  RV(f->C_EncryptInit(h, &ecb, ecpub), bad);
  RV(f->C_DecryptInit(h, &rsa_pkcs, ecpriv), bad);
  RV(f->C_SignInit(h, &ecdsa, rsapriv), bad);
  RV(f->C_SignInit(h, &hmac, ecpriv), bad);
  RV(f->C_SignInit(h, &rsa_pkcs, ecpriv), bad);
  RV(f->C_SignInit(h, &sha_rsa, aes), bad);
  RV(f->C_VerifyInit(h, &ecdsa256, rsapub), bad);
  RV(f->C_VerifyInit(h, &hmac, ecpub), bad);
  RV(f->C_SignRecoverInit(h, &rsa_pkcs, ecpriv), bad);
  RV(f->C_VerifyRecoverInit(h, &rsa_pkcs, ecpub), bad);
  RV(f->C_MessageSignInit(h, &ecdsa, rsapriv), bad);
  RV(f->C_MessageVerifyInit(h, &ecdsa, rsapub), bad);
  RV(f->C_VerifySignatureInit(h, &ecdsa256, rsapub, sig, 64), bad);
  /* Nothing was started by the refusals. */
  CK_ULONG n = sizeof sig;
  RV(f->C_Encrypt(h, sig, 16, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_Sign(h, sig, 16, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
  /* A mechanism the token has for no such function stays invalid. */
  CK_MECHANISM digest = {K_CKM_SHA256, NULL, 0};
  RV(f->C_EncryptInit(h, &digest, aes), CKR_MECHANISM_INVALID);
  RV(f->C_SignRecoverInit(h, &ecdsa, ecpriv), CKR_MECHANISM_INVALID);
}

/* The token does the dual-function updates (C_DigestEncryptUpdate, ...). */
/* An *Init with a NULL mechanism ends the active operation of its kind
 * (PKCS#11 3.x, e.g. "C_SignInit can be called with pMechanism set to
 * NULL_PTR to terminate an active signature operation"): the next call of
 * it is CKR_OPERATION_NOT_INITIALIZED, a new *Init is accepted, and with
 * none active it is CKR_OK too. Other kinds' operations stay. */
static void test_null_mechanism_cancels(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub,
                                        CK_OBJECT_HANDLE aes) {
  CK_MECHANISM sha = {K_CKM_SHA256, NULL, 0}, esha = {K_CKM_ECDSA_SHA256, NULL, 0};
  CK_BYTE iv[16] = {0}, in[32] = {1, 2, 3}, out[128];
  CK_MECHANISM cbc = {K_CKM_AES_CBC, iv, sizeof iv};
  CK_ULONG n;
  RV(f->C_DigestInit(h, &sha), CKR_OK);
  RV(f->C_DigestUpdate(h, in, 4), CKR_OK);
  RV(f->C_SignInit(h, &esha, priv), CKR_OK);
  RV(f->C_SignUpdate(h, in, 4), CKR_OK);
  RV(f->C_DigestInit(h, NULL), CKR_OK);
  n = sizeof out;
  RV(f->C_DigestFinal(h, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_DigestInit(h, NULL), CKR_OK); /* none active */
  RV(f->C_SignUpdate(h, in, 4), CKR_OK); /* the signature goes on */
  RV(f->C_SignInit(h, NULL, priv), CKR_OK);
  n = sizeof out;
  RV(f->C_SignFinal(h, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_SignInit(h, &esha, priv), CKR_OK); /* accepted again */
  n = sizeof out;
  RV(f->C_Sign(h, in, 4, out, &n), CKR_OK);
  RV(f->C_VerifyInit(h, &esha, pub), CKR_OK);
  RV(f->C_VerifyInit(h, NULL, pub), CKR_OK);
  RV(f->C_VerifyFinal(h, out, n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_EncryptInit(h, &cbc, aes), CKR_OK);
  RV(f->C_EncryptInit(h, NULL, aes), CKR_OK);
  n = sizeof out;
  RV(f->C_Encrypt(h, in, 16, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_DecryptInit(h, &cbc, aes), CKR_OK);
  RV(f->C_DecryptInit(h, NULL, aes), CKR_OK);
  RV(f->C_DecryptInit(h, &cbc, aes), CKR_OK); /* not CKR_OPERATION_ACTIVE */
  RV(f->C_DecryptInit(h, NULL, aes), CKR_OK);
  /* A session that does not exist is still refused. */
  RV(f->C_SignInit(h + 1000, NULL, priv), CKR_SESSION_HANDLE_INVALID);
}

static void test_token_flags(void) {
  CK_TOKEN_INFO ti;
  RV(f->C_GetTokenInfo(0, &ti), CKR_OK);
  CHECK(ti.flags & K_CKF_DUAL_CRYPTO_OPERATIONS, "token flags 0x%lx lack CKF_DUAL_CRYPTO_OPERATIONS", ti.flags);
}

/* The async output buffer is known to the module before the job can
 * complete: a thread collecting results as fast as it can always finds the
 * signature in the caller's buffer. */
static CK_SESSION_HANDLE race_s, race_v;
static CK_OBJECT_HANDLE race_pub;
static volatile int race_stop, race_done, race_bad;

static void *collector(void *arg) {
  (void)arg;
  CK_MECHANISM sha = {K_CKM_ECDSA_SHA256, NULL, 0};
  while (!race_stop) {
    CK_ASYNC_DATA res = {0, NULL, 0, 0, 0};
    if (f->C_AsyncComplete(race_s, (CK_UTF8CHAR_PTR) "C_Sign", &res) != CKR_OK) {
      sched_yield();
      continue;
    }
    if (res.pValue == NULL || res.ulValue != 64 || f->C_VerifyInit(race_v, &sha, race_pub) != CKR_OK ||
        f->C_Verify(race_v, (CK_BYTE_PTR) "race", 4, res.pValue, 64) != CKR_OK)
      race_bad++;
    __atomic_add_fetch(&race_done, 1, __ATOMIC_SEQ_CST);
  }
  return NULL;
}

static void test_async_race(CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub) {
  CK_MECHANISM sha = {K_CKM_ECDSA_SHA256, NULL, 0};
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &race_s), CKR_OK);
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &race_v), CKR_OK);
  race_pub = pub;
  pthread_t t;
  pthread_create(&t, NULL, collector, NULL);
  int pended = 0;
  for (int i = 0; i < 200; i++) {
    CK_BYTE *buf = calloc(1, 64);
    CK_ULONG n = 64;
    RV(f->C_SignInit(race_s, &sha, priv), CKR_OK);
    int before = __atomic_load_n(&race_done, __ATOMIC_SEQ_CST);
    CK_RV r = f->C_Sign(race_s, (CK_BYTE_PTR) "race", 4, buf, &n);
    if (r == CKR_PENDING) {
      pended++;
      for (long spin = 0; __atomic_load_n(&race_done, __ATOMIC_SEQ_CST) == before && spin < 200000000L; spin++) sched_yield();
    } else {
      CHECK(r == CKR_OK, "C_Sign on an async session: 0x%lx", r);
    }
    free(buf);
  }
  race_stop = 1;
  pthread_join(t, NULL);
  CHECK(race_bad == 0, "%d of %d collected results were not in the caller's buffer", race_bad, race_done);
  CHECK(pended > 0, "no C_Sign pended");
  printf("opstate_test: %d of 200 async signs pended, all collected from their buffers\n", pended);
  f->C_CloseSession(race_s);
  f->C_CloseSession(race_v);
}

int main(int argc, char **argv) {
  f = load_module(argc, argv);
  CK_SESSION_HANDLE h = make_token(f);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  CK_MECHANISM gen = {K_CKM_EC_GEN, NULL, 0};
  CK_ATTRIBUTE pubt[] = {{CKA_EC_PARAMS, p256, sizeof p256}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 1, NULL, 0, &pub, &priv), CKR_OK);

  test_digest(h);
  test_sign(h, priv, pub);
  test_rsa_decrypt(h);
  CK_OBJECT_HANDLE aes = aes_key(h);
  test_cipher_forms(h, aes);
  test_key_type_mismatch(h, aes, priv, pub, rsa_priv, rsa_pub);
  test_null_mechanism_cancels(h, priv, pub, aes);
  test_token_flags();
  test_async_race(priv, pub);

  RV(f->C_Finalize(NULL), CKR_OK);
  if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
  printf("opstate_test: all checks passed\n");
  return 0;
}
