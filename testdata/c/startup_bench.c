/* make bench (testdata/bench.sh): where "dlopen -> logged in" goes. Each
 * round is a fresh process (fork, then exec of this program with "one"),
 * so every round pays what a new host process pays: the loader mapping
 * and relocating the .so, the Go runtime's start and the packages' init
 * (run on a thread of the runtime's, waited for by the first call into
 * Go), C_Initialize (store, TPM connection, the SRK), C_OpenSession and
 * C_Login (the PIN checked by the TPM). With "cold", the .so's pages are
 * dropped from the page cache first (posix_fadvise DONTNEED: only pages
 * no process maps), so the loader reads it from the disk.
 *
 *   startup_bench MODULE ROUNDS [cold]   prints the median round's phases
 *                                        and every round's total, in ms
 *   startup_bench MODULE one [cold]      one round: its phases on stdout
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "test.h"

#define NPH 4
static const char *names[NPH] = {"dlopen", "go_start", "initialize", "login"};

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static long faults(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt + r.ru_majflt;
}

/* one round, in this process: "ms ms ms ms faults". */
static int one(const char *path, int cold) {
  if (cold) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 2;
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
  double t[NPH + 1];
  long f0 = faults();
  t[0] = now();
  void *so = dlopen(path, RTLD_NOW);
  if (!so) return 2;
  t[1] = now();
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  if (!get_iface || get_iface(NULL, NULL, &ip, 0) != CKR_OK) return 3;
  CK_FUNCTION_LIST_3_2 *f = ip->pFunctionList;
  /* C_GetInterface is C; the first call into Go waits for the runtime
   * and the packages' init. Before C_Initialize it only says so. */
  CK_INFO info;
  if (f->C_GetInfo(&info) != CKR_CRYPTOKI_NOT_INITIALIZED) return 4;
  t[2] = now();
  if (f->C_Initialize(NULL) != CKR_OK) return 5;
  t[3] = now();
  CK_SESSION_HANDLE h;
  if (f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h) != CKR_OK) return 6;
  if (f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8) != CKR_OK) return 7;
  t[4] = now();
  long f1 = faults();
  for (int i = 0; i < NPH; i++) printf("%.3f ", (t[i + 1] - t[i]) * 1e3);
  printf("%ld\n", f1 - f0);
  f->C_Finalize(NULL);
  return 0;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  (void) failures; /* test.h's, for the tests */
  if (argc < 3) return 1;
  int cold = argc > 3 && strcmp(argv[3], "cold") == 0;
  if (strcmp(argv[2], "one") == 0) return one(argv[1], cold);
  int n = atoi(argv[2]);
  if (n < 1 || n > 1000) return 1;
  double (*ph)[NPH] = calloc(n, sizeof *ph), *tot = calloc(n, sizeof *tot);
  long *flt = calloc(n, sizeof *flt);
  for (int r = 0; r < n; r++) {
    int p[2];
    if (pipe(p) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
      dup2(p[1], 1);
      close(p[0]);
      execl("/proc/self/exe", argv[0], argv[1], "one", cold ? "cold" : "warm", (char *) NULL);
      _exit(127);
    }
    close(p[1]);
    char buf[256];
    ssize_t k = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    if (k <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "startup round %d failed (exit %d)\n", r, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
      return 1;
    }
    buf[k] = 0;
    char *s = buf;
    for (int i = 0; i < NPH; i++) {
      ph[r][i] = strtod(s, &s);
      tot[r] += ph[r][i];
    }
    flt[r] = strtol(s, NULL, 10);
  }
  /* the median round (by its total), with its phases */
  int *idx = calloc(n, sizeof *idx);
  for (int r = 0; r < n; r++) idx[r] = r;
  for (int a = 1; a < n; a++)
    for (int b = a; b > 0 && tot[idx[b]] < tot[idx[b - 1]]; b--) {
      int x = idx[b];
      idx[b] = idx[b - 1];
      idx[b - 1] = x;
    }
  int m = idx[(n - 1) / 2];
  const char *k = cold ? "cold" : "warm";
  printf("startup_%s_ms %.1f\n", k, tot[m]);
  for (int i = 0; i < NPH; i++) printf("startup_%s_%s_ms %.1f\n", k, names[i], ph[m][i]);
  printf("startup_%s_faults %ld\n", k, flt[m]);
  printf("startup_%s_rounds ", k);
  for (int r = 0; r < n; r++) printf("%s%.1f", r ? "/" : "", tot[r]);
  printf("\n");
  qsort(tot, n, sizeof *tot, cmp);
  printf("startup_%s_min_ms %.1f\nstartup_%s_max_ms %.1f\n", k, tot[0], k, tot[n - 1]);
  return 0;
}
