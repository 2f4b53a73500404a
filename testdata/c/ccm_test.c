/* CKM_AES_CCM (C_Encrypt/C_Decrypt with CK_CCM_PARAMS) against OpenSSL's
 * libcrypto (EVP aes-128-ccm / aes-256-ccm), both ways: what the module
 * encrypts with an AES key in the TPM, OpenSSL opens; what OpenSSL seals,
 * the module decrypts. Every tag length, nonces of 7 and 13 bytes, with and
 * without AAD, one part and in parts; a flipped bit of ciphertext, tag or
 * AAD is CKR_ENCRYPTED_DATA_INVALID and the output buffer stays untouched.
 * On an async session (the runner's slow TPM) both pend and complete.
 * Usage: ccm_test module.so */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <time.h>
#include "setup.h"

#define K_CKM_AES_CCM 0x1088UL
#define K_CKK_AES 0x1FUL
#define K_CKA_ENCRYPT 0x104UL
#define K_CKA_DECRYPT 0x105UL
#define K_CKF_ENCRYPT 0x100UL
#define K_CKF_DECRYPT 0x200UL
#define K_CKR_ENCRYPTED_DATA_INVALID 0x040UL
#define K_CKR_DATA_LEN_RANGE 0x021UL
#define K_CKR_AEAD_DECRYPT_FAILED 0x042UL
#define K_CKR_BUFFER_TOO_SMALL 0x150UL
#ifndef CKR_FUNCTION_NOT_SUPPORTED
#define CKR_FUNCTION_NOT_SUPPORTED 0x054UL
#endif

static CK_FUNCTION_LIST_3_2 *f;
static void messages(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_BYTE *value);

static const EVP_CIPHER *ccm_cipher(size_t keylen) { return keylen == 16 ? EVP_aes_128_ccm() : EVP_aes_256_ccm(); }

/* ossl_seal is OpenSSL's CCM encryption: out = ciphertext || tag. */
static void ossl_seal(const CK_BYTE *key, size_t keylen, const CK_BYTE *nonce, int nl, const CK_BYTE *aad, int al,
                      const CK_BYTE *pt, int n, int tl, CK_BYTE *out) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int l, ok = EVP_EncryptInit_ex(c, ccm_cipher(keylen), NULL, NULL, NULL) &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, nl, NULL) &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, tl, NULL) && EVP_EncryptInit_ex(c, NULL, NULL, key, nonce) &&
              EVP_EncryptUpdate(c, NULL, &l, NULL, n) && (al == 0 || EVP_EncryptUpdate(c, NULL, &l, aad, al)) &&
              EVP_EncryptUpdate(c, out, &l, pt, n) && EVP_EncryptFinal_ex(c, out + l, &l) &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, tl, out + n);
  EVP_CIPHER_CTX_free(c);
  if (!ok) { fprintf(stderr, "openssl CCM encryption failed\n"); exit(1); }
}

/* ossl_open is OpenSSL's CCM decryption of ct || tag: 1 if the tag holds. */
static int ossl_open(const CK_BYTE *key, size_t keylen, const CK_BYTE *nonce, int nl, const CK_BYTE *aad, int al,
                     const CK_BYTE *in, int n, int tl, CK_BYTE *pt) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int l, ok = EVP_DecryptInit_ex(c, ccm_cipher(keylen), NULL, NULL, NULL) &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, nl, NULL) &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, tl, (void *)(in + n)) &&
              EVP_DecryptInit_ex(c, NULL, NULL, key, nonce) && EVP_DecryptUpdate(c, NULL, &l, NULL, n) &&
              (al == 0 || EVP_DecryptUpdate(c, NULL, &l, aad, al)) && EVP_DecryptUpdate(c, pt, &l, in, n) > 0;
  EVP_CIPHER_CTX_free(c);
  return ok;
}

