/* Threads at random on libtpm11.so (issue 21): N threads sign and verify,
 * find, create and destroy, log in and out, open and close sessions, use
 * async sessions, on their own sessions and on two sessions they all
 * share, in random interleavings.
 *
 *   STRESS_CALLS=N [STRESS_THREADS=T] [STRESS_SEED=S] stress_test MODULE
 *
 * Fails on a crash, a hang (a watchdog: no call may take 120 s), a
 * CKR_DEVICE_ERROR or CKR_GENERAL_ERROR, a signature the module made that
 * it does not verify, a value read back that is not the one written, or
 * resident memory that grows by more than 128 MB after the first tenth of
 * the calls. Every signature and value is written before a guard page. */
#include <stdatomic.h>
#include "hostile.h"
#include "setup.h"

static CK_FUNCTION_LIST_3_2 *f;
static CK_OBJECT_HANDLE ec_pub, ec_prv, aes_key;
static CK_SESSION_HANDLE shared[2];
static atomic_ulong ncalls, nbad, nmismatch;
static unsigned long want;
static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static CK_BBOOL yes = 1, no = 0;

/* C calls one function under the watchdog and counts its result. */
#define C(fn, ...) call_rv(#fn, f->fn(__VA_ARGS__))
#define CALL(fn, ...) (watch_enter(#fn), call_rv(#fn, f->fn(__VA_ARGS__)))
static CK_RV call_rv(const char *fn, CK_RV r) {
  watch_leave();
  atomic_fetch_add(&ncalls, 1);
  count_rv(r);
  if (r == 0x30 || r == 0x5) {
    if (atomic_fetch_add(&nbad, 1) < 20) fprintf(stderr, "BAD: %s = 0x%lx\n", fn, r);
  }
  return r;
}

struct thr {
  int id;
  guard_t g[4];
  CK_SESSION_HANDLE own[4];
  int nown;
};

static CK_SESSION_HANDLE pick(struct thr *t) {
  if (rn(3) == 0 || t->nown == 0) return shared[rn(2)];
  return t->own[rn(t->nown)];
}

static void sign_verify(struct thr *t, CK_SESSION_HANDLE h) {
  CK_MECHANISM m = {0x1044, NULL, 0}; /* CKM_ECDSA_SHA256 */
  CK_BYTE data[64];
  rnd_fill(data, sizeof data);
  if (CALL(C_SignInit, h, &m, ec_prv) != 0) return;
  CK_ULONG n = 64 + rn(3) * 8;
  CK_BYTE *sig = guard_buf(t->g[0], n);
  CK_RV r = CALL(C_Sign, h, data, sizeof data, sig, &n);
  if (r != 0) return;
  CK_BYTE copy[128];
  memcpy(copy, sig, n);
  if (CALL(C_VerifyInit, h, &m, ec_pub) != 0) return;
  r = CALL(C_Verify, h, data, sizeof data, copy, n);
  /* On a shared session another thread's operation may have replaced
   * ours; on our own, the signature must verify. */
  if (r == 0xC0) {
    int own = 0;
    for (int i = 0; i < t->nown; i++) own |= t->own[i] == h;
    if (own && atomic_fetch_add(&nmismatch, 1) < 5) fprintf(stderr, "MISMATCH: a signature the module made does not verify\n");
  }
}

static void find(struct thr *t, CK_SESSION_HANDLE h) {
  CK_ULONG cls = 3; /* CKO_PRIVATE_KEY */
  CK_ATTRIBUTE q[] = {{0x0, &cls, sizeof cls}};
  if (CALL(C_FindObjectsInit, h, q, rn(2)) != 0) return;
  CK_ULONG max = 1 + rn(16), n = 0;
  CK_OBJECT_HANDLE *out = guard_buf(t->g[1], max * sizeof *out);
  CALL(C_FindObjects, h, out, max, &n);
  CALL(C_FindObjectsFinal, h);
}

