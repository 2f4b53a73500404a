/* No write past the caller's buffer, whatever another thread does to the
 * session meanwhile (issue 21, item 1). Each output buffer ends exactly at
 * a PROT_NONE guard page: one byte too many and the process dies of
 * SIGSEGV. On one session, thread A makes an operation with a short result
 * and calls it with a buffer of that size; thread B keeps ending the
 * operation (C_SessionCancel, C_MessageSignFinal) and starting one of the
 * same kind with a long result (256 bytes), twice per call of A, each
 * after a random few yields. A must only ever see a clean result that fits,
 * CKR_BUFFER_TOO_SMALL, CKR_OPERATION_ACTIVE, CKR_OPERATION_NOT_INITIALIZED
 * or its input refused by B's operation. Covered: C_Sign (ECDSA P-256 vs
 * RSA-2048; sync and async sessions, results collected with
 * C_AsyncComplete), C_Decrypt (RSA PKCS#1 of 16 bytes vs AES-ECB of the
 * same 256 bytes), C_SignMessage (ECDSA vs RSA).
 * Usage: overrun_test module.so [iterations per case [only this case]] */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include "setup.h"

#define D(name, value) static const CK_ULONG name = value
D(K_CKM_ECDSA, 0x1041UL);
D(K_CKM_EC_GEN, 0x1040UL);
D(K_CKM_RSA_GEN, 0x0UL);
D(K_CKM_RSA_PKCS, 0x1UL);
D(K_CKM_AES_ECB, 0x1081UL);
D(K_CKA_MODULUS_BITS, 0x121UL);
D(K_CKA_DECRYPT, 0x105UL);
D(K_CKA_ENCRYPT, 0x104UL);
D(K_CKF_DECRYPT, 0x200UL);
D(K_CKR_BUFFER_TOO_SMALL, 0x150UL);
D(K_CKR_ENCRYPTED_DATA_INVALID, 0x040UL);
D(K_CKR_ENCRYPTED_DATA_LEN_RANGE, 0x041UL);

static CK_FUNCTION_LIST_3_2 *f;
static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static CK_OBJECT_HANDLE ec_priv, rsa_priv, aes;
static CK_BYTE rsa_ct[256]; /* 16 bytes under the RSA key, PKCS#1 v1.5 */

/* guarded returns n bytes that end where a PROT_NONE page begins. */
static CK_BYTE *guarded(size_t n) {
  long page = sysconf(_SC_PAGESIZE);
  CK_BYTE *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED || mprotect(p + page, page, PROT_NONE) != 0) {
    perror("mmap");
    exit(2);
  }
  return p + page - n;
}

enum kind { SIGN, DECRYPT, MESSAGE };

struct race {
  const char *name;
  enum kind kind;
  CK_SESSION_HANDLE h;
  CK_FLAGS flags;
  int iterations;
  volatile int done;
  volatile int a_calls; /* A's calls so far: B replaces once per call */
  /* counts, by thread A */
  int ok, too_small, active, not_init, pending, bad;
  int raced; /* A's call met B's operation: CKR_BUFFER_TOO_SMALL for 256 */
};

static int allowed(CK_RV r) {
  return r == CKR_OK || r == K_CKR_BUFFER_TOO_SMALL || r == CKR_OPERATION_ACTIVE || r == CKR_OPERATION_NOT_INITIALIZED ||
         r == CKR_PENDING || r == K_CKR_ENCRYPTED_DATA_INVALID || r == K_CKR_ENCRYPTED_DATA_LEN_RANGE;
}

static void count(struct race *r, CK_RV rv, CK_ULONG n, CK_ULONG cap) {
  if (rv == CKR_OK) {
    r->ok++;
    if (n > cap) {
      r->bad++;
      fprintf(stderr, "%s: CKR_OK with %lu bytes for a %lu-byte buffer\n", r->name, n, cap);
    }
  } else if (rv == K_CKR_BUFFER_TOO_SMALL) {
    r->too_small++;
    if (n > cap) r->raced++;
  } else if (rv == CKR_OPERATION_ACTIVE) {
    r->active++;
  } else if (rv == CKR_OPERATION_NOT_INITIALIZED) {
    r->not_init++;
  } else if (rv == CKR_PENDING) {
    r->pending++;
  } else if (allowed(rv)) {
    r->raced++; /* A's input refused by B's operation */
  }
  if (!allowed(rv)) {
    r->bad++;
    fprintf(stderr, "%s: unexpected 0x%lx\n", r->name, rv);
  }
}