static CK_RV complete(CK_SESSION_HANDLE h, const char *fn, CK_ASYNC_DATA *res) {
  for (int i = 0; i < 30000; i++) { /* 60 s at most: only a hang reaches it */
    CK_RV r = f->C_AsyncComplete(h, (CK_UTF8CHAR_PTR)fn, res);
    if (r != CKR_PENDING) return r;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  return CKR_PENDING;
}

static CK_OBJECT_HANDLE import_aes(CK_SESSION_HANDLE h, CK_BYTE *value, CK_ULONG len) {
  CK_ULONG cls = CKO_SECRET_KEY, kt = K_CKK_AES;
  CK_BBOOL yes = 1;
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_KEY_TYPE, &kt, sizeof kt}, {CKA_VALUE, value, len},
                      {K_CKA_ENCRYPT, &yes, 1}, {K_CKA_DECRYPT, &yes, 1}};
  CK_OBJECT_HANDLE k = 0;
  RV(f->C_CreateObject(h, t, 5, &k), CKR_OK);
  return k;
}

enum { MAXN = 2100 };

/* both_ways runs tag lengths from mintag to 16. */
static void both_ways(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_BYTE *value, size_t keylen, int mintag) {
  static CK_BYTE pt[MAXN], ct[MAXN + 16], got[MAXN + 16], ref[MAXN + 16], aad[40], nonce[13];
  int lens[] = {1, 37, MAXN};
  for (int tl = mintag; tl <= 16; tl += 2) {
    for (int i = 0; i < 3; i++) {
      int n = lens[i], nl = (tl / 2) % 2 ? 7 : 13, al = i == 1 ? 0 : (int)sizeof aad;
      RAND_bytes(pt, n);
      RAND_bytes(aad, sizeof aad);
      RAND_bytes(nonce, nl);
      CK_CCM_PARAMS p = {(CK_ULONG)n, nonce, (CK_ULONG)nl, al ? aad : NULL, (CK_ULONG)al, (CK_ULONG)tl};
      CK_MECHANISM m = {K_CKM_AES_CCM, &p, sizeof p};

      /* The module encrypts (length query first); OpenSSL opens. */
      RV(f->C_EncryptInit(h, &m, key), CKR_OK);
      CK_ULONG cl = 0;
      RV(f->C_Encrypt(h, pt, n, NULL, &cl), CKR_OK);
      CHECK(cl == (CK_ULONG)(n + tl), "length query %lu, want %d", cl, n + tl);
      RV(f->C_Encrypt(h, pt, n, ct, &cl), CKR_OK);
      CHECK(cl == (CK_ULONG)(n + tl), "ciphertext of %lu bytes", cl);
      CHECK(ossl_open(value, keylen, nonce, nl, aad, al, ct, n, tl, got) && memcmp(got, pt, n) == 0,
            "openssl does not open the module's CCM (tag %d, nonce %d, aad %d, data %d)", tl, nl, al, n);

      /* In parts: the same ciphertext and tag. */
      RV(f->C_EncryptInit(h, &m, key), CKR_OK);
      CK_ULONG ul = sizeof got;
      RV(f->C_EncryptUpdate(h, pt, n / 2, got, &ul), CKR_OK);
      CHECK(ul == 0, "an update returned %lu bytes", ul);
      ul = sizeof got;
      RV(f->C_EncryptUpdate(h, pt + n / 2, n - n / 2, got, &ul), CKR_OK);
      ul = sizeof got;
      RV(f->C_EncryptFinal(h, got, &ul), CKR_OK);
      CHECK(ul == cl && memcmp(got, ct, cl) == 0, "multi-part CCM differs");

      /* OpenSSL seals; the module decrypts. */
      ossl_seal(value, keylen, nonce, nl, aad, al, pt, n, tl, ref);
      RV(f->C_DecryptInit(h, &m, key), CKR_OK);
      CK_ULONG pl = 0;
      RV(f->C_Decrypt(h, ref, n + tl, NULL, &pl), CKR_OK);
      CHECK(pl == (CK_ULONG)n, "decrypt length query %lu", pl);
      RV(f->C_Decrypt(h, ref, n + tl, got, &pl), CKR_OK);
      CHECK(pl == (CK_ULONG)n && memcmp(got, pt, n) == 0, "the module does not decrypt openssl's CCM");

      /* A flipped bit of ciphertext, of tag, of AAD: no plaintext. */
      for (int which = 0; which < 3; which++) {
        if (which == 2 && al == 0) continue;
        CK_BYTE saved_aad = aad[5];
        if (which == 0) ref[n / 2] ^= 0x10;
        if (which == 1) ref[n + tl - 1] ^= 0x01;
        if (which == 2) aad[5] ^= 0x04;
        CHECK(!ossl_open(value, keylen, nonce, nl, aad, al, ref, n, tl, ct), "openssl opened a tampered message");
        RV(f->C_DecryptInit(h, &m, key), CKR_OK);
        memset(got, 0xA5, sizeof got);
        pl = sizeof got;
        RV(f->C_Decrypt(h, ref, n + tl, got, &pl), K_CKR_ENCRYPTED_DATA_INVALID);
        int untouched = 1;
        for (size_t j = 0; j < sizeof got; j++) untouched &= got[j] == 0xA5;
        CHECK(untouched, "plaintext written for a tampered message (%d)", which);
        if (which == 0) ref[n / 2] ^= 0x10;
        if (which == 1) ref[n + tl - 1] ^= 0x01;
        aad[5] = saved_aad;
      }
    }
  }
  /* The data length the parameters fix; a wrong-size parameter. */
  CK_CCM_PARAMS p = {10, nonce, 12, NULL, 0, 16};
  CK_MECHANISM m = {K_CKM_AES_CCM, &p, sizeof p};
  RV(f->C_EncryptInit(h, &m, key), CKR_OK);
  CK_ULONG cl = sizeof ct;
  RV(f->C_Encrypt(h, pt, 11, ct, &cl), K_CKR_DATA_LEN_RANGE);
  p.ulMACLen = 5;
  RV(f->C_EncryptInit(h, &m, key), CKR_MECHANISM_PARAM_INVALID);
  p.ulMACLen = 16;
  m.ulParameterLen = sizeof p - 1;
  RV(f->C_EncryptInit(h, &m, key), CKR_MECHANISM_PARAM_INVALID);
  /* A buffer too small keeps the operation; the right one then works. */
  m.ulParameterLen = sizeof p;
  RV(f->C_EncryptInit(h, &m, key), CKR_OK);
  cl = 25;
  RV(f->C_Encrypt(h, pt, 10, ct, &cl), K_CKR_BUFFER_TOO_SMALL);
  CHECK(cl == 26, "too small: %lu", cl);
  RV(f->C_Encrypt(h, pt, 10, ct, &cl), CKR_OK);
  CHECK(ossl_open(value, keylen, nonce, 12, NULL, 0, ct, 10, 16, got) && memcmp(got, pt, 10) == 0, "after too small");
}

