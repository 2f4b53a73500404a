/* ML-DSA and ML-KEM through the module on a TPM of the v1.85 specification
 * (the PQC test TPM, fwtpm_server). ML-DSA-44/65/87 key pairs made by
 * C_GenerateKeyPair sign with CKM_ML_DSA (and a CK_SIGN_ADDITIONAL_CONTEXT);
 * pqctool (cloudflare/circl) verifies each signature from the exported
 * SubjectPublicKeyInfo and rejects a tampered message. ML-KEM-512/768/1024:
 * pqctool (Go's crypto/mlkem, circl for 512) encapsulates to the exported
 * public key; C_DecapsulateKey in the TPM gives its secret; C_EncapsulateKey
 * and C_DecapsulateKey agree. The mechanisms are listed with their sizes.
 * Usage: pqc_test module.so workdir pqctool */
#include <stdarg.h>
#include "setup.h"

#define D(name, value) static const CK_ULONG name = value
D(K_CKM_ML_KEM_GEN, 0x0fUL);
D(K_CKM_ML_KEM, 0x17UL);
D(K_CKM_ML_DSA_GEN, 0x1cUL);
D(K_CKM_ML_DSA, 0x1dUL);
D(K_CKA_PARAMETER_SET, 0x61dUL);
D(K_CKA_PUBLIC_KEY_INFO, 0x129UL);
D(K_CKA_SIGN, 0x108UL);
D(K_CKR_DATA_LEN_RANGE, 0x21UL);
D(K_CKR_MECHANISM_PARAM_INVALID, 0x71UL);
D(K_CKF_DECAPSULATE, 0x20000000UL);

typedef struct {
  CK_ULONG hedgeVariant;
  CK_BYTE_PTR pContext;
  CK_ULONG ulContextLen;
} SIGN_ADDITIONAL_CONTEXT;

static CK_FUNCTION_LIST_3_2 *f;
static const char *dir, *tool;

static int sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(cmd, sizeof cmd, "cd '%s' && '%s' ", dir, tool);
  vsnprintf(cmd + n, sizeof cmd - n, fmt, ap);
  va_end(ap);
  return system(cmd);
}

static size_t rd(const char *name, CK_BYTE *buf, size_t cap) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *fp = fopen(path, "rb");
  if (!fp) { perror(path); exit(1); }
  size_t n = fread(buf, 1, cap, fp);
  fclose(fp);
  return n;
}

static void wr(const char *name, const CK_BYTE *buf, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *fp = fopen(path, "wb");
  if (!fp || fwrite(buf, 1, n, fp) != n) { perror(path); exit(1); }
  fclose(fp);
}

static CK_BBOOL yes = 1, no = 0;

static void check_mechanisms(void) {
  CK_MECHANISM_INFO info;
  RV(f->C_GetMechanismInfo(0, K_CKM_ML_DSA_GEN, &info), CKR_OK);
  CHECK(info.ulMinKeySize == 1312 && info.ulMaxKeySize == 2592, "ML-DSA key sizes %lu-%lu", info.ulMinKeySize, info.ulMaxKeySize);
  RV(f->C_GetMechanismInfo(0, K_CKM_ML_KEM, &info), CKR_OK);
  CHECK(info.flags & K_CKF_DECAPSULATE, "CKM_ML_KEM flags 0x%lx", info.flags);
}

static void mldsa(CK_SESSION_HANDLE h, CK_ULONG ps, CK_ULONG siglen) {
  CK_MECHANISM gen = {K_CKM_ML_DSA_GEN, NULL, 0};
  CK_ATTRIBUTE pubt[] = {{K_CKA_PARAMETER_SET, &ps, sizeof ps}, {CKA_TOKEN, &yes, 1}};
  CK_ATTRIBUTE privt[] = {{CKA_TOKEN, &yes, 1}, {K_CKA_SIGN, &yes, 1}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 2, privt, 2, &pub, &priv), CKR_OK);
  CK_BYTE spki[4096];
  CK_ATTRIBUTE a = {K_CKA_PUBLIC_KEY_INFO, spki, sizeof spki};
  RV(f->C_GetAttributeValue(h, pub, &a, 1), CKR_OK);
  wr("mldsa.der", spki, a.ulValueLen);

  CK_BYTE msg[] = "signed through PKCS#11 by an ML-DSA key in the TPM";
  CK_BYTE ctx[] = "tpm11 C test";
  SIGN_ADDITIONAL_CONTEXT p = {0 /* CKH_HEDGE_PREFERRED */, ctx, sizeof ctx - 1};
  CK_MECHANISM m = {K_CKM_ML_DSA, &p, sizeof p};
  CK_BYTE sig[5000];
  CK_ULONG n = 0;
  RV(f->C_SignInit(h, &m, priv), CKR_OK);
  RV(f->C_Sign(h, msg, sizeof msg - 1, NULL, &n), CKR_OK);
  CHECK(n == siglen, "ML-DSA signature length %lu, want %lu", n, siglen);
  RV(f->C_Sign(h, msg, sizeof msg - 1, sig, &n), CKR_OK);
  wr("msg", msg, sizeof msg - 1);
  wr("ctx", ctx, sizeof ctx - 1);
  wr("sig", sig, n);
  CHECK(sh("verify mldsa.der msg ctx sig") == 0, "circl rejects the ML-DSA-%lu signature", ps);
  msg[0] ^= 1;
  wr("msg", msg, sizeof msg - 1);
  CHECK(sh("verify mldsa.der msg ctx sig 2>/dev/null") != 0, "circl accepts a tampered message");
  msg[0] ^= 1;
  /* The token's own verification (software) agrees. */
  RV(f->C_VerifyInit(h, &m, pub), CKR_OK);
  RV(f->C_Verify(h, msg, sizeof msg - 1, sig, n), CKR_OK);
  /* A context longer than 255 bytes is the caller's error. */
  CK_BYTE big[256] = {0};
  SIGN_ADDITIONAL_CONTEXT pb = {0, big, sizeof big};
  CK_MECHANISM mb = {K_CKM_ML_DSA, &pb, sizeof pb};
  RV(f->C_SignInit(h, &mb, priv), K_CKR_MECHANISM_PARAM_INVALID);
  /* More than the TPM takes in one sequence: CKR_DATA_LEN_RANGE. */
  static CK_BYTE huge[8192];
  CK_MECHANISM plain = {K_CKM_ML_DSA, NULL, 0};
  RV(f->C_SignInit(h, &plain, priv), CKR_OK);
  n = sizeof sig;
  RV(f->C_Sign(h, huge, sizeof huge, sig, &n), K_CKR_DATA_LEN_RANGE);
}