static void create_destroy(struct thr *t, CK_SESSION_HANDLE h) {
  CK_ULONG cls = 0; /* CKO_DATA */
  CK_BYTE val[48];
  rnd_fill(val, sizeof val);
  CK_BBOOL tok = rn(4) == 0;
  CK_ATTRIBUTE tpl[] = {{0x0, &cls, sizeof cls}, {0x1, &tok, 1}, {0x2, &no, 1}, {0x11, val, sizeof val}, {0x3, "stress", 6}};
  CK_OBJECT_HANDLE o;
  if (CALL(C_CreateObject, h, tpl, 5, &o) != 0) return;
  CK_BYTE *back = guard_buf(t->g[2], sizeof val);
  CK_ATTRIBUTE get[] = {{0x11, back, sizeof val}};
  if (CALL(C_GetAttributeValue, h, o, get, 1) == 0 && memcmp(back, val, sizeof val) != 0) {
    if (atomic_fetch_add(&nmismatch, 1) < 5) fprintf(stderr, "MISMATCH: a data object's value read back differs\n");
  }
  CALL(C_DestroyObject, rn(8) ? h : pick(t), o);
}

static void gen_encrypt(struct thr *t, CK_SESSION_HANDLE h) {
  CK_MECHANISM gen = {0x1080, NULL, 0};
  CK_ULONG len = 16;
  CK_ATTRIBUTE tpl[] = {{0x161, &len, sizeof len}, {0x104, &yes, 1}, {0x105, &yes, 1}};
  CK_OBJECT_HANDLE k = aes_key;
  int made = rn(4) == 0 && CALL(C_GenerateKey, h, &gen, tpl, 3, &k) == 0;
  CK_BYTE iv[16] = {0};
  CK_MECHANISM m = {0x1085, iv, sizeof iv}; /* CKM_AES_CBC_PAD */
  if (CALL(C_EncryptInit, h, &m, k) == 0) {
    CK_BYTE pt[40];
    rnd_fill(pt, sizeof pt);
    CK_ULONG n = 48;
    CK_BYTE *ct = guard_buf(t->g[3], n);
    CALL(C_Encrypt, h, pt, sizeof pt, ct, &n);
  }
  if (made) CALL(C_DestroyObject, h, k);
}

static void login_logout(struct thr *t) {
  CK_SESSION_HANDLE h = pick(t);
  if (rn(4) == 0) CALL(C_Logout, h);
  else CALL(C_Login, h, 1, (CK_UTF8CHAR_PTR) "user-pin", 8);
}

static void open_close(struct thr *t) {
  if (t->nown < 4 && (rn(2) || t->nown == 0)) {
    CK_SESSION_HANDLE h;
    CK_FLAGS fl = 4 | (rn(2) ? 2 : 0) | (rn(4) == 0 ? 8 : 0);
    if (CALL(C_OpenSession, 0, fl, NULL, NULL, &h) == 0) t->own[t->nown++] = h;
  } else if (t->nown) {
    int i = rn(t->nown);
    CALL(C_CloseSession, t->own[i]);
    t->own[i] = t->own[--t->nown];
  }
}

static void async_sign(struct thr *t) {
  CK_SESSION_HANDLE h;
  if (CALL(C_OpenSession, 0, 4 | 2 | 8, NULL, NULL, &h) != 0) return;
  CK_MECHANISM m = {0x1044, NULL, 0};
  CK_BYTE data[32];
  rnd_fill(data, sizeof data);
  if (CALL(C_SignInit, h, &m, ec_prv) == 0) {
    CK_ULONG n = 64;
    CK_BYTE *sig = guard_buf(t->g[0], n);
    CK_RV r = CALL(C_Sign, h, data, sizeof data, sig, &n);
    /* Complete it, or close the session with it pending. */
    for (int i = 0; r == 0x204 && rn(8) && i < 100000; i++) {
      CK_ASYNC_DATA res = {0, NULL, 0, 0, 0};
      r = CALL(C_AsyncComplete, h, (CK_UTF8CHAR_PTR) "C_Sign", &res);
      if (r == 0x204) sched_yield();
    }
  }
  CALL(C_CloseSession, h);
}

static void *worker(void *arg) {
  struct thr *t = arg;
  watch_slot = t->id + 1;
  rng_state ^= (uint64_t) (t->id + 1) * 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < 4; i++) t->g[i] = guard_new();
  while (atomic_load(&ncalls) < want && !atomic_load(&nbad)) {
    switch (rn(12)) {
    case 0: case 1: case 2: sign_verify(t, pick(t)); break;
    case 3: case 4: find(t, pick(t)); break;
    case 5: create_destroy(t, pick(t)); break;
    case 6: gen_encrypt(t, pick(t)); break;
    case 7: login_logout(t); break;
    case 8: open_close(t); break;
    case 9: async_sign(t); break;
    case 10: { CK_BYTE b[32]; CALL(C_GenerateRandom, pick(t), b, sizeof b); break; }
    case 11: {
      CK_BYTE pt[256];
      CK_ATTRIBUTE a[] = {{0x181, pt, sizeof pt}};
      CALL(C_GetAttributeValue, pick(t), ec_pub, a, 1);
      CK_SESSION_INFO si;
      CALL(C_GetSessionInfo, pick(t), &si);
      break;
    }
    }
  }
  for (int i = 0; i < t->nown; i++) CALL(C_CloseSession, t->own[i]);
  return NULL;
}

