/* Forking hosts (pre-fork servers): a child forked after the module loaded
 * gets a working module, served by a helper process (module/fork.c).
 *   fork_test MODULE PIN
 * The token holds an EC P-256 key pair with CKA_ID 01. Each scenario forks
 * its children (REPS, default 20) at once; every child must sign within the
 * time limit and send its signature back, and the parent verifies each one
 * with C_Verify. A child that does not finish in time is killed and counted
 * as hung. Scenarios:
 *   never-initialized  parent loaded the library but never called C_Initialize
 *   initialized        parent initialized, logged in and found the key
 *   finalized          parent initialized and finalized
 *   busy               4 parent threads sign nonstop while it forks
 *   parent-handle      children sign with the handle the parent found,
 *                      without looking for it
 *   grandchild         a child initializes, forks; the grandchild signs too
 *   exit-unfinalized   children exit() without C_Finalize
 *   killed             children are killed after signing
 *   helper-dies        each child's helper is killed after it signed: the
 *                      next call is CKR_DEVICE_ERROR (no SIGPIPE kills the
 *                      child, whose SIGPIPE is left at its default), and
 *                      C_Finalize, C_Initialize start a new helper that signs
 *   helper-stopped     each child's helper is stopped (SIGSTOP) before the
 *                      child's C_Finalize, which must still return (found by
 *                      its marker after 64 KiB of environment); the child's
 *                      own environment never shows the marker
 *   close-fds          children close every descriptor after signing (as a
 *                      daemon does) and open a file of their own, which
 *                      C_Finalize must leave open
 * and no helper outlives its child or is left unreaped (the test is its
 * descendants' subreaper, so it sees orphans). */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "test.h"

#define CKM_ECDSA 0x1041UL
#define CKO_PRIVATE_KEY 3UL
#define CKO_PUBLIC_KEY 2UL
/* How long a child may take (only a hang reaches it): FORK_SECONDS, else 60. */
static int CHILD_SECONDS = 60;
#define CKR_DEVICE_ERROR 0x30UL

static CK_FUNCTION_LIST_3_2 *f;
static const char *pin;
static const char *module_path;
static int reps = 20;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* What a child sends back: one write of less than PIPE_BUF, atomic. */
struct report {
  int idx;
  int ok;
  CK_OBJECT_HANDLE key;
  CK_ULONG siglen;
  CK_BYTE sig[72];
  char err[120];
};

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE h, CK_ULONG cls) {
  CK_BYTE id = 1;
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, &id, 1}};
  CK_OBJECT_HANDLE o = 0;
  CK_ULONG n = 0;
  if (f->C_FindObjectsInit(h, t, 2) != CKR_OK) return 0;
  if (f->C_FindObjects(h, &o, 1, &n) != CKR_OK || n != 1) o = 0;
  f->C_FindObjectsFinal(h);
  return o;
}

static void digest_for(int scenario, int idx, CK_BYTE d[32]) {
  for (int i = 0; i < 32; i++) d[i] = (CK_BYTE)(scenario * 31 + idx * 7 + i);
}

/* tpm_connections counts this process's sockets connected to the swtpm of
 * TPM11_TPM (swtpm:unix:PATH): a child must not keep the parent's, or swtpm
 * (one connection at a time) stays busy with it. */
static int tpm_connections(void) {
  const char *spec = getenv("TPM11_TPM");
  if (spec == NULL || strncmp(spec, "swtpm:unix:", 11) != 0) return 0;
  int n = 0;
  for (int fd = 0; fd < 1024; fd++) {
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    if (getpeername(fd, (struct sockaddr *)&a, &len) == 0 && a.sun_family == AF_UNIX && strcmp(a.sun_path, spec + 11) == 0) n++;
  }
  return n;
}

/* pair_sockets counts this process's unix stream sockets made by
 * socketpair() in process maker (p11-kit-client's socket to a helper), and
 * how many of them are close-on-exec. */
