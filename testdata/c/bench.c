/* make bench, C side: libtpm11.so driven as applications drive it.
 *   bench MODULE N RAWFLOOR SOCKET -> prints "name value" lines for the
 *   table: sync 1 thread ECDSA P-256 and RSA-2048 signs/s with p50/p99;
 *   8 threads with their own sessions; one thread keeping 32 async sessions
 *   in flight; each case interleaved with the raw floor (RAWFLOOR on the
 *   swtpm at SOCKET) and its ratio to it; the latency of a C_Sign that
 *   returns CKR_PENDING; dlopen -> logged in; and signs/s in a forked child
 *   (served by its helper over p11-kit's RPC) beside the same loop in the
 *   parent. */
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

/* One measured run: throughput, latency, CPU per signature, errors. */
typedef struct {
  double rate, p50, p99, cpu;
  int errs;
} run_t;

static run_t sync_run(CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mech, int n) {
  CK_SESSION_HANDLE h = session(0);
  double *lat = malloc(n * sizeof *lat), t0 = now(), c0 = cpu_s();
  run_t r = {0};
  for (int i = 0; i < n; i++) {
    double s = now();
    r.errs += sign_once(h, key, mech);
    lat[i] = now() - s;
  }
  double total = now() - t0;
  r.cpu = (cpu_s() - c0) / n * 1e6;
  r.rate = n / total;
  r.p50 = pct(lat, n, 50) * 1e3;
  r.p99 = pct(lat, n, 99) * 1e3;
  free(lat);
  f->C_CloseSession(h);
  return r;
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

static run_t threads_run(int n) {
  pthread_t t[8];
  per_thread = n / 8;
  run_t r = {0};
  double t0 = now();
  for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, thread_signer, NULL);
  for (int i = 0; i < 8; i++) {
    void *v;
    pthread_join(t[i], &v);
    r.errs += (long)v;
  }
  r.rate = per_thread * 8 / (now() - t0);
  return r;
}

/* The latencies of every C_Sign that returned CKR_PENDING, all rounds. */
static double *pend;
static int npend, pend_cap;

/* What each such C_Sign was made of, to say what the tail is (issue 25):
 * the calling thread's own CPU time (CLOCK_THREAD_CPUTIME_ID), and from
 * getrusage(RUSAGE_THREAD) its involuntary context switches (preempted:
 * the machine's load), voluntary ones (it slept: a lock or a wait) and
 * minor page faults, read just outside the timed call. */
typedef struct { double wall, cpu; long ivcsw, vcsw, flt; } pend_why_t;
static pend_why_t *pend_why;
static double thread_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}
static int cmpwhy(const void *a, const void *b) {
  double x = ((const pend_why_t *)a)->wall, y = ((const pend_why_t *)b)->wall;
  return x < y ? -1 : x > y;
}
/* pending_tail prints, for the slowest 1% of the pending returns and for
 * the rest, the mean wall and thread-CPU time and the share with each
 * kind of event: wall far above CPU with involuntary switches is time
 * spent preempted; CPU near wall is work (GC assist, page faults, the cgo
 * call); voluntary switches are sleeps. */
static void pending_tail(void) {
  if (!npend) return;
  qsort(pend_why, npend, sizeof *pend_why, cmpwhy);
  int cut = npend - (npend + 99) / 100;
  for (int part = 0; part < 2; part++) {
    int a = part ? cut : 0, b = part ? npend : cut;
    double w = 0, c = 0, iv = 0, v = 0, fl = 0;
    for (int i = a; i < b; i++) {
      w += pend_why[i].wall; c += pend_why[i].cpu;
      iv += pend_why[i].ivcsw > 0; v += pend_why[i].vcsw > 0; fl += pend_why[i].flt > 0;
    }
    int n = b - a > 0 ? b - a : 1;
    const char *k = part ? "pending_tail1pct" : "pending_body99pct";
    printf("%s_n %d\n%s_wall_us %.1f\n%s_cpu_us %.1f\n%s_preempted_pct %.0f\n%s_slept_pct %.0f\n%s_faulted_pct %.0f\n",
           k, b - a, k, w / n * 1e6, k, c / n * 1e6, k, iv / n * 100, k, v / n * 100, k, fl / n * 100);
  }
}

/* One thread, 32 async sessions: start a sign on each, then keep every
 * session busy, completing whichever is done. */
