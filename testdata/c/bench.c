/* make bench, C side: libtpm11.so driven as applications drive it.
 *   bench MODULE  -> prints "name value" lines for the table:
 *   sync 1 thread ECDSA P-256 and RSA-2048 signs/s with p50/p99; 8 threads
 *   with their own sessions; one thread keeping 32 async sessions in flight;
 *   the latency of a C_Sign that returns CKR_PENDING; dlopen -> logged in;
 *   and signs/s in a forked child (served by its helper over p11-kit's RPC)
 *   beside the same loop in the parent. */
#include <dlfcn.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "test.h"

#define CKM_RSA_PKCS_KEY_PAIR_GEN 0x0UL
#define CKM_SHA256_RSA_PKCS 0x40UL
#define CKA_MODULUS_BITS 0x121UL
#define CKR_PENDING_ 0x204UL
#define CKM_ECDSA 0x1041UL

static CK_FUNCTION_LIST_3_2 *f;
static CK_BYTE ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}
static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double pct(double *v, int n, int p) {
  qsort(v, n, sizeof *v, cmpd);
  return v[(n - 1) * p / 100];
}

static CK_SESSION_HANDLE session(CK_FLAGS extra) {
  CK_SESSION_HANDLE h;
  if (f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION | extra, NULL, NULL, &h) != CKR_OK) exit(3);
  return h;
}

static CK_OBJECT_HANDLE ec_key, rsa_key;

/* rss_mb is this process's resident set size. */
static double rss_mb(void) {
  FILE *fp = fopen("/proc/self/status", "r");
  char line[256];
  double kb = 0;
  while (fp && fgets(line, sizeof line, fp))
    if (strncmp(line, "VmRSS:", 6) == 0) kb = atof(line + 6);
  if (fp) fclose(fp);
  return kb / 1024;
}

static int sign_once(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mech) {
  CK_MECHANISM m = {mech, NULL, 0};
  CK_BYTE sig[512];
  CK_ULONG n = sizeof sig;
  return f->C_SignInit(h, &m, key) != CKR_OK || f->C_Sign(h, (CK_BYTE_PTR) "bench", 5, sig, &n) != CKR_OK;
}

/* cpu_s is this process's user+system CPU time: the loop calling C_Sign
 * costs next to nothing, so what it measures is the module's. */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void sync_one(const char *name, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mech, int n) {
  CK_SESSION_HANDLE h = session(0);
  double *lat = malloc(n * sizeof *lat), t0 = now(), c0 = cpu_s();
  int errs = 0;
  for (int i = 0; i < n; i++) {
    double s = now();
    errs += sign_once(h, key, mech);
    lat[i] = now() - s;
  }
  double total = now() - t0, cpu = cpu_s() - c0;
  printf("%s_sync1_signs_per_s %.0f\n%s_sync1_p50_ms %.3f\n%s_sync1_p99_ms %.3f\n%s_sync1_errors %d\n", name, n / total,
         name, pct(lat, n, 50) * 1e3, name, pct(lat, n, 99) * 1e3, name, errs);
  printf("%s_sync1_cpu_us %.1f\n", name, cpu / n * 1e6);
  free(lat);
  f->C_CloseSession(h);
}

static int per_thread;
static void *thread_signer(void *arg) {
  (void)arg;
  CK_SESSION_HANDLE h = session(0);
  long errs = 0;
  for (int i = 0; i < per_thread; i++) errs += sign_once(h, ec_key, CKM_ECDSA_SHA256);
  f->C_CloseSession(h);
  return (void *)errs;
}

static void threads8(int n) {
  pthread_t t[8];
  per_thread = n / 8;
  double t0 = now();
  for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, thread_signer, NULL);
  long errs = 0;
  for (int i = 0; i < 8; i++) {
    void *r;
    pthread_join(t[i], &r);
    errs += (long)r;
  }
  printf("ec_threads8_signs_per_s %.0f\nec_threads8_errors %ld\n", per_thread * 8 / (now() - t0), errs);
}

/* One thread, 32 async sessions: start a sign on each, then keep every
 * session busy, completing whichever is done. */
static void async32(int n) {
  enum { S = 32 };
  CK_SESSION_HANDLE h[S];
  CK_BYTE sig[S][64];
  int busy[S];
  CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
  double *pend = malloc(n * sizeof *pend);
  int npend = 0, done = 0, started = 0, errs = 0;
  for (int i = 0; i < S; i++) { h[i] = session(CKF_ASYNC_SESSION); busy[i] = 0; }
  double t0 = now();
  while (done < n) {
    for (int i = 0; i < S; i++) {
      if (!busy[i] && started < n) {
        CK_ULONG len = 64;
        if (f->C_SignInit(h[i], &m, ec_key) != CKR_OK) errs++;
        double s = now();
        CK_RV r = f->C_Sign(h[i], (CK_BYTE_PTR) "bench", 5, sig[i], &len);
        double d = now() - s;
        started++;
        if (r == CKR_PENDING_) { busy[i] = 1; if (npend < n) pend[npend++] = d; }
        else { done++; errs += r != CKR_OK; }
      } else if (busy[i]) {
        CK_ASYNC_DATA res = {0, NULL, 0, 0, 0};
        CK_RV r = f->C_AsyncComplete(h[i], (CK_UTF8CHAR_PTR) "C_Sign", &res);
        if (r != CKR_PENDING_) { busy[i] = 0; done++; errs += r != CKR_OK; }
      }
    }
  }
  printf("ec_async32_signs_per_s %.0f\nec_async32_errors %d\n", n / (now() - t0), errs);
  if (npend) printf("pending_return_p50_us %.1f\npending_return_p99_us %.1f\n", pct(pend, npend, 50) * 1e6, pct(pend, npend, 99) * 1e6);
  for (int i = 0; i < S; i++) f->C_CloseSession(h[i]);
  free(pend);
}