/* collect waits for a pending C_Sign and checks where its result went. */
static void collect(struct race *r, CK_BYTE *buf, CK_ULONG cap) {
  for (long spin = 0; spin < 100000000L; spin++) {
    CK_ASYNC_DATA res = {0, NULL, 0, 0, 0};
    CK_RV rv = f->C_AsyncComplete(r->h, (CK_UTF8CHAR_PTR) "C_Sign", &res);
    if (rv == CKR_PENDING) {
      sched_yield();
      continue;
    }
    if (rv == CKR_OK) r->ok++;
    if (rv == CKR_OK && (res.pValue != buf || res.ulValue > cap)) {
      r->bad++;
      fprintf(stderr, "%s: completed %lu bytes at %p for %lu at %p\n", r->name, res.ulValue, (void *)res.pValue, cap,
              (void *)buf);
    }
    /* B may cancel the pending sign: then nothing is pending any more. */
    if (!(rv == CKR_OK || rv == CKR_OPERATION_NOT_INITIALIZED)) count(r, rv, res.ulValue, cap);
    return;
  }
  r->bad++;
  fprintf(stderr, "%s: a pending C_Sign never completed\n", r->name);
}

/* Thread A: ends what B left, starts the short operation and calls it
 * with a buffer of exactly its result's size. */
static void *short_side(void *arg) {
  struct race *r = arg;
  CK_BYTE data[32] = {1, 2, 3};
  CK_MECHANISM ecdsa = {K_CKM_ECDSA, NULL, 0}, pkcs = {K_CKM_RSA_PKCS, NULL, 0};
  CK_ULONG cap = r->kind == DECRYPT ? 16 : 64;
  CK_BYTE *buf = guarded(cap);
  for (int i = 0; i < r->iterations; i++) {
    CK_ULONG n = cap;
    CK_RV rv;
    switch (r->kind) {
    case SIGN:
      (void)f->C_SessionCancel(r->h, CKF_SIGN);
      (void)f->C_SignInit(r->h, &ecdsa, ec_priv);
      rv = f->C_Sign(r->h, data, sizeof data, buf, &n);
      count(r, rv, n, cap);
      if (rv == CKR_PENDING) collect(r, buf, cap);
      break;
    case DECRYPT:
      (void)f->C_SessionCancel(r->h, K_CKF_DECRYPT);
      (void)f->C_DecryptInit(r->h, &pkcs, rsa_priv);
      rv = f->C_Decrypt(r->h, rsa_ct, sizeof rsa_ct, buf, &n);
      count(r, rv, n, cap);
      break;
    case MESSAGE:
      (void)f->C_MessageSignFinal(r->h);
      (void)f->C_MessageSignInit(r->h, &ecdsa, ec_priv);
      rv = f->C_SignMessage(r->h, NULL, 0, data, sizeof data, buf, &n);
      count(r, rv, n, cap);
      break;
    }
    __atomic_add_fetch(&r->a_calls, 1, __ATOMIC_SEQ_CST);
  }
  r->done = 1;
  return NULL;
}

/* Thread B: ends whatever operation there is and starts a long one. */
static void *long_side(void *arg) {
  struct race *r = arg;
  CK_MECHANISM pkcs = {K_CKM_RSA_PKCS, NULL, 0}, ecb = {K_CKM_AES_ECB, NULL, 0};
  unsigned seed = 1;
  while (!r->done) {
    int seen = __atomic_load_n(&r->a_calls, __ATOMIC_SEQ_CST);
    while (!r->done && __atomic_load_n(&r->a_calls, __ATOMIC_SEQ_CST) == seen) sched_yield();
    for (int rep = 0; rep < 2 && !r->done; rep++) {
      for (int k = rand_r(&seed) % 4; k > 0; k--) sched_yield();
      switch (r->kind) {
      case SIGN:
        /* On the async session B cancels after every other call of A only
         * (a cancel ends a pending signature): half the results are
         * collected with C_AsyncComplete into the guarded buffer. */
        if (!(r->flags & CKF_ASYNC_SESSION) || (seen & 1)) (void)f->C_SessionCancel(r->h, CKF_SIGN);
        (void)f->C_SignInit(r->h, &pkcs, rsa_priv);
        break;
      case DECRYPT:
        (void)f->C_SessionCancel(r->h, K_CKF_DECRYPT);
        (void)f->C_DecryptInit(r->h, &ecb, aes);
        break;
      case MESSAGE:
        (void)f->C_MessageSignFinal(r->h);
        (void)f->C_MessageSignInit(r->h, &pkcs, rsa_priv);
        break;
      }
    }
  }
  return NULL;
}

