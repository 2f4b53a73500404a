/* ML-DSA and ML-KEM through the module on a TPM of the v1.85 specification
 * (the PQC test TPM, fwtpm_server). ML-DSA-44/65/87 key pairs made by
 * C_GenerateKeyPair sign with CKM_ML_DSA (and a CK_SIGN_ADDITIONAL_CONTEXT);
 * pqctool (cloudflare/circl) verifies each signature from the exported
 * SubjectPublicKeyInfo and rejects a tampered message. HashML-DSA keys
 * (CKM_HASH_ML_DSA_SHA256/384, CKM_HASH_ML_DSA) are verified by
 * @noble/post-quantum (hashverify). ML-KEM-512/768/1024:
 * pqctool (Go's crypto/mlkem, circl for 512) encapsulates to the exported
 * public key; C_DecapsulateKey in the TPM gives its secret; C_EncapsulateKey
 * and C_DecapsulateKey agree. The mechanisms are listed with their sizes.
 * Usage: pqc_test module.so workdir pqctool hashverify */
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
D(K_CKM_HASH_ML_DSA, 0x1fUL);
D(K_CKM_HASH_ML_DSA_SHA256, 0x24UL);
D(K_CKM_HASH_ML_DSA_SHA384, 0x25UL);
D(K_CKM_SHA256, 0x250UL);
D(K_CKM_SHA384, 0x260UL);
D(K_CKM_SHA512, 0x270UL);
D(K_CKA_ALLOWED_MECHANISMS, 0x40000600UL);
D(K_CKR_KEY_TYPE_INCONSISTENT, 0x63UL);
D(K_CKR_MECHANISM_INVALID, 0x70UL);
D(K_CKR_TEMPLATE_INCONSISTENT, 0xd1UL);
D(K_CKF_SIGN, 0x800UL);
D(K_CKF_VERIFY, 0x2000UL);

typedef struct {
  CK_ULONG hedgeVariant;
  CK_BYTE_PTR pContext;
  CK_ULONG ulContextLen;
} SIGN_ADDITIONAL_CONTEXT;

typedef struct {
  CK_ULONG hedgeVariant;
  CK_BYTE_PTR pContext;
  CK_ULONG ulContextLen;
  CK_ULONG hash;
} HASH_SIGN_ADDITIONAL_CONTEXT;

static CK_FUNCTION_LIST_3_2 *f;
static const char *dir, *tool, *hashverify;

static int sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(cmd, sizeof cmd, "cd '%s' && '%s' ", dir, tool);
  vsnprintf(cmd + n, sizeof cmd - n, fmt, ap);
  va_end(ap);
  return system(cmd);
}

/* hv: the HashML-DSA verifier (@noble/post-quantum under node): 0 valid. */
/* hv runs the verifier and gives its exit code: 0 valid, 1 invalid, anything
 * else (2: bad input, a crash, no node) a failure of the check itself, which
 * must never count as "rejected". */
static int hv(const char *hash) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "cd '%s' && '%s' hpk %s hmsg hctx hsig 2>/dev/null", dir, hashverify, hash);
  int st = system(cmd);
  return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

/* Files in the work directory (setup.h). */
#define rd(name, buf, cap) read_in(dir, name, buf, cap)
#define wr(name, buf, n) write_in(dir, name, buf, n)

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
  /* A pure ML-DSA key in the TPM makes no HashML-DSA signature. */
  CK_MECHANISM hm = {K_CKM_HASH_ML_DSA_SHA256, NULL, 0};
  RV(f->C_SignInit(h, &hm, priv), K_CKR_KEY_TYPE_INCONSISTENT);
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

/* HashML-DSA: a key pair whose private CKA_ALLOWED_MECHANISMS names only
 * the HashML-DSA mechanisms of hash hm (CKM_HASH_ML_DSA_SHA*) is a
 * HashML-DSA key in the TPM. Signatures single-part, multi-part (over more
 * than one TPM buffer) and by CKM_HASH_ML_DSA over a digest are verified
 * by @noble/post-quantum from the public key's CKA_VALUE and the message;
 * a tampered message fails; the mechanisms the key cannot do are refused. */