static int pair_sockets(pid_t maker, int *cloexec) {
  int n = 0;
  *cloexec = 0;
  for (int fd = 0; fd < 1024; fd++) {
    struct ucred cred;
    int type = 0;
    socklen_t len = sizeof cred, tlen = sizeof type;
    struct sockaddr_un a;
    socklen_t alen = sizeof a;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid != maker) continue;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM) continue;
    if (getsockname(fd, (struct sockaddr *)&a, &alen) != 0 || a.sun_family != AF_UNIX) continue;
    n++;
    if (fcntl(fd, F_GETFD) & FD_CLOEXEC) (*cloexec)++;
  }
  return n;
}

#define STEP(call, what)                                                           \
  do {                                                                             \
    CK_RV r_ = (call);                                                             \
    if (r_ != CKR_OK) {                                                            \
      snprintf(rep.err, sizeof rep.err, "%s: 0x%lx", what, r_);                    \
      goto out;                                                                    \
    }                                                                              \
  } while (0)

/* How a child ends: C_Finalize and _exit; the same after a grandchild of
 * its own signed; exit() without C_Finalize (as nginx workers do); killed
 * by SIGKILL after its report. */
enum ending { FINALIZE, GRANDCHILD, EXIT, KILLED, HELPER_DIES, HELPER_STOPPED, CLOSE_FDS };

/* own_children counts this process's children, running or not reaped
 * (each thread's /proc children list). */
static int own_children(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    char path[300], buf[4096];
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
    int fd = open(path, O_RDONLY), len = fd < 0 ? 0 : (int)read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    buf[len < 0 ? 0 : len] = 0;
    for (char *save = NULL, *t = strtok_r(buf, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) n++;
  }
  if (d) closedir(d);
  return n;
}

/* helper_of returns the pid of the helper serving process owner (found by
 * the FORK_TEST_OWNER=owner its environment inherited: the helper is not
 * a child of its process), or 0. */
static pid_t helper_of(pid_t owner) {
  char want[64];
  int wlen = snprintf(want, sizeof want, "FORK_TEST_OWNER=%d", (int)owner);
  pid_t helper = 0;
  DIR *d = opendir("/proc");
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL && helper == 0) {
    char path[300], buf[16384];
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
    int fd = open(path, O_RDONLY), len = fd < 0 ? 0 : (int)read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    buf[len < 0 ? 0 : len] = 0;
    if (strcmp(buf, "p11-kit-remote\n") != 0) continue;
    snprintf(path, sizeof path, "/proc/%s/environ", e->d_name);
    fd = open(path, O_RDONLY);
    len = fd < 0 ? 0 : (int)read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    for (int i = 0; i + wlen <= len && helper == 0; i++)
      if ((i == 0 || buf[i - 1] == 0) && memcmp(buf + i, want, wlen) == 0 && buf[i + wlen] == 0) helper = atoi(e->d_name);
  }
  if (d) closedir(d);
  return helper;
}

/* gone_or_zombie says whether process pid has ended. */
static int gone_or_zombie(pid_t pid) {
  char path[64], buf[512], *rp;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY), len = fd < 0 ? 0 : (int)read(fd, buf, sizeof buf - 1);
  if (fd >= 0) close(fd);
  buf[len < 0 ? 0 : len] = 0;
  return len <= 0 || ((rp = strrchr(buf, ')')) && rp[2] == 'Z');
}

/* kill_helper sends sig to this process's helper and, for SIGKILL, waits
 * until it is dead (its socket closed). The helper's pid, or 0. */
static pid_t kill_helper(int sig) {
  pid_t helper = helper_of(getpid());
  if (helper == 0 || kill(helper, sig) != 0) return 0;
  if (sig != SIGKILL) return helper;
  for (double end = now() + CHILD_SECONDS; now() < end; usleep(1000))
    if (gone_or_zombie(helper)) return helper;
  return 0;
}

/* child_sign is a child's whole life: initialize, log in, find the key (or
 * take the parent's handle), sign, and report. Checks on the way what a
 * child is promised: uninitialized at first, no async sessions. */
/* env_watch reads the environment until told to stop, noting whether it
 * saw the helper's marker there. */
static int env_watch_stop, env_watch_seen;
static void *env_watch(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&env_watch_stop, __ATOMIC_SEQ_CST))
    if (getenv("TPM11_HELPER_OF") != NULL) env_watch_seen = 1;
  return NULL;
}

