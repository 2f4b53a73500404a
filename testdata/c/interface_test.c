/* The rest of the 3.2 interface through libtpm11.so: sign/verify with
 * recovery, C_VerifySignature*, C_GetSessionValidationFlags, operation
 * state, C_DigestKey, a dual-function update, and C_WrapKey/C_UnwrapKey
 * (AES key wrap with a TPM key; the unwrapped key encrypts like the
 * wrapped one). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "setup.h"

static const CK_ULONG K_CKM_RSA_GEN = 0x0UL, K_CKM_RSA_PKCS = 0x1UL, K_CKM_SHA256_RSA_PKCS = 0x40UL,
                      K_CKM_AES_ECB = 0x1081UL, K_CKM_AES_KEY_WRAP = 0x2109UL, K_CKA_MODULUS_BITS = 0x121UL,
                      K_CKA_SIGN_RECOVER = 0x109UL, K_CKA_VERIFY_RECOVER = 0x10BUL, K_CKA_WRAP = 0x106UL,
                      K_CKA_UNWRAP = 0x107UL, K_CKA_ENCRYPT = 0x104UL, K_CKK_AES = 0x1FUL,
                      K_CKR_KEY_UNEXTRACTABLE = 0x06AUL, K_CKR_STATE_UNSAVEABLE = 0x180UL,
                      K_CKR_KEY_INDIGESTIBLE = 0x067UL, K_CKR_BUFFER_TOO_SMALL = 0x150UL;
static CK_FUNCTION_LIST_3_2 *f;

int main(int argc, char **argv) {
  f = load_module(argc, argv);
  CK_SESSION_HANDLE h = make_token(f);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  CK_BBOOL yes = 1, no = 0;

  /* Recovery with an RSA key. */
  CK_ULONG bits = 2048;
  CK_ATTRIBUTE pubt[] = {{K_CKA_MODULUS_BITS, &bits, sizeof bits}, {K_CKA_VERIFY_RECOVER, &yes, 1}};
  CK_ATTRIBUTE privt[] = {{K_CKA_SIGN_RECOVER, &yes, 1}};
  CK_MECHANISM gen = {K_CKM_RSA_GEN, NULL, 0}, pkcs = {K_CKM_RSA_PKCS, NULL, 0}, sha = {K_CKM_SHA256_RSA_PKCS, NULL, 0};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 2, privt, 1, &pub, &priv), CKR_OK);
  CK_BYTE sig[256], data[256];
  CK_ULONG n = 0;
  RV(f->C_SignRecoverInit(h, &pkcs, priv), CKR_OK);
  RV(f->C_SignRecover(h, (CK_BYTE_PTR) "recovered", 9, NULL, &n), CKR_OK);
  CHECK(n == 256, "sign-recover length %lu", n);
  RV(f->C_SignRecover(h, (CK_BYTE_PTR) "recovered", 9, sig, &n), CKR_OK);
  RV(f->C_VerifyRecoverInit(h, &pkcs, pub), CKR_OK);
  n = sizeof data;
  RV(f->C_VerifyRecover(h, sig, 256, data, &n), CKR_OK);
  CHECK(n == 9 && memcmp(data, "recovered", 9) == 0, "recovered data");

  /* C_VerifySignature: signature first, data in parts. */
  n = sizeof sig;
  RV(f->C_SignInit(h, &sha, priv), CKR_OK);
  RV(f->C_Sign(h, (CK_BYTE_PTR) "two parts", 9, sig, &n), CKR_OK);
  RV(f->C_VerifySignatureInit(h, &sha, pub, sig, n), CKR_OK);
  RV(f->C_VerifySignatureUpdate(h, (CK_BYTE_PTR) "two ", 4), CKR_OK);
  RV(f->C_VerifySignatureUpdate(h, (CK_BYTE_PTR) "parts", 5), CKR_OK);
  RV(f->C_VerifySignatureFinal(h), CKR_OK);
  RV(f->C_VerifySignatureInit(h, &sha, pub, sig, n), CKR_OK);
  RV(f->C_VerifySignature(h, (CK_BYTE_PTR) "tampered!", 9), CKR_SIGNATURE_INVALID);
  CK_FLAGS vf = 1;
  RV(f->C_GetSessionValidationFlags(h, 0, &vf), CKR_OK);
  CHECK(vf == 0, "validation flags %lu", vf);
  RV(f->C_GetSessionValidationFlags(h, 0, NULL), CKR_ARGUMENTS_BAD);

  /* Operation state: a digest moved to another session. */
  CK_MECHANISM sha256 = {CKM_SHA256, NULL, 0};
  RV(f->C_DigestInit(h, &sha256), CKR_OK);
  RV(f->C_DigestUpdate(h, (CK_BYTE_PTR) "a", 1), CKR_OK);
  CK_BYTE state[512];
  CK_ULONG sl = sizeof state;
  RV(f->C_GetOperationState(h, state, &sl), CKR_OK);
  CK_BYTE d1[32], d2[32];
  CK_ULONG dl = 32;
  RV(f->C_DigestFinal(h, d1, &dl), CKR_OK); /* the original goes on by itself */
  CK_SESSION_HANDLE h2;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h2), CKR_OK);
  RV(f->C_SetOperationState(h2, state, sl, 0, 0), CKR_OK);
  RV(f->C_DigestUpdate(h2, (CK_BYTE_PTR) "b", 1), CKR_OK);
  dl = 32;
  RV(f->C_DigestFinal(h2, d1, &dl), CKR_OK);
  RV(f->C_DigestInit(h2, &sha256), CKR_OK);
  dl = 32;
  RV(f->C_Digest(h2, (CK_BYTE_PTR) "ab", 2, d2, &dl), CKR_OK);
  CHECK(memcmp(d1, d2, 32) == 0, "restored digest differs");
  RV(f->C_SignInit(h2, &sha, priv), CKR_OK);
  sl = sizeof state;
  RV(f->C_GetOperationState(h2, state, &sl), K_CKR_STATE_UNSAVEABLE);

  /* AES key wrap with a TPM key; C_DigestKey; a dual-function update. */
  CK_ULONG len16 = 16, cls = CKO_SECRET_KEY, kt = K_CKK_AES;
  CK_MECHANISM agen = {CKM_AES_KEY_GEN, NULL, 0};
  CK_ATTRIBUTE kekt[] = {{CKA_VALUE_LEN, &len16, sizeof len16}, {K_CKA_WRAP, &yes, 1}, {K_CKA_UNWRAP, &yes, 1}};
  CK_ATTRIBUTE keyt[] = {{CKA_VALUE_LEN, &len16, sizeof len16}, {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}, {K_CKA_ENCRYPT, &yes, 1}};
  CK_OBJECT_HANDLE kek, key, fixed, back;
  RV(f->C_GenerateKey(h, &agen, kekt, 3, &kek), CKR_OK);
  RV(f->C_GenerateKey(h, &agen, keyt, 4, &key), CKR_OK);
  RV(f->C_GenerateKey(h, &agen, kekt, 1, &fixed), CKR_OK);
  CK_MECHANISM kw = {K_CKM_AES_KEY_WRAP, NULL, 0};
  CK_BYTE wrapped[64];
  CK_ULONG wl = 0;
  RV(f->C_WrapKey(h, &kw, kek, key, NULL, &wl), CKR_OK);
  CHECK(wl == 24, "wrapped length %lu", wl);
  wl = 8;
  RV(f->C_WrapKey(h, &kw, kek, key, wrapped, &wl), K_CKR_BUFFER_TOO_SMALL);
  RV(f->C_WrapKey(h, &kw, kek, key, wrapped, &wl), CKR_OK);
  wl = sizeof wrapped;
  RV(f->C_WrapKey(h, &kw, kek, fixed, wrapped + 32, &wl), K_CKR_KEY_UNEXTRACTABLE);
  CK_ATTRIBUTE ut[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_KEY_TYPE, &kt, sizeof kt}, {K_CKA_ENCRYPT, &yes, 1}};
  RV(f->C_UnwrapKey(h, &kw, kek, wrapped, 24, ut, 3, &back), CKR_OK);
  /* Issue 22 bug 1: unwrapped as readable, the key reads back as it went in
     (it read as zeros) and wraps again to the same bytes. */
  CK_ATTRIBUTE urt[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_KEY_TYPE, &kt, sizeof kt}, {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
  CK_OBJECT_HANDLE readable;
  RV(f->C_UnwrapKey(h, &kw, kek, wrapped, 24, urt, 4, &readable), CKR_OK);
  CK_BYTE v1[16], v2[16], rewrapped[24];
  CK_ATTRIBUTE gv1 = {CKA_VALUE, v1, 16}, gv2 = {CKA_VALUE, v2, 16};
  RV(f->C_GetAttributeValue(h, key, &gv1, 1), CKR_OK);
  RV(f->C_GetAttributeValue(h, readable, &gv2, 1), CKR_OK);
  CHECK(gv2.ulValueLen == 16 && memcmp(v1, v2, 16) == 0, "the unwrapped key reads back unlike the wrapped one");
  wl = sizeof rewrapped;
  RV(f->C_WrapKey(h, &kw, kek, readable, rewrapped, &wl), CKR_OK);
  CHECK(wl == 24 && memcmp(rewrapped, wrapped, 24) == 0, "wrapped again, the unwrapped key differs");
  CK_MECHANISM ecb = {K_CKM_AES_ECB, NULL, 0};
  CK_BYTE zero[16] = {0}, c1[16], c2[16];
  CK_ULONG cl = 16;
  RV(f->C_EncryptInit(h, &ecb, key), CKR_OK);
  RV(f->C_Encrypt(h, zero, 16, c1, &cl), CKR_OK);
  cl = 16;
  RV(f->C_EncryptInit(h, &ecb, back), CKR_OK);
  RV(f->C_Encrypt(h, zero, 16, c2, &cl), CKR_OK);
  CHECK(memcmp(c1, c2, 16) == 0, "the unwrapped key encrypts unlike the wrapped one");
  RV(f->C_DigestInit(h, &sha256), CKR_OK);
  RV(f->C_DigestKey(h, key), CKR_OK);
  dl = 32;
  RV(f->C_DigestFinal(h, d1, &dl), CKR_OK);
  RV(f->C_DigestInit(h, &sha256), CKR_OK);
  RV(f->C_DigestKey(h, back), K_CKR_KEY_INDIGESTIBLE);
  RV(f->C_DigestInit(h, &sha256), CKR_OK);
  RV(f->C_EncryptInit(h, &ecb, key), CKR_OK);
  CK_BYTE de[16];
  CK_ULONG del = 16;
  RV(f->C_DigestEncryptUpdate(h, zero, 16, de, &del), CKR_OK);
  CHECK(del == 16 && memcmp(de, c1, 16) == 0, "dual-function ciphertext");
  dl = 32;
  RV(f->C_DigestFinal(h, d2, &dl), CKR_OK);

  /* Message-based: two messages under one context, one in parts. */
  CK_MECHANISM msha = {K_CKM_SHA256_RSA_PKCS, NULL, 0};
  RV(f->C_MessageSignInit(h, &msha, priv), CKR_OK);
  RV(f->C_MessageVerifyInit(h, &msha, pub), CKR_OK);
  CK_BYTE ms[256];
  CK_ULONG msl = sizeof ms;
  RV(f->C_SignMessage(h, NULL, 0, (CK_BYTE_PTR) "one", 3, ms, &msl), CKR_OK);
  RV(f->C_VerifyMessage(h, NULL, 0, (CK_BYTE_PTR) "one", 3, ms, msl), CKR_OK);
  RV(f->C_SignMessageBegin(h, NULL, 0), CKR_OK);
  RV(f->C_SignMessageNext(h, NULL, 0, (CK_BYTE_PTR) "tw", 2, NULL, NULL), CKR_OK);
  msl = sizeof ms;
  RV(f->C_SignMessageNext(h, NULL, 0, (CK_BYTE_PTR) "o", 1, ms, &msl), CKR_OK);
  RV(f->C_VerifyMessage(h, NULL, 0, (CK_BYTE_PTR) "two", 3, ms, msl), CKR_OK);
  RV(f->C_VerifyMessage(h, NULL, 0, (CK_BYTE_PTR) "one", 3, ms, msl), CKR_SIGNATURE_INVALID);
  RV(f->C_MessageSignFinal(h), CKR_OK);
  RV(f->C_MessageVerifyFinal(h), CKR_OK);
  RV(f->C_SignMessage(h, NULL, 0, (CK_BYTE_PTR) "one", 3, ms, &msl), CKR_OPERATION_NOT_INITIALIZED);

  RV(f->C_Finalize(NULL), CKR_OK);
  if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
  printf("interface_test: all checks passed\n");
  return 0;
}