static CK_ULONG secret_class = CKO_SECRET_KEY, generic = CKK_GENERIC_SECRET;

static void mlkem(CK_SESSION_HANDLE h, CK_ULONG ps, CK_ULONG ctlen) {
  CK_MECHANISM gen = {K_CKM_ML_KEM_GEN, NULL, 0};
  CK_ATTRIBUTE pubt[] = {{K_CKA_PARAMETER_SET, &ps, sizeof ps}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 1, NULL, 0, &pub, &priv), CKR_OK);
  CK_BYTE spki[2048];
  CK_ATTRIBUTE a = {K_CKA_PUBLIC_KEY_INFO, spki, sizeof spki};
  RV(f->C_GetAttributeValue(h, pub, &a, 1), CKR_OK);
  wr("mlkem.der", spki, a.ulValueLen);
  CHECK(sh("encap mlkem.der ct ss") == 0, "pqctool could not encapsulate to the token's ML-KEM key");
  CK_BYTE ct[2048], ss[64], got[128];
  size_t cl = rd("ct", ct, sizeof ct);
  CHECK(rd("ss", ss, sizeof ss) == 32 && cl == ctlen, "ciphertext %zu bytes", cl);
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &generic, sizeof generic},
                      {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
  CK_MECHANISM m = {K_CKM_ML_KEM, NULL, 0};
  CK_OBJECT_HANDLE k = 0;
  RV(f->C_DecapsulateKey(h, &m, priv, t, 4, ct, cl, &k), CKR_OK);
  CK_ATTRIBUTE v = {CKA_VALUE, got, sizeof got};
  RV(f->C_GetAttributeValue(h, k, &v, 1), CKR_OK);
  CHECK(v.ulValueLen == 32 && memcmp(got, ss, 32) == 0, "ML-KEM-%lu: the TPM decapsulated Go's ciphertext to another secret", ps);
  /* C_EncapsulateKey (software) and C_DecapsulateKey (TPM) agree. */
  CK_ULONG n = 0;
  CK_OBJECT_HANDLE k1 = 0, k2 = 0;
  RV(f->C_EncapsulateKey(h, &m, pub, t, 4, NULL, &n, &k1), CKR_OK);
  CHECK(n == ctlen && k1 == 0, "length query: %lu bytes", n);
  RV(f->C_EncapsulateKey(h, &m, pub, t, 4, ct, &n, &k1), CKR_OK);
  RV(f->C_DecapsulateKey(h, &m, priv, t, 4, ct, n, &k2), CKR_OK);
  CK_BYTE g1[128], g2[128];
  CK_ATTRIBUTE v1 = {CKA_VALUE, g1, sizeof g1}, v2 = {CKA_VALUE, g2, sizeof g2};
  RV(f->C_GetAttributeValue(h, k1, &v1, 1), CKR_OK);
  RV(f->C_GetAttributeValue(h, k2, &v2, 1), CKR_OK);
  CHECK(v1.ulValueLen == 32 && v2.ulValueLen == 32 && memcmp(g1, g2, 32) == 0, "encapsulated and decapsulated secrets differ");
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: pqc_test module.so workdir pqctool\n");
    return 2;
  }
  dir = argv[2];
  tool = argv[3];
  f = load_module(argc, argv);
  CK_SESSION_HANDLE h = make_token(f);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  check_mechanisms();
  mldsa(h, 1, 2420);
  mldsa(h, 2, 3309);
  mldsa(h, 3, 4627);
  mlkem(h, 1, 768);
  mlkem(h, 2, 1088);
  mlkem(h, 3, 1568);
  RV(f->C_Finalize(NULL), CKR_OK);
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("pqc_test: all checks passed\n");
  return 0;
}