static void hashmldsa(CK_SESSION_HANDLE h, CK_ULONG ps, CK_ULONG siglen, CK_ULONG hm, CK_ULONG dm, const char *hname,
                      CK_ULONG dlen) {
  CK_MECHANISM gen = {K_CKM_ML_DSA_GEN, NULL, 0};
  CK_ULONG allowed[] = {hm, K_CKM_HASH_ML_DSA};
  CK_ATTRIBUTE pubt[] = {{K_CKA_PARAMETER_SET, &ps, sizeof ps}};
  CK_ATTRIBUTE privt[] = {{K_CKA_SIGN, &yes, 1}, {K_CKA_ALLOWED_MECHANISMS, allowed, sizeof allowed}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 1, privt, 2, &pub, &priv), CKR_OK);
  CK_BYTE pk[4096];
  CK_ATTRIBUTE a = {CKA_VALUE, pk, sizeof pk};
  RV(f->C_GetAttributeValue(h, pub, &a, 1), CKR_OK);
  wr("hpk", pk, a.ulValueLen);

  /* Single-part, with a context. */
  CK_BYTE msg[] = "signed through PKCS#11 by a HashML-DSA key in the TPM";
  CK_BYTE ctx[] = "tpm11 HashML-DSA";
  SIGN_ADDITIONAL_CONTEXT p = {1 /* CKH_HEDGE_REQUIRED */, ctx, sizeof ctx - 1};
  CK_MECHANISM m = {hm, &p, sizeof p};
  CK_BYTE sig[5000];
  CK_ULONG n = 0;
  RV(f->C_SignInit(h, &m, priv), CKR_OK);
  RV(f->C_Sign(h, msg, sizeof msg - 1, NULL, &n), CKR_OK);
  CHECK(n == siglen, "HashML-DSA signature length %lu, want %lu", n, siglen);
  RV(f->C_Sign(h, msg, sizeof msg - 1, sig, &n), CKR_OK);
  wr("hmsg", msg, sizeof msg - 1);
  wr("hctx", ctx, sizeof ctx - 1);
  wr("hsig", sig, n);
  CHECK(hv(hname) == 0, "noble rejects the HashML-DSA-%lu/%s signature", ps, hname);
  msg[0] ^= 1;
  wr("hmsg", msg, sizeof msg - 1);
  CHECK(hv(hname) == 1, "noble does not reject a HashML-DSA signature of a tampered message");
  msg[0] ^= 1;
  wr("hmsg", msg, sizeof msg - 1);
  wr("hctx", (CK_BYTE *) "another", 7);
  CHECK(hv(hname) == 1, "noble does not reject a HashML-DSA signature under another context");

  /* Multi-part, no parameter (empty context): 3000 bytes in three parts. */
  static CK_BYTE big[3000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (CK_BYTE) (i * 7 + ps);
  CK_MECHANISM plain = {hm, NULL, 0};
  RV(f->C_SignInit(h, &plain, priv), CKR_OK);
  RV(f->C_SignUpdate(h, big, 1000), CKR_OK);
  RV(f->C_SignUpdate(h, big + 1000, 1500), CKR_OK);
  RV(f->C_SignUpdate(h, big + 2500, 500), CKR_OK);
  n = sizeof sig;
  RV(f->C_SignFinal(h, sig, &n), CKR_OK);
  wr("hmsg", big, sizeof big);
  wr("hctx", (CK_BYTE *) "", 0);
  wr("hsig", sig, n);
  CHECK(hv(hname) == 0, "noble rejects the multi-part HashML-DSA-%lu/%s signature", ps, hname);

  /* CKM_HASH_ML_DSA over a digest the caller made (C_Digest here; noble
   * hashes the message itself). */
  CK_MECHANISM dg = {dm, NULL, 0};
  CK_BYTE d[64];
  CK_ULONG dl = sizeof d;
  RV(f->C_DigestInit(h, &dg), CKR_OK);
  RV(f->C_Digest(h, msg, sizeof msg - 1, d, &dl), CKR_OK);
  CHECK(dl == dlen, "digest length %lu", dl);
  HASH_SIGN_ADDITIONAL_CONTEXT hp = {0, ctx, sizeof ctx - 1, dm};
  CK_MECHANISM pre = {K_CKM_HASH_ML_DSA, &hp, sizeof hp};
  RV(f->C_SignInit(h, &pre, priv), CKR_OK);
  n = sizeof sig;
  RV(f->C_Sign(h, d, dl, sig, &n), CKR_OK);
  wr("hmsg", msg, sizeof msg - 1);
  wr("hctx", ctx, sizeof ctx - 1);
  wr("hsig", sig, n);
  CHECK(hv(hname) == 0, "noble rejects the CKM_HASH_ML_DSA-%lu/%s signature", ps, hname);
  /* A digest of the wrong length is the caller's error. */
  RV(f->C_SignInit(h, &pre, priv), CKR_OK);
  n = sizeof sig;
  RV(f->C_Sign(h, d, dl - 1, sig, &n), K_CKR_DATA_LEN_RANGE);

  /* What the key cannot do. */
  CK_MECHANISM pure = {K_CKM_ML_DSA, NULL, 0};
  RV(f->C_SignInit(h, &pure, priv), K_CKR_KEY_TYPE_INCONSISTENT);
  CK_MECHANISM other = {hm == K_CKM_HASH_ML_DSA_SHA256 ? K_CKM_HASH_ML_DSA_SHA384 : K_CKM_HASH_ML_DSA_SHA256, NULL, 0};
  RV(f->C_SignInit(h, &other, priv), K_CKR_KEY_TYPE_INCONSISTENT);
  hp.hash = dm == K_CKM_SHA256 ? K_CKM_SHA384 : K_CKM_SHA256;
  RV(f->C_SignInit(h, &pre, priv), K_CKR_KEY_TYPE_INCONSISTENT);
  hp.hash = K_CKM_SHA512;
  RV(f->C_SignInit(h, &pre, priv), K_CKR_MECHANISM_PARAM_INVALID);
  hp.hash = dm;
  hp.hedgeVariant = 2; /* CKH_DETERMINISTIC_REQUIRED: the TPM hedges */
  RV(f->C_SignInit(h, &pre, priv), K_CKR_MECHANISM_PARAM_INVALID);
  CK_MECHANISM noparam = {K_CKM_HASH_ML_DSA, NULL, 0};
  RV(f->C_SignInit(h, &noparam, priv), K_CKR_MECHANISM_PARAM_INVALID);
  /* Sign only: nothing verifies HashML-DSA in the module. */
  RV(f->C_VerifyInit(h, &m, pub), K_CKR_MECHANISM_INVALID);
}