__attribute__((noreturn)) static void child_sign(int wfd, int scenario, int idx, CK_OBJECT_HANDLE parent_key, enum ending how) {
  alarm(CHILD_SECONDS);
  struct report rep;
  memset(&rep, 0, sizeof rep);
  rep.idx = idx;
  CK_TOKEN_INFO ti;
  CK_SESSION_HANDLE h = 0;
  CK_RV r;
  if (f->C_GetTokenInfo(0, &ti) != CKR_CRYPTOKI_NOT_INITIALIZED) {
    snprintf(rep.err, sizeof rep.err, "C_GetTokenInfo before C_Initialize is not CKR_CRYPTOKI_NOT_INITIALIZED");
    goto out;
  }
  int held = tpm_connections();
  if (held) {
    snprintf(rep.err, sizeof rep.err, "%d connections to the parent's swtpm inherited, still open", held);
    goto out;
  }
  int cloexec, mine;
  if (pair_sockets(getppid(), &cloexec) != 0) {
    /* A grandchild's copy of its parent's helper socket keeps that helper alive. */
    snprintf(rep.err, sizeof rep.err, "holds its parent's socket to a helper");
    goto out;
  }
  char owner[32];
  snprintf(owner, sizeof owner, "%d", (int)getpid());
  setenv("FORK_TEST_OWNER", owner, 1); /* for helper_of */
  pthread_t watcher;
  if (how == HELPER_STOPPED) {
    /* 64 KiB of environment before the helper's marker, which C_Finalize
     * must still find to continue it; and the child's own environment is
     * never changed for the marker (another thread reads it meanwhile). */
    static char pad[65536];
    memset(pad, 'x', sizeof pad - 1);
    setenv("FORK_TEST_PADDING", pad, 1);
    __atomic_store_n(&env_watch_stop, 0, __ATOMIC_SEQ_CST);
    pthread_create(&watcher, NULL, env_watch, NULL);
  }
  r = f->C_Initialize(NULL);
  if (how == HELPER_STOPPED) {
    __atomic_store_n(&env_watch_stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(watcher, NULL);
    if (env_watch_seen || getenv("TPM11_HELPER_OF") != NULL) {
      snprintf(rep.err, sizeof rep.err, "TPM11_HELPER_OF appeared in the child's own environment");
      goto out;
    }
  }
  STEP(r, "C_Initialize");
  if ((mine = pair_sockets(getpid(), &cloexec)) != 1 || cloexec != 1) {
    snprintf(rep.err, sizeof rep.err, "%d sockets to its helper, %d close-on-exec; want 1, 1", mine, cloexec);
    goto out;
  }
  int kids = own_children();
  if (kids != 0) {
    /* A program it execs would keep them as zombies (it never reaps). */
    snprintf(rep.err, sizeof rep.err, "%d children after C_Initialize (the helper or its starter); want none", kids);
    goto out;
  }
  STEP(f->C_GetTokenInfo(0, &ti), "C_GetTokenInfo");
  if (ti.flags & CKF_ASYNC_SESSION_SUPPORTED) {
    snprintf(rep.err, sizeof rep.err, "token claims async sessions in a child");
    goto out;
  }
  r = f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &h);
  if (r != CKR_SESSION_ASYNC_NOT_SUPPORTED) {
    snprintf(rep.err, sizeof rep.err, "async C_OpenSession in a child: 0x%lx", r);
    goto out;
  }
  STEP(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h), "C_OpenSession");
  STEP(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), "C_Login");
  rep.key = parent_key ? parent_key : find_key(h, CKO_PRIVATE_KEY);
  if (rep.key == 0) {
    snprintf(rep.err, sizeof rep.err, "key not found");
    goto out;
  }
  if (how == GRANDCHILD) {
    /* Fork with the helper running: the grandchild must get its own. */
    pid_t g = fork();
    if (g == 0) {
      child_sign(wfd, scenario, idx + 1000, parent_key, FINALIZE);
      _exit(0);
    }
    int st = 0;
    double end = now() + CHILD_SECONDS;
    while (waitpid(g, &st, WNOHANG) == 0 && now() < end) usleep(10000);
    if (!WIFEXITED(st)) {
      kill(g, SIGKILL);
      waitpid(g, &st, 0);
      snprintf(rep.err, sizeof rep.err, "grandchild did not finish");
      goto out;
    }
  }
  CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
  CK_BYTE d[32];
  digest_for(scenario, idx, d);
  rep.siglen = sizeof rep.sig;
  STEP(f->C_SignInit(h, &m, rep.key), "C_SignInit");
  STEP(f->C_Sign(h, d, 32, rep.sig, &rep.siglen), "C_Sign");
  if (how == HELPER_DIES) {
    signal(SIGPIPE, SIG_DFL); /* as a host that does not ignore it */
    if (kill_helper(SIGKILL) == 0) {
      snprintf(rep.err, sizeof rep.err, "no helper to kill");
      goto out;
    }
    CK_ULONG len = sizeof rep.sig;
    CK_RV r1 = f->C_SignInit(h, &m, rep.key), r2 = r1 == CKR_OK ? f->C_Sign(h, d, 32, rep.sig, &len) : r1;
    if (r2 != CKR_DEVICE_ERROR) {
      snprintf(rep.err, sizeof rep.err, "a call after the helper died: 0x%lx, 0x%lx; want CKR_DEVICE_ERROR", r1, r2);
      goto out;
    }
    f->C_Finalize(NULL); /* its answer is the dead helper's */
    STEP(f->C_Initialize(NULL), "C_Initialize after the helper died");
    STEP(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h), "C_OpenSession (new helper)");
    STEP(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), "C_Login (new helper)");
    rep.siglen = sizeof rep.sig;
    STEP(f->C_SignInit(h, &m, rep.key), "C_SignInit (new helper)");
    STEP(f->C_Sign(h, d, 32, rep.sig, &rep.siglen), "C_Sign (new helper)");
  }
  if (how == HELPER_STOPPED) {
    pid_t stopped = kill_helper(SIGSTOP);
    if (stopped == 0) {
      snprintf(rep.err, sizeof rep.err, "no helper to stop");
      goto out;
    }
    STEP(f->C_Finalize(NULL), "C_Finalize with the helper stopped");
    kill(stopped, SIGCONT); /* the debugger lets go: it sees its socket closed and exits */
  }
  if (how == CLOSE_FDS) {
    int helper_fd = -1; /* our end of the socket to the helper: a socketpair of ours */
    for (int fd = 3; fd < 1000 && helper_fd < 0; fd++) {
      struct ucred cred;
      socklen_t len = sizeof cred;
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid == getpid()) helper_fd = fd;
    }
    int keep = fcntl(wfd, F_DUPFD_CLOEXEC, 1000); /* the report pipe, out of the way */
    for (int fd = 3; fd < 1000; fd++) close(fd);
    wfd = keep;
    /* Files of the host's fill the numbers up to the helper socket's. */
    char tmpl[] = "/tmp/fork_test_mine.XXXXXX";
    int mine_fd = -1;
    while (helper_fd >= 3 && (mine_fd = mkstemp(tmpl)) >= 0 && mine_fd < helper_fd) {
      unlink(tmpl);
      strcpy(tmpl, "/tmp/fork_test_mine.XXXXXX");
    }
    struct stat before, after;
    if (mine_fd != helper_fd || fstat(mine_fd, &before) != 0) {
      snprintf(rep.err, sizeof rep.err, "no file of the host's at the helper socket's number %d (%d)", helper_fd, mine_fd);
      goto out;
    }
    unlink(tmpl);
    f->C_Finalize(NULL); /* its answer is the closed helper's */
    if (fstat(mine_fd, &after) != 0 || after.st_ino != before.st_ino || after.st_dev != before.st_dev) {
      snprintf(rep.err, sizeof rep.err, "C_Finalize closed descriptor %d, a file of the host's", mine_fd);
      goto out;
    }
  }
  if (how == FINALIZE || how == GRANDCHILD || how == HELPER_DIES) STEP(f->C_Finalize(NULL), "C_Finalize");
  rep.ok = 1;