static const char *only;

static void run(const char *name, enum kind kind, CK_FLAGS flags, int iterations) {
  if (only && strcmp(only, name) != 0) return;
  struct race r = {.name = name, .kind = kind, .flags = flags, .iterations = iterations};
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | flags, NULL, NULL, &r.h), CKR_OK);
  pthread_t a, b;
  pthread_create(&a, NULL, short_side, &r);
  pthread_create(&b, NULL, long_side, &r);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  CHECK(r.bad == 0, "%s: %d bad results", name, r.bad);
  CHECK(r.ok > 0, "%s: no call succeeded", name);
  printf("overrun_test: %-13s %d calls: %d ok, %d met the long operation (too small), %d other too small, %d active, "
         "%d not initialized, %d pending\n",
         name, iterations, r.ok, r.raced, r.too_small - r.raced, r.active, r.not_init, r.pending);
  (void)f->C_CloseSession(r.h);
}

int main(int argc, char **argv) {
  f = load_module(argc, argv);
  int iterations = argc > 2 ? atoi(argv[2]) : 1500;
  only = argc > 3 ? argv[3] : NULL;
  CK_SESSION_HANDLE h = make_token(f);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  CK_MECHANISM ecgen = {K_CKM_EC_GEN, NULL, 0}, rsagen = {K_CKM_RSA_GEN, NULL, 0}, aesgen = {CKM_AES_KEY_GEN, NULL, 0};
  CK_ATTRIBUTE ect[] = {{CKA_EC_PARAMS, p256, sizeof p256}};
  CK_OBJECT_HANDLE pub;
  RV(f->C_GenerateKeyPair(h, &ecgen, ect, 1, NULL, 0, &pub, &ec_priv), CKR_OK);
  CK_ULONG bits = 2048, len = 16;
  CK_BBOOL yes = 1;
  CK_ATTRIBUTE rsat[] = {{K_CKA_MODULUS_BITS, &bits, sizeof bits}, {K_CKA_ENCRYPT, &yes, 1}};
  CK_ATTRIBUTE rsapriv[] = {{K_CKA_DECRYPT, &yes, 1}};
  CK_OBJECT_HANDLE rsa_pub;
  RV(f->C_GenerateKeyPair(h, &rsagen, rsat, 2, rsapriv, 1, &rsa_pub, &rsa_priv), CKR_OK);
  CK_MECHANISM pkcs = {K_CKM_RSA_PKCS, NULL, 0};
  CK_ULONG ctlen = sizeof rsa_ct;
  RV(f->C_EncryptInit(h, &pkcs, rsa_pub), CKR_OK);
  RV(f->C_Encrypt(h, (CK_BYTE_PTR) "sixteen bytes!!!", 16, rsa_ct, &ctlen), CKR_OK);
  CK_ATTRIBUTE aest[] = {{CKA_VALUE_LEN, &len, sizeof len}, {K_CKA_ENCRYPT, &yes, 1}, {K_CKA_DECRYPT, &yes, 1}};
  RV(f->C_GenerateKey(h, &aesgen, aest, 3, &aes), CKR_OK);

  run("sign", SIGN, 0, iterations);
  run("sign-async", SIGN, CKF_ASYNC_SESSION, iterations);
  run("decrypt", DECRYPT, 0, iterations);
  run("message", MESSAGE, 0, iterations);

  RV(f->C_Finalize(NULL), CKR_OK);
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("overrun_test: all checks passed\n");
  return 0;
}