/* A key that would have to do both pure and pre-hash ML-DSA, or two
 * hashes, cannot be made in the TPM: refused at generation. */
static void hashmldsa_refused(CK_SESSION_HANDLE h) {
  CK_ULONG ps = 2;
  CK_MECHANISM gen = {K_CKM_ML_DSA_GEN, NULL, 0};
  CK_ULONG both[] = {K_CKM_ML_DSA, K_CKM_HASH_ML_DSA_SHA256}, two[] = {K_CKM_HASH_ML_DSA_SHA256, K_CKM_HASH_ML_DSA_SHA384};
  CK_ATTRIBUTE pubt[] = {{K_CKA_PARAMETER_SET, &ps, sizeof ps}};
  CK_ATTRIBUTE privt[] = {{K_CKA_ALLOWED_MECHANISMS, both, sizeof both}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 1, privt, 1, &pub, &priv), K_CKR_TEMPLATE_INCONSISTENT);
  privt[0].pValue = two;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 1, privt, 1, &pub, &priv), K_CKR_TEMPLATE_INCONSISTENT);
  CK_MECHANISM_INFO info;
  RV(f->C_GetMechanismInfo(0, K_CKM_HASH_ML_DSA_SHA384, &info), CKR_OK);
  CHECK(info.ulMinKeySize == 1312 && info.ulMaxKeySize == 2592, "HashML-DSA key sizes %lu-%lu", info.ulMinKeySize, info.ulMaxKeySize);
  CHECK((info.flags & K_CKF_SIGN) && !(info.flags & K_CKF_VERIFY), "CKM_HASH_ML_DSA_SHA384 flags 0x%lx", info.flags);
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
  if (argc < 5) {
    fprintf(stderr, "usage: pqc_test module.so workdir pqctool hashverify\n");
    return 2;
  }
  dir = argv[2];
  tool = argv[3];
  hashverify = argv[4];
  f = load_module(argc, argv);
  CK_SESSION_HANDLE h = make_token(f);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  check_mechanisms();
  mldsa(h, 1, 2420);
  mldsa(h, 2, 3309);
  mldsa(h, 3, 4627);
  hashmldsa_refused(h);
  hashmldsa(h, 1, 2420, K_CKM_HASH_ML_DSA_SHA256, K_CKM_SHA256, "sha256", 32);
  hashmldsa(h, 2, 3309, K_CKM_HASH_ML_DSA_SHA384, K_CKM_SHA384, "sha384", 48);
  hashmldsa(h, 3, 4627, K_CKM_HASH_ML_DSA_SHA384, K_CKM_SHA384, "sha384", 48);
  hashmldsa(h, 2, 3309, K_CKM_HASH_ML_DSA_SHA256, K_CKM_SHA256, "sha256", 32);
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