int main(int argc, char **argv) {
  hostile_start();
  const char *e = getenv("STRESS_CALLS");
  want = e ? strtoul(e, NULL, 10) : 20000;
  int nthreads = getenv("STRESS_THREADS") ? atoi(getenv("STRESS_THREADS")) : 8;
  if (nthreads < 1 || nthreads > MAX_WATCHED - 1) nthreads = 8;
  const char *seed = getenv("STRESS_SEED");
  rng_state = seed ? strtoull(seed, NULL, 10) | 1 : ((uint64_t) time(NULL) << 20 | (uint64_t) getpid()) | 1;
  printf("stress_test: seed %lu, %d threads\n", (unsigned long) rng_state, nthreads);
  f = load_module(argc, argv);
  CK_SESSION_HANDLE h = failures ? 0 : make_token(f);
  if (failures) { fprintf(stderr, "module or token setup failed\n"); return 1; }
  CK_RV r;
#define MUST(x) do { if ((r = (x)) != 0) { fprintf(stderr, "setup: %s = 0x%lx\n", #x, r); return 1; } } while (0)
  MUST(f->C_Login(h, 1, (CK_UTF8CHAR_PTR) "user-pin", 8));
  CK_MECHANISM ecgen = {0x1040, NULL, 0}, aesgen = {0x1080, NULL, 0};
  CK_ATTRIBUTE pub[] = {{0x1, &yes, 1}, {0x180, (void *) p256, sizeof p256}};
  CK_ATTRIBUTE prv[] = {{0x1, &yes, 1}, {0x108, &yes, 1}};
  MUST(f->C_GenerateKeyPair(h, &ecgen, pub, 2, prv, 2, &ec_pub, &ec_prv));
  CK_ULONG len = 16;
  CK_ATTRIBUTE aes[] = {{0x1, &yes, 1}, {0x161, &len, sizeof len}, {0x104, &yes, 1}, {0x105, &yes, 1}};
  MUST(f->C_GenerateKey(h, &aesgen, aes, 4, &aes_key));
  shared[0] = h;
  MUST(f->C_OpenSession(0, 6, NULL, NULL, &shared[1]));

  pthread_t th[MAX_WATCHED];
  struct thr ts[MAX_WATCHED];
  double t0 = now_s();
  for (int i = 0; i < nthreads; i++) {
    memset(&ts[i], 0, sizeof ts[i]);
    ts[i].id = i;
    pthread_create(&th[i], NULL, worker, &ts[i]);
  }
  /* Memory after the first tenth of the calls, then at the end. */
  long rss_warm = 0, rss_max = 0;
  while (1) {
    int done = atomic_load(&ncalls) >= want || atomic_load(&nbad);
    long rss = rss_kb();
    if (!rss_warm && atomic_load(&ncalls) >= want / 10) rss_warm = rss;
    if (rss > rss_max) rss_max = rss;
    if (done) break;
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
  }
  for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
  double took = now_s() - t0;
  long rss_end = rss_kb();
  watch_enter("C_Finalize");
  r = f->C_Finalize(NULL);
  watch_leave();
  watch_stop = 1;
  printf("return values:\n");
  print_tally(stdout);
  int mem_ok = rss_end - rss_warm < 128 * 1024;
  printf("%lu calls on %d threads in %.0f s (%.0f/s), rss after a tenth %ld kB, max %ld kB, end %ld kB: 0 crashes, 0 hangs, %lu CKR_DEVICE_ERROR/CKR_GENERAL_ERROR, %lu mismatches%s\n",
         (unsigned long) atomic_load(&ncalls), nthreads, took, atomic_load(&ncalls) / took, rss_warm, rss_max, rss_end,
         (unsigned long) atomic_load(&nbad), (unsigned long) atomic_load(&nmismatch), mem_ok ? "" : ", MEMORY GREW");
  return r || atomic_load(&nbad) || atomic_load(&nmismatch) || !mem_ok;
}