static run_t async_run(int n) {
  enum { S = 32 };
  CK_SESSION_HANDLE h[S];
  CK_BYTE sig[S][64];
  int busy[S];
  CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
  int done = 0, started = 0;
  run_t res = {0};
  for (int i = 0; i < S; i++) { h[i] = session(CKF_ASYNC_SESSION); busy[i] = 0; }
  double t0 = now();
  while (done < n) {
    for (int i = 0; i < S; i++) {
      if (!busy[i] && started < n) {
        CK_ULONG len = 64;
        if (f->C_SignInit(h[i], &m, ec_key) != CKR_OK) res.errs++;
        struct rusage ru0, ru1;
        getrusage(RUSAGE_THREAD, &ru0);
        double c0 = thread_cpu();
        double s = now();
        CK_RV r = f->C_Sign(h[i], (CK_BYTE_PTR) "bench", 5, sig[i], &len);
        double d = now() - s;
        double c1 = thread_cpu();
        getrusage(RUSAGE_THREAD, &ru1);
        started++;
        if (r == CKR_PENDING_) {
          busy[i] = 1;
          if (npend < pend_cap) {
            pend_why[npend] = (pend_why_t){d, c1 - c0, ru1.ru_nivcsw - ru0.ru_nivcsw, ru1.ru_nvcsw - ru0.ru_nvcsw, ru1.ru_minflt - ru0.ru_minflt};
            pend[npend++] = d;
          }
        }
        else { done++; res.errs += r != CKR_OK; }
      } else if (busy[i]) {
        CK_ASYNC_DATA a = {0, NULL, 0, 0, 0};
        CK_RV r = f->C_AsyncComplete(h[i], (CK_UTF8CHAR_PTR) "C_Sign", &a);
        if (r != CKR_PENDING_) { busy[i] = 0; done++; res.errs += r != CKR_OK; }
      }
    }
  }
  res.rate = n / (now() - t0);
  for (int i = 0; i < S; i++) f->C_CloseSession(h[i]);
  return res;
}

/* The raw floor (rawfloor.c) on the module's own swtpm, run between two
 * of the module's runs: the module lets go of the swtpm after 20 ms idle
 * (tpmtoken.ReleaseAfter), so the floor's client gets in. */
static const char *rawfloor, *sock;
static run_t floor_run(const char *kind, int n) {
  run_t r = {0};
  char cmd[4096], line[256];
  usleep(60000);
  snprintf(cmd, sizeof cmd, "'%s' '%s' %s %d", rawfloor, sock, kind, n);
  FILE *p = popen(cmd, "r");
  while (p && fgets(line, sizeof line, p)) {
    char k[64];
    double v;
    if (sscanf(line, "%63s %lf", k, &v) != 2) continue;
    if (strstr(k, "signs_per_s")) r.rate = v;
    else if (strstr(k, "p50")) r.p50 = v;
    else if (strstr(k, "p99")) r.p99 = v;
    else if (strstr(k, "cpu")) r.cpu = v;
  }
  if (!p || pclose(p) != 0 || r.rate == 0) { fprintf(stderr, "rawfloor failed\n"); exit(8); }
  return r;
}

static double median(double *v, int n) { return pct(v, n, 50); }

enum { MAXR = 9 };
static int rounds = 3;

/* interleaved runs one case `rounds` times, each between two runs of the
 * raw floor; the ratio of each round is the module's against the mean of
 * the floors beside it (latency for one thread, throughput for many). The
 * round with the median ratio is printed as the case's figures. */
static void interleaved(const char *name, const char *kind, int latency, run_t (*run)(void *), void *arg, int nfloor) {
  double ratios[MAXR], sorted[MAXR], fp50[MAXR], frate[MAXR], fcpu[MAXR];
  run_t m[MAXR];
  for (int i = 0; i < rounds; i++) {
    run_t a = floor_run(kind, nfloor);
    m[i] = run(arg);
    run_t b = floor_run(kind, nfloor);
    fp50[i] = (a.p50 + b.p50) / 2;
    frate[i] = (a.rate + b.rate) / 2;
    fcpu[i] = (a.cpu + b.cpu) / 2;
    ratios[i] = latency ? fp50[i] / m[i].p50 : m[i].rate / frate[i];
    sorted[i] = ratios[i];
  }
  double med = median(sorted, rounds);
  int k = 0;
  for (int i = 0; i < rounds; i++)
    if (ratios[i] == med) k = i;
  int errs = 0;
  char all[128] = "";
  for (int i = 0; i < rounds; i++) {
    errs += m[i].errs;
    snprintf(all + strlen(all), sizeof all - strlen(all), "%s%.2f", i ? "/" : "", ratios[i]);
  }
  printf("%s_signs_per_s %.0f\n%s_p50_ms %.3f\n%s_p99_ms %.3f\n%s_errors %d\n", name, m[k].rate, name, m[k].p50, name, m[k].p99,
         name, errs);
  printf("%s_cpu_us %.1f\n%s_ratio %.2f\n%s_ratios %s\n", name, m[k].cpu, name, med, name, all);
  printf("%s_floor_signs_per_s %.0f\n%s_floor_p50_ms %.3f\n%s_floor_cpu_us %.1f\n", name, frate[k], name, fp50[k], name, fcpu[k]);
  fflush(stdout);
}