out:
  if (write(wfd, &rep, sizeof rep) != sizeof rep) _exit(3);
  if (rep.ok && how == EXIT) exit(0);
  if (rep.ok && how == KILLED)
    for (;;) pause();
  _exit(rep.ok ? 0 : 1);
}

/* Busy parent: threads signing on their own sessions. */
static volatile int stop;
static int signing; /* busy threads that have signed once (atomic) */
static CK_OBJECT_HANDLE busy_key;
static void *busy(void *arg) {
  (void)arg;
  CK_SESSION_HANDLE h;
  long bad = f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK, n = 0;
  CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
  CK_BYTE d[32] = {1}, sig[72];
  while (!stop && !bad) {
    CK_ULONG len = sizeof sig;
    bad += f->C_SignInit(h, &m, busy_key) != CKR_OK || f->C_Sign(h, d, 32, sig, &len) != CKR_OK;
    if (n++ == 0) __atomic_add_fetch(&signing, 1, __ATOMIC_SEQ_CST);
  }
  if (n == 0 || bad) __atomic_add_fetch(&signing, 1, __ATOMIC_SEQ_CST); /* never leave main waiting */
  f->C_CloseSession(h);
  return (void *)(bad ? -1 : n);
}

/* describe prints where a hung process and its children (its helper, a
 * grandchild) wait, for the log. */