/* ECDSA over a digest (CKM_ECDSA: p11-kit 0.24's RPC does not carry
 * CKM_ECDSA_SHA256), n times on one session; returns signs/s. */
static double raw_loop(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, int n, double *lat, int *errs) {
  CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
  CK_BYTE digest[32] = {1, 2, 3}, sig[72];
  double t0 = now();
  for (int i = 0; i < n; i++) {
    CK_ULONG len = sizeof sig;
    double s = now();
    *errs += f->C_SignInit(h, &m, key) != CKR_OK || f->C_Sign(h, digest, 32, sig, &len) != CKR_OK;
    lat[i] = now() - s;
  }
  return n / (now() - t0);
}

/* forked: the parent's loop, then the same loop in a forked child with the
 * parent's key handle (a token key: the child's helper sees the store). */
static void forked(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, int n) {
  double *lat = malloc(n * sizeof *lat);
  int errs = 0;
  raw_loop(h, key, 10, lat, &errs); /* warm */
  printf("ec_raw_sync1_signs_per_s %.0f\n", raw_loop(h, key, n, lat, &errs));
  printf("ec_raw_sync1_p50_ms %.3f\n", pct(lat, n, 50) * 1e3);
  fflush(stdout);
  int p[2];
  if (pipe(p) != 0) exit(7);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(120);
    char out[512];
    CK_SESSION_HANDLE c;
    double t0 = now();
    if (f->C_Initialize(NULL) != CKR_OK) _exit(1);
    double init_ms = (now() - t0) * 1e3;
    if (f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &c) != CKR_OK) _exit(1);
    if (f->C_Login(c, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8) != CKR_OK) _exit(1);
    int cerrs = 0;
    raw_loop(c, key, 10, lat, &cerrs); /* warm */
    double rate = raw_loop(c, key, n, lat, &cerrs);
    int len = snprintf(out, sizeof out, "ec_child_signs_per_s %.0f\nec_child_p50_ms %.3f\nec_child_init_ms %.1f\nec_child_errors %d\n",
                       rate, pct(lat, n, 50) * 1e3, init_ms, cerrs);
    if (write(p[1], out, len) != len) _exit(1);
    f->C_Finalize(NULL);
    _exit(0);
  }
  close(p[1]);
  char buf[512];
  ssize_t r;
  while ((r = read(p[0], buf, sizeof buf)) > 0) fwrite(buf, 1, r, stdout);
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  printf("ec_raw_sync1_errors %d\nec_child_exit %d\n", errs, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  free(lat);
}

int main(int argc, char **argv) {
  int n = argc > 2 ? atoi(argv[2]) : 400;
  double rss0 = rss_mb(), t0 = now();
  void *so = dlopen(argv[1], RTLD_NOW);
  if (!so) return 2;
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  get_iface(NULL, NULL, &ip, 0);
  f = ip->pFunctionList;
  if (f->C_Initialize(NULL) != CKR_OK) return 3;
  CK_SESSION_HANDLE h = session(0);
  if (f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8) != CKR_OK) return 4;
  printf("dlopen_to_logged_in_ms %.1f\n", (now() - t0) * 1e3);
  double rss1 = rss_mb();
  printf("rss_module_mb %.1f\n", rss1 - rss0);
  CK_SESSION_HANDLE many[1000];
  for (int i = 0; i < 1000; i++) many[i] = session(0);
  printf("rss_1000_sessions_mb %.1f\n", rss_mb() - rss1);
  for (int i = 0; i < 1000; i++) f->C_CloseSession(many[i]);
  f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8); /* closing the last other sessions kept h's login */
  CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0}, rgen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
  CK_ULONG bits = 2048;
  CK_ATTRIBUTE pub[] = {{CKA_EC_PARAMS, ec_params, sizeof ec_params}}, rpub[] = {{CKA_MODULUS_BITS, &bits, sizeof bits}};
  CK_OBJECT_HANDLE p;
  if (f->C_GenerateKeyPair(h, &gen, pub, 1, NULL, 0, &p, &ec_key) != CKR_OK) return 5;
  if (f->C_GenerateKeyPair(h, &rgen, rpub, 1, NULL, 0, &p, &rsa_key) != CKR_OK) return 6;
  CK_BBOOL yes = 1;
  CK_BYTE id = 0x42;
  CK_ATTRIBUTE tpub[] = {{CKA_EC_PARAMS, ec_params, sizeof ec_params}, {CKA_TOKEN, &yes, 1}, {CKA_ID, &id, 1}},
               tpriv[] = {{CKA_TOKEN, &yes, 1}, {CKA_ID, &id, 1}};
  CK_OBJECT_HANDLE token_key;
  if (f->C_GenerateKeyPair(h, &gen, tpub, 3, tpriv, 2, &p, &token_key) != CKR_OK) return 7;
  sign_once(h, ec_key, CKM_ECDSA_SHA256); /* warm: key loaded */
  sync_one("ec", ec_key, CKM_ECDSA_SHA256, n);
  sync_one("rsa", rsa_key, CKM_SHA256_RSA_PKCS, n / 4);
  threads8(n);
  async32(n);
  forked(h, token_key, n);
  f->C_Finalize(NULL);
  return 0;
}