struct sync_args { CK_OBJECT_HANDLE key; CK_MECHANISM_TYPE mech; int n; };
static run_t sync_case(void *a) { struct sync_args *s = a; return sync_run(s->key, s->mech, s->n); }
static run_t threads_case(void *a) { return threads_run(*(int *)a); }
static run_t async_case(void *a) { return async_run(*(int *)a); }

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

/* child_mechs: how many of the parent's mechanisms a forked child lists
 * (p11-kit's RPC carries few; module/child_mech.c makes the hash-and-sign
 * ones in the child), and whether the child signs with ECDSA-SHA256, which
 * the RPC does not carry. */
static void child_mechs(CK_OBJECT_HANDLE key) {
  CK_MECHANISM_TYPE pl[256];
  CK_ULONG pn = 256;
  f->C_GetMechanismList(0, pl, &pn);
  fflush(stdout);
  int p[2];
  if (pipe(p) != 0) exit(7);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(120);
    char out[256];
    CK_SESSION_HANDLE c;
    CK_MECHANISM_TYPE l[256];
    CK_ULONG n = 256; /* the list, not its count: p11-kit's client counts what it then leaves out */
    if (f->C_Initialize(NULL) != CKR_OK) _exit(1);
    if (f->C_GetMechanismList(0, l, &n) != CKR_OK) _exit(1);
    if (f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &c) != CKR_OK) _exit(1);
    if (f->C_Login(c, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8) != CKR_OK) _exit(1);
    int ok = sign_once(c, key, CKM_ECDSA_SHA256) == 0;
    int len = snprintf(out, sizeof out, "child_mechs %lu\nchild_ecdsa_sha256 %s\n", n, ok ? "ok" : "fails");
    if (write(p[1], out, len) != len) _exit(1);
    f->C_Finalize(NULL);
    _exit(0);
  }
  close(p[1]);
  char buf[256];
  ssize_t r;
  while ((r = read(p[0], buf, sizeof buf)) > 0) fwrite(buf, 1, r, stdout);
  close(p[0]);
  waitpid(pid, NULL, 0);
  printf("parent_mechs %lu\n", pn);
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
  rawfloor = argc > 4 ? argv[3] : NULL;
  sock = argc > 4 ? argv[4] : NULL;
  if (getenv("BENCH_ROUNDS")) rounds = atoi(getenv("BENCH_ROUNDS"));
  if (rounds < 1 || rounds > MAXR) rounds = 3;
  if (!rawfloor) return 9;
  pend_cap = n * rounds;
  pend = malloc(pend_cap * sizeof *pend);
  pend_why = malloc(pend_cap * sizeof *pend_why);
  struct sync_args ec = {ec_key, CKM_ECDSA_SHA256, n}, rsa = {rsa_key, CKM_SHA256_RSA_PKCS, n / 4};
  /* BENCH_ONLY=NAME runs one case and stops (for a profiler). */
  const char *only = getenv("BENCH_ONLY");
#define CASE(name, kind, lat, fn, arg, nf) \
  if (!only || strcmp(only, name) == 0) interleaved(name, kind, lat, fn, arg, nf);
  CASE("ec_sync1", "ec", 1, sync_case, &ec, n)
  CASE("rsa_sync1", "rsa", 1, sync_case, &rsa, n / 4)
  CASE("ec_threads8", "ec", 0, threads_case, &n, n)
  CASE("ec_async32", "ec", 0, async_case, &n, n)
  if (!only || strcmp(only, "child_mechs") == 0) child_mechs(token_key);
  /* (also with BENCH_ONLY=ec_async32) */
  if (npend) printf("pending_return_p50_us %.1f\npending_return_p99_us %.1f\n", pct(pend, npend, 50) * 1e6, pct(pend, npend, 99) * 1e6);
  pending_tail();
  if (only) { f->C_Finalize(NULL); return 0; }
  forked(h, token_key, n);
  f->C_Finalize(NULL);
  return 0;
}