/* On an async session (the slow TPM) C_Encrypt and C_Decrypt pend, and
 * complete into the caller's buffers; a tampered one completes with
 * CKR_ENCRYPTED_DATA_INVALID and nothing written. */
static void async(CK_OBJECT_HANDLE key, CK_BYTE *value) {
  CK_SESSION_HANDLE as;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &as), CKR_OK);
  static CK_BYTE pt[1500], ct[1516], got[1516], nonce[11] = {1, 2, 3}, aad[7] = {4, 5, 6};
  RAND_bytes(pt, sizeof pt);
  CK_CCM_PARAMS p = {sizeof pt, nonce, sizeof nonce, aad, sizeof aad, 16};
  CK_MECHANISM m = {K_CKM_AES_CCM, &p, sizeof p};
  CK_ASYNC_DATA res;
  RV(f->C_EncryptInit(as, &m, key), CKR_OK);
  CK_ULONG cl = sizeof ct;
  RV(f->C_Encrypt(as, pt, sizeof pt, ct, &cl), CKR_PENDING);
  memset(&res, 0, sizeof res);
  RV(complete(as, "C_Encrypt", &res), CKR_OK);
  CHECK(res.pValue == ct && res.ulValue == sizeof ct, "async encrypt result %p %lu", (void *)res.pValue, res.ulValue);
  CHECK(ossl_open(value, 16, nonce, sizeof nonce, aad, sizeof aad, ct, sizeof pt, 16, got) &&
            memcmp(got, pt, sizeof pt) == 0, "openssl does not open the async CCM");
  RV(f->C_DecryptInit(as, &m, key), CKR_OK);
  CK_ULONG pl = sizeof got;
  RV(f->C_Decrypt(as, ct, sizeof ct, got, &pl), CKR_PENDING);
  memset(&res, 0, sizeof res);
  RV(complete(as, "C_Decrypt", &res), CKR_OK);
  CHECK(res.pValue == got && res.ulValue == sizeof pt && memcmp(got, pt, sizeof pt) == 0, "async decrypt result");
  ct[3] ^= 1;
  memset(got, 0xA5, sizeof got);
  RV(f->C_DecryptInit(as, &m, key), CKR_OK);
  pl = sizeof got;
  RV(f->C_Decrypt(as, ct, sizeof ct, got, &pl), CKR_PENDING);
  RV(complete(as, "C_Decrypt", &res), K_CKR_ENCRYPTED_DATA_INVALID);
  int untouched = 1;
  for (size_t j = 0; j < sizeof got; j++) untouched &= got[j] == 0xA5;
  CHECK(untouched, "async: plaintext written for a tampered message");
  messages(as, key, value);
  RV(f->C_CloseSession(as), CKR_OK);
}