static void describe(pid_t pid, int depth) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL) return;
  if (fgets(buf, sizeof buf, fp)) fprintf(stderr, "  %*s%.*s\n", depth * 2, "", (int)strcspn(buf, "\n") < 60 ? (int)strcspn(buf, "\n") : 60, buf);
  fclose(fp);
  snprintf(path, sizeof path, "/proc/%d/stack", (int)pid);
  if ((fp = fopen(path, "r")) != NULL) {
    for (int i = 0; i < 4 && fgets(buf, sizeof buf, fp); i++) fprintf(stderr, "  %*s  %s", depth * 2, "", buf);
    fclose(fp);
  }
  DIR *d = opendir("/proc");
  struct dirent *e;
  while (d && depth < 3 && (e = readdir(d)) != NULL) {
    int child = atoi(e->d_name), ppid = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", child);
    if (child <= 0 || (fp = fopen(path, "r")) == NULL) continue;
    char *rp;
    if (fgets(buf, sizeof buf, fp) && (rp = strrchr(buf, ')')) != NULL) sscanf(rp + 2, "%*c %d", &ppid);
    fclose(fp);
    if (ppid == pid) describe(child, depth + 1);
  }
  if (d) closedir(d);
}

/* run forks reps children at once and collects their reports; the parent
 * then initializes if need be and verifies every signature. */
static void run(const char *name, int scenario, CK_OBJECT_HANDLE parent_key, enum ending how) {
  const char *only = getenv("FORK_ONLY"); /* one scenario, when debugging */
  if (only && strcmp(only, name) != 0) return;
  int fds[2];
  if (pipe(fds) != 0) exit(2);
  pid_t *pids = calloc(reps, sizeof *pids);
  fflush(NULL); /* or children that exit() print it again */
  double t0 = now();
  for (int i = 0; i < reps; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      close(fds[0]);
      child_sign(fds[1], scenario, i, parent_key, how);
    }
  }
  close(fds[1]);
  int hung = 0, failed = 0, got = 0;
  double end = t0 + CHILD_SECONDS + 10;
  struct report *reps_got = calloc(2 * reps, sizeof *reps_got);
  if (how == KILLED) {
    /* Each reports, then waits to be killed. */
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    while (got < reps && now() < end) {
      if (read(fds[0], &reps_got[got], sizeof *reps_got) == sizeof *reps_got) got++;
      else usleep(10000);
    }
    for (int i = 0; i < reps; i++) kill(pids[i], SIGKILL);
    fcntl(fds[0], F_SETFL, 0);
  }
  for (int i = 0; i < reps; i++) {
    int st = 0;
    pid_t r;
    while ((r = waitpid(pids[i], &st, WNOHANG)) == 0 && now() < end) usleep(10000);
    if (r == 0) {
      fprintf(stderr, "%s: child %d hung:\n", name, i);
      describe(pids[i], 0);
      kill(pids[i], SIGKILL);
      waitpid(pids[i], &st, 0);
      hung++;
    } else if (how == KILLED ? !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL : !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      failed++;
    }
  }
  double secs = now() - t0;
  int verified = 0, want = how == GRANDCHILD ? 2 * reps : reps;
  while (got < 2 * reps && read(fds[0], &reps_got[got], sizeof *reps_got) == sizeof *reps_got) got++;
  int inited = f->C_Initialize(NULL);
  CHECK(inited == CKR_OK || inited == CKR_CRYPTOKI_ALREADY_INITIALIZED, "%s: parent C_Initialize 0x%x", name, inited);
  CK_SESSION_HANDLE h;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
  CK_RV lr = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)); /* to see the private key */
  CHECK(lr == CKR_OK || lr == CKR_USER_ALREADY_LOGGED_IN, "%s: parent C_Login 0x%lx", name, lr);
  CK_OBJECT_HANDLE pub = find_key(h, CKO_PUBLIC_KEY), priv = find_key(h, CKO_PRIVATE_KEY);
  CHECK(pub != 0, "%s: parent cannot find the public key", name);
  for (int i = 0; i < got; i++) {
    struct report rep = reps_got[i];
    if (!rep.ok) {
      fprintf(stderr, "  %s child %d: %s\n", name, rep.idx, rep.err);
      continue;
    }
    CHECK(rep.key == priv, "%s child %d: key handle %lu, the parent's is %lu", name, rep.idx, rep.key, priv);
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    CK_BYTE d[32];
    digest_for(scenario, rep.idx, d);
    if (f->C_VerifyInit(h, &m, pub) == CKR_OK && f->C_Verify(h, d, 32, rep.sig, rep.siglen) == CKR_OK) verified++;
  }
  close(fds[0]);
  f->C_CloseSession(h);
  CHECK(hung == 0 && failed == 0 && got == want && verified == want,
        "%s: %d hung, %d failed, %d of %d reports, %d signatures verified", name, hung, failed, got, want, verified);
  printf("fork_test %-18s %2d children%s: %d signed, %d verified, %d hung, %.1f s\n", name, reps,
         how == GRANDCHILD ? " + grandchildren" : "", got, verified, hung, secs);
  free(pids);
  free(reps_got);
}

/* helpers counts this store's p11-kit-remote helpers that still run, and
 * the helpers (running or exited, not reaped) that this process adopted:
 * it is the subreaper of its descendants, so a helper whose child did not
 * reap it comes here. */
static void helpers(const char *module, int *running, int *adopted) {
  const char *store = getenv("TPM11_STORE");
  DIR *d = opendir("/proc");
  struct dirent *e;
  *running = *adopted = 0;
  while (d && (e = readdir(d)) != NULL) {
    char path[300], buf[8192];
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    int fd = open(path, O_RDONLY), len = fd < 0 ? 0 : (int)read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    buf[len < 0 ? 0 : len] = 0;
    char *rp = strrchr(buf, ')'), state = 0;
    int ppid = 0;
    if (strstr(buf, "(p11-kit-remote)") == NULL || rp == NULL || sscanf(rp + 2, "%c %d", &state, &ppid) != 2) continue;
    if (ppid == getpid()) (*adopted)++;
    if (state == 'Z') continue;
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    fd = open(path, O_RDONLY);
    len = fd < 0 ? 0 : (int)read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    if (len <= 0) continue;
    buf[len] = 0;
    for (int i = 0; i < len; i++)
      if (buf[i] == 0) buf[i] = ' ';
    if (strstr(buf, module) == NULL) continue;
    snprintf(path, sizeof path, "/proc/%s/environ", e->d_name);
    fd = open(path, O_RDONLY);
    len = fd < 0 ? 0 : (int)read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    for (int i = 0; store && i + 12 < len; i++)
      if ((i == 0 || buf[i - 1] == 0) && strncmp(buf + i, "TPM11_STORE=", 12) == 0 && strcmp(buf + i + 12, store) == 0)
        (*running)++;
  }
  if (d) closedir(d);
}

/* settle waits (30 s at most: only a hang reaches it) until no helper
 * runs, and reaps the helpers that ended: none is a child of the process
 * it served (see own_children), so as orphans they come here, this
 * process being its descendants' subreaper. */