/* Message-based CCM (one call per message) against OpenSSL: the nonce the
 * counter makes and the MAC come back in CK_CCM_MESSAGE_PARAMS; on an
 * async session the calls complete at once (no CKR_PENDING: the
 * parameter's outputs could not reach the caller later). */
static void messages(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_BYTE *value) {
  CK_MECHANISM m = {K_CKM_AES_CCM, NULL, 0};
  static CK_BYTE pt[300], ct[300], got[300], aad[20], nonce[12], mac[16];
  RAND_bytes(pt, sizeof pt);
  RAND_bytes(aad, sizeof aad);
  RV(f->C_MessageEncryptInit(h, &m, key), CKR_OK);
  /* A message parameter given to the init too is accepted (not used). */
  CK_CCM_MESSAGE_PARAMS ip = {0, nonce, sizeof nonce, 0, 0, mac, 16};
  CK_MECHANISM mp = {K_CKM_AES_CCM, &ip, sizeof ip};
  RV(f->C_MessageDecryptInit(h, &mp, key), CKR_OK);
  for (int i = 0; i < 3; i++) {
    memset(nonce, 0x5C, sizeof nonce);
    CK_CCM_MESSAGE_PARAMS p = {sizeof pt, nonce, sizeof nonce, 32, 2 /* CKG_GENERATE_COUNTER */, mac, 16};
    CK_ULONG cl = 0;
    RV(f->C_EncryptMessage(h, &p, sizeof p, aad, sizeof aad, pt, sizeof pt, NULL, &cl), CKR_OK);
    CHECK(cl == sizeof pt, "message length query %lu", cl);
    RV(f->C_EncryptMessage(h, &p, sizeof p, aad, sizeof aad, pt, sizeof pt, ct, &cl), CKR_OK);
    CK_BYTE want[12] = {0x5C, 0x5C, 0x5C, 0x5C, 0, 0, 0, 0, 0, 0, 0, (CK_BYTE)i};
    CHECK(memcmp(nonce, want, 12) == 0, "counter nonce %d not fixed bits + %d", i, i);
    CK_BYTE sealed[316];
    memcpy(sealed, ct, sizeof pt);
    memcpy(sealed + sizeof pt, mac, 16);
    CHECK(ossl_open(value, 16, nonce, 12, aad, sizeof aad, sealed, sizeof pt, 16, got) && memcmp(got, pt, sizeof pt) == 0,
          "openssl does not open message %d", i);
    /* OpenSSL seals, the module opens; a flipped MAC bit is refused and
     * the context stays for the next message. */
    ossl_seal(value, 16, nonce, 12, aad, sizeof aad, pt, sizeof pt, 16, sealed);
    memcpy(mac, sealed + sizeof pt, 16);
    CK_CCM_MESSAGE_PARAMS d = {sizeof pt, nonce, sizeof nonce, 0, 0, mac, 16};
    CK_ULONG pl = sizeof got;
    RV(f->C_DecryptMessage(h, &d, sizeof d, aad, sizeof aad, sealed, sizeof pt, got, &pl), CKR_OK);
    CHECK(pl == sizeof pt && memcmp(got, pt, sizeof pt) == 0, "the module does not open openssl's message");
    mac[i] ^= 1;
    memset(got, 0xA5, sizeof got);
    pl = sizeof got;
    RV(f->C_DecryptMessage(h, &d, sizeof d, aad, sizeof aad, sealed, sizeof pt, got, &pl), K_CKR_AEAD_DECRYPT_FAILED);
    CHECK(got[0] == 0xA5 && got[sizeof got - 1] == 0xA5, "plaintext written for a tampered message");
  }
  /* A message in parts: the nonce after Begin, nothing before the last
   * part, then all of it and the MAC. */
  CK_CCM_MESSAGE_PARAMS p = {sizeof pt, nonce, sizeof nonce, 0, 1 /* CKG_GENERATE */, mac, 16};
  RV(f->C_EncryptMessageBegin(h, &p, sizeof p, aad, sizeof aad), CKR_OK);
  CK_ULONG cl = sizeof ct;
  RV(f->C_EncryptMessageNext(h, &p, sizeof p, pt, 100, ct, &cl, 0), CKR_OK);
  CHECK(cl == 0, "a middle part returned %lu bytes", cl);
  cl = sizeof ct;
  RV(f->C_EncryptMessageNext(h, &p, sizeof p, pt + 100, sizeof pt - 100, ct, &cl, 1 /* CKF_END_OF_MESSAGE */), CKR_OK);
  CHECK(cl == sizeof pt, "the last part returned %lu bytes", cl);
  CK_BYTE sealed[316];
  memcpy(sealed, ct, sizeof pt);
  memcpy(sealed + sizeof pt, mac, 16);
  CHECK(ossl_open(value, 16, nonce, 12, aad, sizeof aad, sealed, sizeof pt, 16, got) && memcmp(got, pt, sizeof pt) == 0,
        "openssl does not open the message made in parts");
  CK_CCM_MESSAGE_PARAMS d = {sizeof pt, nonce, sizeof nonce, 0, 0, mac, 16};
  RV(f->C_DecryptMessageBegin(h, &d, sizeof d, aad, sizeof aad), CKR_OK);
  CK_ULONG pl = sizeof got;
  RV(f->C_DecryptMessageNext(h, &d, sizeof d, sealed, 150, got, &pl, 0), CKR_OK);
  CHECK(pl == 0, "plaintext before the last part");
  pl = sizeof got;
  RV(f->C_DecryptMessageNext(h, &d, sizeof d, sealed + 150, sizeof pt - 150, got, &pl, 1), CKR_OK);
  CHECK(pl == sizeof pt && memcmp(got, pt, sizeof pt) == 0, "the module does not open in parts");
  RV(f->C_EncryptMessage(h, &p, sizeof p - 1, aad, sizeof aad, pt, sizeof pt, ct, &(CK_ULONG){sizeof ct}),
     CKR_MECHANISM_PARAM_INVALID);
  RV(f->C_MessageEncryptFinal(h), CKR_OK);
  RV(f->C_MessageDecryptFinal(h), CKR_OK);
  RV(f->C_MessageEncryptFinal(h), CKR_OPERATION_NOT_INITIALIZED);
}

int main(int argc, char **argv) {
  f = load_module(argc, argv);
  CK_SESSION_HANDLE h = make_token(f);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  CK_MECHANISM_INFO info;
  RV(f->C_GetMechanismInfo(0, K_CKM_AES_CCM, &info), CKR_OK);
  CHECK((info.flags & (K_CKF_ENCRYPT | K_CKF_DECRYPT)) == (K_CKF_ENCRYPT | K_CKF_DECRYPT) && info.ulMinKeySize == 16,
        "CKM_AES_CCM info: flags 0x%lx, min %lu", info.flags, info.ulMinKeySize);
  CK_BYTE k128[16], k256[32];
  RAND_bytes(k128, sizeof k128);
  RAND_bytes(k256, sizeof k256);
  CK_OBJECT_HANDLE key128 = import_aes(h, k128, sizeof k128), key256 = import_aes(h, k256, sizeof k256);
  both_ways(h, key128, k128, sizeof k128, 4);
  both_ways(h, key256, k256, sizeof k256, 14); /* each command is 20 ms late: the rest once */
  messages(h, key128, k128);
  async(key128, k128);
  RV(f->C_Finalize(NULL), CKR_OK);
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("ccm_test: all checks passed\n");
  return 0;
}