static void settle(const char *module, const char *after) {
  int running = 0, adopted = 0;
  for (int i = 0; i < 300; i++, usleep(100000)) {
    helpers(module, &running, &adopted);
    if (running == 0) break;
  }
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  CHECK(running == 0, "after %s: %d helpers still running", after, running);
}

/* finalize_parent: C_Finalize in the parent, which a scenario skipped by
 * FORK_ONLY may have left uninitialized. */
static void finalize_parent(void) {
  CK_RV r = f->C_Finalize(NULL);
  CHECK(r == CKR_OK || (getenv("FORK_ONLY") != NULL && r == CKR_CRYPTOKI_NOT_INITIALIZED), "parent C_Finalize: 0x%lx", r);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  module_path = argv[1];
  pin = argv[2];
  if (getenv("REPS")) reps = atoi(getenv("REPS"));
  if (getenv("FORK_SECONDS")) CHILD_SECONDS = atoi(getenv("FORK_SECONDS"));
  char module[4096];
  if (!realpath(module_path, module)) return 2;
  /* Orphans come here, not to init: a helper its child did not reap is
   * counted (settle). */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  void *so = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
  if (!so) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  if (get_iface(NULL, NULL, &ip, 0) != CKR_OK) return 2;
  f = ip->pFunctionList;

  /* 1. Loaded, never initialized (this hung in the child's C_Initialize). */
  run("never-initialized", 1, 0, FINALIZE);
  finalize_parent();

  /* 2. Initialized, logged in, key found. */
  CK_SESSION_HANDLE h;
  RV(f->C_Initialize(NULL), CKR_OK);
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
  CK_OBJECT_HANDLE key = find_key(h, CKO_PRIVATE_KEY);
  CHECK(key != 0, "parent cannot find the key");
  run("initialized", 2, 0, FINALIZE);
  settle(module, "initialized");

  /* 3. Children sign with the parent's handle, found before the fork. */
  run("parent-handle", 3, key, FINALIZE);

  /* 4. Busy: 4 threads sign while the parent forks (3 of 20 children hung
   * in their first call). */
  busy_key = key;
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, busy, NULL);
  /* Fork only once every thread signs (60 s bound: only a hang reaches it). */
  for (int i = 0; i < 60000 && __atomic_load_n(&signing, __ATOMIC_SEQ_CST) < 4; i++) usleep(1000);
  CHECK(__atomic_load_n(&signing, __ATOMIC_SEQ_CST) >= 4, "the busy threads never signed");
  run("busy", 4, 0, FINALIZE);
  stop = 1;
  long total = 0, bad = 0;
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(t[i], &r);
    if ((long)r < 0) bad++;
    else total += (long)r;
  }
  CHECK(bad == 0 && total > 0, "busy parent threads: %ld failed, %ld signs", bad, total);
  printf("fork_test busy parent threads signed %ld times meanwhile\n", total);

  /* 5. Initialized and finalized (the child hung in C_GetTokenInfo). */
  RV(f->C_Finalize(NULL), CKR_OK);
  run("finalized", 5, 0, FINALIZE);

  /* 6. A child of a child. */
  run("grandchild", 6, 0, GRANDCHILD);
  /* Nothing left running: each child's helper ended with its C_Finalize,
   * and the child reaped it. */
  settle(module, "the C_Finalize scenarios");

  /* 7. Children that exit() without C_Finalize, as nginx workers do: they
   * finalize at exit and reap their helpers. */
  run("exit-unfinalized", 7, 0, EXIT);
  settle(module, "exit() without C_Finalize");

  /* 9. Helpers killed under their children (run before 8, which leaves
   * the helpers adopted here). */
  run("helper-dies", 9, 0, HELPER_DIES);
  settle(module, "helpers killed");

  /* 10. Helpers stopped before C_Finalize; 11. hosts that close every
   * descriptor after C_Initialize. */
  run("helper-stopped", 10, 0, HELPER_STOPPED);
  settle(module, "helpers stopped");
  run("close-fds", 11, 0, CLOSE_FDS);
  settle(module, "closed descriptors");

  /* 8. Children killed: their helpers see the socket close and exit. */
  run("killed", 8, 0, KILLED);
  settle(module, "SIGKILL");
  finalize_parent();
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("fork_test: all checks passed\n");
  return 0;
}
