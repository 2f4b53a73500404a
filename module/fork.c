// Forked processes. A c-shared Go library starts its runtime when it is
// loaded, and a Go runtime does not survive fork: the child has only the
// forking thread, so any Go call there can wait forever on a lock or thread
// left in the parent. So no Go code ever runs in a process other than the
// one that loaded the library:
//
// - tpm11_forked is set by a pthread_atfork child handler; every C_* entry
//   point (entry.c) tests it and, when set, calls tpm11_child_<name>.
// - A child's C_Initialize starts a helper, `p11-kit remote <this .so>`,
//   in which the same module runs in a fresh process, and loads p11-kit's
//   client module (p11-kit-client.so, Debian's p11-kit-modules) pointed at
//   it: p11-kit-client's "|command" address runs the command over a
//   socketpair (its stdin/stdout), so the helper serves only this child.
//   Every call then goes through p11-kit's RPC. C_Finalize stops the helper
//   (p11-kit-client closes the socket and reaps it); the child's exit closes
//   the socket, and the helper exits on end of file.
// - A grandchild is a child like any other: the handler forgets the
//   parent's helper (and closes the grandchild's copy of its socket), and
//   its own C_Initialize starts its own.
// - A child closes its copy of the parent's connection to swtpm, which
//   serves one connection at a time: a copy held open would keep swtpm busy
//   with a connection the parent already gave up.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "fork.h"
#include "child_mech.h"


int tpm11_forked;

/* This library's own path, resolved when it was loaded (the helper loads
 * the same file; a relative path would not survive a chdir). */
static char self_path[PATH_MAX];

static void after_fork_in_child(void);

__attribute__((constructor)) static void fork_init(void) {
  Dl_info info;
  if (dladdr((void *)&fork_init, &info) && info.dli_fname && !realpath(info.dli_fname, self_path)) self_path[0] = 0;
  pthread_atfork(NULL, NULL, after_fork_in_child);
}

static void child_log(const char *fmt, ...) {
  const char *level = getenv("TPM11_LOG");
  if (level == NULL || level[0] == 0) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "tpm11 (forked process %d): ", (int)getpid());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* each_fd calls f on every open descriptor. Async-signal-safe (it runs in
 * the atfork child handler): no allocation, raw getdents64 on
 * /proc/self/fd. f may close the descriptor it is given. */
struct dirent64_ {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};
static void each_fd(void (*f)(int fd, void *arg), void *arg) {
  int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  char buf[2048] __attribute__((aligned(8)));
  long n;
  while ((n = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      struct dirent64_ *d = (struct dirent64_ *)(buf + off);
      off += d->d_reclen;
      const char *p = d->d_name;
      if (*p < '0' || *p > '9') continue;
      int fd = 0;
      for (; *p >= '0' && *p <= '9'; p++) fd = fd * 10 + (*p - '0');
      if (fd != dfd) f(fd, arg);
    }
  }
  close(dfd);
}

/* ---- The parent's swtpm connection ---------------------------------- */

/* Where the owner's TPM is, when it is a swtpm: double-buffered so that a
 * fork during tpm11_fork_note_tpm sees one whole value (C_Initialize calls
 * are serialized by the Go side). */
#define MAX_PEERS 4
struct tpm_peer {
  int n; /* addresses below; 0: nothing to close */
  struct sockaddr_storage addr[MAX_PEERS];
  socklen_t len[MAX_PEERS];
  dev_t dev; /* the unix socket file, when it could be stat'ed */
  ino_t ino;
};
static struct tpm_peer peers[2];
static int peer_cur = -1;

void tpm11_fork_note_tpm(const char *spec) {
  int next = peer_cur == 0 ? 1 : 0;
  struct tpm_peer *t = &peers[next];
  memset(t, 0, sizeof *t);
  if (strncmp(spec, "swtpm:unix:", 11) == 0) {
    const char *path = spec + 11;
    struct sockaddr_un *un = (struct sockaddr_un *)&t->addr[0];
    if (strlen(path) < sizeof un->sun_path) {
      un->sun_family = AF_UNIX;
      strcpy(un->sun_path, path);
      t->len[0] = sizeof *un;
      struct stat st;
      if (stat(path, &st) == 0) t->dev = st.st_dev, t->ino = st.st_ino;
      t->n = 1;
    }
  } else if (strncmp(spec, "swtpm:tcp:", 10) == 0) {
    char host[256];
    const char *hp = spec + 10, *colon = strrchr(hp, ':');
    if (colon && (size_t)(colon - hp) < sizeof host) {
      memcpy(host, hp, colon - hp);
      host[colon - hp] = 0;
      if (host[0] == '[' && colon - hp > 1 && host[colon - hp - 1] == ']') { /* [v6]:port */
        memmove(host, host + 1, colon - hp - 2);
        host[colon - hp - 2] = 0;
      }
      struct addrinfo hints = {0}, *res = NULL;
      hints.ai_socktype = SOCK_STREAM;
      if (getaddrinfo(host, colon + 1, &hints, &res) == 0) {
        for (struct addrinfo *a = res; a && t->n < MAX_PEERS; a = a->ai_next) {
          if (a->ai_addrlen > sizeof t->addr[0]) continue;
          memcpy(&t->addr[t->n], a->ai_addr, a->ai_addrlen);
          t->len[t->n++] = a->ai_addrlen;
        }
        freeaddrinfo(res);
      }
    }
  }
  __atomic_store_n(&peer_cur, next, __ATOMIC_RELEASE);
}

static int same_peer(const struct tpm_peer *t, const struct sockaddr_storage *ss, socklen_t len) {
  for (int i = 0; i < t->n; i++) {
    const struct sockaddr_storage *a = &t->addr[i];
    if (a->ss_family != ss->ss_family) continue;
    if (a->ss_family == AF_UNIX) {
      const struct sockaddr_un *x = (const void *)a, *y = (const void *)ss;
      size_t ylen = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
      char path[sizeof y->sun_path + 1];
      if (ylen > sizeof y->sun_path) ylen = sizeof y->sun_path;
      memcpy(path, y->sun_path, ylen);
      path[ylen] = 0;
      if (path[0] == 0) continue; /* unnamed or abstract */
      if (strcmp(path, x->sun_path) == 0) return 1;
      struct stat st; /* the same socket file under another name */
      if (t->ino && stat(path, &st) == 0 && st.st_dev == t->dev && st.st_ino == t->ino) return 1;
    } else if (a->ss_family == AF_INET) {
      const struct sockaddr_in *x = (const void *)a, *y = (const void *)ss;
      if (x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr) return 1;
    } else if (a->ss_family == AF_INET6) {
      const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)ss;
      if (x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0) return 1;
    }
  }
  return 0;
}

static void close_if_tpm(int fd, void *arg) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 && same_peer(arg, &ss, len)) close(fd);
}

/* ---- No SIGPIPE from a dead helper (fork.h) ------------------------------ */

void tpm11_nopipe_enter(struct tpm11_nopipe *g) {
  sigset_t pipe, pend;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  sigemptyset(&pend);
  g->pending = sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
}

void tpm11_nopipe_leave(struct tpm11_nopipe *g) {
  sigset_t pipe, pend;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  sigemptyset(&pend);
  if (!g->pending && sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE)) {
    /* Raised by the call's write (a thread-directed signal): taken now. */
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- The helper ------------------------------------------------------- */

static pthread_mutex_t child_mu = PTHREAD_MUTEX_INITIALIZER;
static void *client_so;               /* p11-kit-client.so, loaded once */
static CK_FUNCTION_LIST_3_0 *client;  /* its list for this process */
static CK_FUNCTION_LIST_3_0 *active;  /* client, while initialized */

/* This process's end of the socket to its helper, so that a process forked
 * from it can close its copy: the helper must see end of file when this
 * process finalizes or exits. */
struct helper_fd {
  int fd;
  dev_t dev;
  ino_t ino;
};
#define MAX_HELPER_FDS 4
static struct helper_fd helper_fds[MAX_HELPER_FDS];
static int n_helper_fds;
/* The helper's starter, reaped at C_Initialize (see reap_starter). */
static pid_t starter_pid;

CK_FUNCTION_LIST_3_0 *tpm11_child_list(void) { return __atomic_load_n(&active, __ATOMIC_ACQUIRE); }

static void after_fork_in_child(void) {
  tpm11_forked = 1;
  child_mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
  /* The parent's helper serves the parent: this process starts its own. */
  active = NULL;
  client = NULL;
  starter_pid = 0;
  /* Our copy of its socket must go, or that helper outlives the parent's
   * C_Finalize or exit. p11-kit-client still holds the number and closes
   * it at exit: /dev/null takes its place, so that close can never hit a
   * descriptor this process opens later. */
  int null_fd = n_helper_fds ? open("/dev/null", O_RDWR | O_CLOEXEC) : -1;
  for (int i = 0; i < n_helper_fds; i++) {
    struct stat st;
    if (fstat(helper_fds[i].fd, &st) == 0 && st.st_dev == helper_fds[i].dev && st.st_ino == helper_fds[i].ino) {
      if (null_fd < 0 || dup3(null_fd, helper_fds[i].fd, O_CLOEXEC) < 0) close(helper_fds[i].fd);
    }
  }
  if (null_fd >= 0) close(null_fd);
  n_helper_fds = 0;
  int cur = __atomic_load_n(&peer_cur, __ATOMIC_ACQUIRE);
  if (cur >= 0 && peers[cur].n > 0) each_fd(close_if_tpm, &peers[cur]);
}

static const char *const client_paths[] = {
#if defined(__x86_64__)
    "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
#elif defined(__aarch64__)
    "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
#endif
    "/usr/lib64/pkcs11/p11-kit-client.so",
    "/usr/lib/pkcs11/p11-kit-client.so",
    "p11-kit-client.so",
};

/* quote makes path one argument of p11-kit's command-line parser, which
 * keeps backslashes and knows no escapes: single or double quotes around a
 * path without that quote or a backslash. */
static int quote(char *dst, size_t size, const char *path) {
  char q = strchr(path, '\'') == NULL ? '\'' : strchr(path, '"') == NULL ? '"' : 0;
  if (q == 0 || strchr(path, '\\') != NULL) return -1;
  return snprintf(dst, size, "%c%s%c", q, path, q) < (int)size ? 0 : -1;
}

static CK_RV load_client(void) {
  if (getauxval(AT_SECURE)) {
    /* p11-kit-client ignores P11_KIT_SERVER_ADDRESS in a setuid process
     * and would reach the invoking user's p11-kit server instead. */
    child_log("not in a setuid/setgid process");
    return TPM11_CKR_GENERAL_ERROR;
  }
  for (size_t i = 0; client_so == NULL && i < sizeof client_paths / sizeof client_paths[0]; i++)
    client_so = dlopen(client_paths[i], RTLD_NOW | RTLD_LOCAL);
  if (client_so == NULL) {
    child_log("p11-kit-client.so not found (install p11-kit-modules)");
    return TPM11_CKR_GENERAL_ERROR;
  }
  CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR) = (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(client_so, "C_GetFunctionList");
  char quoted[PATH_MAX + 3], address[PATH_MAX + 96];
  if (get_list == NULL || self_path[0] == 0 || quote(quoted, sizeof quoted, self_path) != 0) {
    child_log("cannot name this library to the helper (%s)", self_path);
    return TPM11_CKR_GENERAL_ERROR;
  }
  /* By absolute path only: p11-kit-client runs it with execvp, which would
   * search PATH (another program named p11-kit earlier in it). */
  const char *remote = NULL;
  static const char *const remotes[] = {"/usr/libexec/p11-kit/p11-kit-remote", "/usr/lib/p11-kit/p11-kit-remote",
                                        "/usr/bin/p11-kit remote"};
  for (size_t i = 0; remote == NULL && i < sizeof remotes / sizeof remotes[0]; i++) {
    char exe[64];
    snprintf(exe, sizeof exe, "%s", remotes[i]);
    char *sp = strchr(exe, ' ');
    if (sp) *sp = 0;
    if (access(exe, X_OK) == 0) remote = remotes[i];
  }
  if (remote == NULL) {
    child_log("p11-kit-remote not found (install p11-kit)");
    return TPM11_CKR_GENERAL_ERROR;
  }
  /* The helper in a session of its own, not our child (see reap_starter),
   * marked TPM11_HELPER_OF=<our pid> in its environment (continue_helper
   * finds it so) by env(1) in its command: our own environment is not
   * touched for it while other threads may read it. Without env the
   * helper is unmarked (a stopped one is then not continued). */
  const char *setsid = access("/usr/bin/setsid", X_OK) == 0 ? "/usr/bin/setsid -f " : "";
  char marker[64] = "";
  if (access("/usr/bin/env", X_OK) == 0) snprintf(marker, sizeof marker, "/usr/bin/env TPM11_HELPER_OF=%d ", (int)getpid());
  else child_log("/usr/bin/env not found: the helper is not marked");
  snprintf(address, sizeof address, "|%s%s%s %s", marker, setsid, remote, quoted);
  /* p11-kit-client reads its server's address from the environment, once,
   * in C_GetFunctionList. setenv would realloc (and free) the array that
   * another thread's getenv may be walking: instead, for this one call,
   * environ points to a copy that also names the address, then back. The
   * copy is never freed (a reader may still walk it; one per process). */
  extern char **environ;
  char **old = environ;
  size_t n = 0;
  while (old != NULL && old[n] != NULL) n++;
  char **mine = calloc(n + 2, sizeof *mine);
  size_t alen = strlen(address) + sizeof "P11_KIT_SERVER_ADDRESS=";
  char *var = malloc(alen);
  if (mine == NULL || var == NULL) {
    free(mine);
    free(var);
    return TPM11_CKR_HOST_MEMORY;
  }
  snprintf(var, alen, "P11_KIT_SERVER_ADDRESS=%s", address);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(old[i], "P11_KIT_SERVER_ADDRESS=", 23) != 0) mine[m++] = old[i];
  mine[m++] = var;
  __atomic_store_n(&environ, mine, __ATOMIC_RELEASE);
  CK_FUNCTION_LIST_PTR list = NULL;
  CK_RV rv = get_list(&list);
  __atomic_store_n(&environ, old, __ATOMIC_RELEASE);
  if (rv != CKR_OK || list == NULL) {
    child_log("p11-kit-client's C_GetFunctionList: 0x%lx", rv);
    return rv != CKR_OK ? rv : TPM11_CKR_GENERAL_ERROR;
  }
  client = (CK_FUNCTION_LIST_3_0 *)list;
  return CKR_OK;
}

/* The unix stream sockets open before the helper starts, to find the one
 * p11-kit-client made for it afterwards (it keeps it to itself). */
struct fdset {
  int n, cap;
  struct helper_fd *v;
};

static int unix_stream(int fd) {
  int domain = 0, type = 0;
  socklen_t l1 = sizeof domain, l2 = sizeof type;
  return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l1) == 0 && domain == AF_UNIX &&
         getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l2) == 0 && type == SOCK_STREAM;
}

static void collect(int fd, void *arg) {
  struct fdset *s = arg;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 64;
    struct helper_fd *v = realloc(s->v, cap * sizeof *v);
    if (v == NULL) return;
    s->v = v, s->cap = cap;
  }
  s->v[s->n++] = (struct helper_fd){fd, st.st_dev, st.st_ino};
}

/* remember_helper_fds keeps (and marks close-on-exec: a program this
 * process runs must not hold the helper open) the unix stream sockets that
 * appeared since before, that this process made with socketpair. */
static void remember_helper_fds(const struct fdset *before) {
  struct fdset after = {0};
  each_fd(collect, &after);
  for (int i = 0; i < after.n; i++) {
    int seen = 0;
    for (int j = 0; j < before->n && !seen; j++)
      seen = before->v[j].fd == after.v[i].fd && before->v[j].ino == after.v[i].ino && before->v[j].dev == after.v[i].dev;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (seen || n_helper_fds == MAX_HELPER_FDS || !unix_stream(after.v[i].fd) ||
        getsockopt(after.v[i].fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid != getpid())
      continue;
    fcntl(after.v[i].fd, F_SETFD, fcntl(after.v[i].fd, F_GETFD) | FD_CLOEXEC);
    helper_fds[n_helper_fds++] = after.v[i];
  }
  free(after.v);
}

/* The helper is not this process's child. p11-kit-client runs the command
 * of the address in a child of its own and reaps that child at C_Finalize;
 * a process that runs another program (exec) after C_Initialize never
 * finalizes, and that program, which knows nothing of it, would keep the
 * child as a zombie for as long as it runs. So the command is `setsid -f
 * p11-kit-remote ...`: p11-kit-client's child (the starter) forks the
 * helper in a session of its own and exits at once; the helper, orphaned,
 * is reaped by init (or the nearest subreaper), never by this process. The
 * starter is reaped here as soon as C_Initialize has started the helper
 * (starter_pid, declared with helper_fds), so nothing of it is left for an
 * exec. p11-kit-client's own
 * wait for it at C_Finalize then finds no such child and returns at once
 * (it polled every 100 ms for the helper's exit before); had the pid been
 * reused by a child of this process meanwhile, that wait would take the
 * host's child's status: C_Finalize then leaves p11-kit-client's instance
 * unfinalized, closes the helper's socket itself, and the next
 * C_Initialize takes a new instance (finalize_helper). */

/* children_now lists this process's children, from each thread's list
 * (/proc/self/task/TID/children): at most max of them; -1 when the kernel
 * keeps no such lists. */
static int children_now(pid_t *out, int max) {
  int dfd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return -1;
  char dbuf[2048] __attribute__((aligned(8)));
  long got;
  int n = 0, ok = 1;
  while (ok && (got = syscall(SYS_getdents64, dfd, dbuf, sizeof dbuf)) > 0) {
    for (long off = 0; off < got && ok; off += ((struct dirent64_ *)(dbuf + off))->d_reclen) {
      struct dirent64_ *d = (struct dirent64_ *)(dbuf + off);
      if (d->d_name[0] < '1' || d->d_name[0] > '9') continue;
      char path[64], buf[1024];
      snprintf(path, sizeof path, "/proc/self/task/%s/children", d->d_name);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        ok = 0;
        break;
      }
      ssize_t len = read(fd, buf, sizeof buf - 1);
      close(fd);
      buf[len > 0 ? len : 0] = 0;
      for (char *save = NULL, *pid = strtok_r(buf, " \n", &save); pid != NULL && n < max; pid = strtok_r(NULL, " \n", &save))
        out[n++] = (pid_t)atoi(pid);
    }
  }
  close(dfd);
  return ok ? n : -1;
}

/* is_starter says whether pid is a child of ours running (or that ran)
 * setsid. */
static int is_starter(pid_t pid) {
  char path[64], st[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t len = read(fd, st, sizeof st - 1);
  close(fd);
  if (len <= 0) return 0;
  st[len] = 0;
  char *rp = strrchr(st, ')'), state;
  int ppid;
  return rp != NULL && strstr(st, " (setsid) ") != NULL && sscanf(rp + 2, "%c %d", &state, &ppid) == 2 &&
         ppid == getpid();
}

#define MAX_CHILDREN_SEEN 64
/* reap_starter reaps the child that started the helper: the one child of
 * ours that appeared during C_Initialize and runs setsid. It exits right
 * after forking the helper; a host's SIGCHLD handler may reap it first. */
static void reap_starter(const pid_t *before, int nbefore) {
  pid_t now[MAX_CHILDREN_SEEN];
  int n = children_now(now, MAX_CHILDREN_SEEN);
  starter_pid = 0;
  for (int i = 0; i < n && starter_pid == 0; i++) {
    int old = 0;
    for (int j = 0; j < nbefore && !old; j++) old = before[j] == now[i];
    if (!old && is_starter(now[i])) starter_pid = now[i];
  }
  if (starter_pid == 0) return;
  /* setsid exits right after its fork: bounded only against a stopped one. */
  for (int i = 0; i < 5000; i++) {
    pid_t r = waitpid(starter_pid, NULL, WNOHANG);
    if (r != 0) break;
    if (!is_starter(starter_pid)) break;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
}

/* read_all reads the whole file at path (a /proc environ: the marker may
 * be anywhere in it), into *len bytes of a buffer the caller frees. */
static char *read_all(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  size_t cap = 16384, n = 0;
  char *buf = malloc(cap);
  for (ssize_t got; buf != NULL; n += (size_t)got) {
    if (n == cap) {
      char *bigger = cap < ((size_t)64 << 20) ? realloc(buf, cap *= 2) : NULL;
      if (bigger == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = bigger;
    }
    got = read(fd, buf + n, cap - n);
    if (got < 0 && errno == EINTR) got = 0;
    else if (got <= 0) break;
  }
  close(fd);
  *len = n;
  return buf;
}

/* continue_helper continues (SIGCONT) this process's helper if it is
 * stopped (a signal, a debugger): p11-kit-client's C_Finalize asks the
 * helper to finalize and waits for its answer, which a stopped helper
 * never gives. The helper, not our child, is found by the marker
 * TPM11_HELPER_OF=<our pid> in its environment, among the p11-kit-remote
 * processes: a read of each process's stat, at C_Finalize only. */
static void continue_helper(void) {
  char want[48];
  int wlen = snprintf(want, sizeof want, "TPM11_HELPER_OF=%d", (int)getpid());
  int dfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  char dbuf[4096] __attribute__((aligned(8)));
  long got;
  while ((got = syscall(SYS_getdents64, dfd, dbuf, sizeof dbuf)) > 0) {
    for (long off = 0; off < got; off += ((struct dirent64_ *)(dbuf + off))->d_reclen) {
      struct dirent64_ *d = (struct dirent64_ *)(dbuf + off);
      if (d->d_name[0] < '1' || d->d_name[0] > '9') continue;
      char path[64], st[512];
      snprintf(path, sizeof path, "/proc/%s/stat", d->d_name);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ssize_t len = read(fd, st, sizeof st - 1);
      close(fd);
      if (len <= 0) continue;
      st[len] = 0;
      char *rp = strrchr(st, ')');
      /* Whatever its state: a stop just sent may not show in it yet, and a
       * SIGCONT to a running helper does nothing (a pending stop it drops). */
      if (rp == NULL || strstr(st, " (p11-kit-remote) ") == NULL) continue;
      snprintf(path, sizeof path, "/proc/%s/environ", d->d_name);
      size_t elen = 0;
      char *env = read_all(path, &elen);
      if (env == NULL) continue;
      for (size_t i = 0; i + wlen <= elen; i++)
        if ((i == 0 || env[i - 1] == 0) && memcmp(env + i, want, wlen) == 0 && (i + wlen == elen || env[i + wlen] == 0)) {
          kill((pid_t)atoi(d->d_name), SIGCONT);
          break;
        }
      free(env);
    }
  }
  close(dfd);
}

/* starter_reused says whether the starter's pid now names a child of ours
 * (another process that got the number). */
static int starter_reused(void) {
  pid_t now[MAX_CHILDREN_SEEN];
  int n = starter_pid ? children_now(now, MAX_CHILDREN_SEEN) : 0;
  for (int i = 0; i < n; i++)
    if (now[i] == starter_pid) return 1;
  return 0;
}

/* A host that closed every descriptor after C_Initialize (a daemon
 * detaching) may have reused the number of the helper's socket for a file
 * of its own, which p11-kit-client closes at C_Finalize. keep_reused saves
 * such a descriptor under another number before, restore_reused puts it
 * back after. */
struct reused {
  int fd, copy, cloexec;
};
static int keep_reused(struct reused *r) {
  int n = 0;
  for (int i = 0; i < n_helper_fds; i++) {
    struct stat st;
    if (fstat(helper_fds[i].fd, &st) != 0 || (st.st_dev == helper_fds[i].dev && st.st_ino == helper_fds[i].ino)) continue;
    int flags = fcntl(helper_fds[i].fd, F_GETFD);
    int copy = fcntl(helper_fds[i].fd, F_DUPFD_CLOEXEC, 0);
    if (copy >= 0) r[n++] = (struct reused){helper_fds[i].fd, copy, flags > 0 && (flags & FD_CLOEXEC)};
  }
  return n;
}
static void restore_reused(struct reused *r, int n) {
  for (int i = 0; i < n; i++) {
    dup3(r[i].copy, r[i].fd, r[i].cloexec ? O_CLOEXEC : 0);
    close(r[i].copy);
  }
}

/* init_args_ok applies the module's own checks of C_Initialize's argument. */
static int init_args_ok(CK_VOID_PTR pInitArgs) {
  if (pInitArgs == NULL) return 1;
  CK_C_INITIALIZE_ARGS *a = pInitArgs;
  int set = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) + (a->LockMutex != NULL) + (a->UnlockMutex != NULL);
  return a->pReserved == NULL && (set == 0 || set == 4);
}

/* finalize_helper finalizes p11-kit-client's instance c, which closes the
 * helper's socket (the helper finalizes the module in it and exits on end
 * of file). Under child_mu. */
static CK_RV finalize_helper(CK_FUNCTION_LIST_3_0 *c) {
  CK_RV rv = CKR_OK;
  struct reused r[MAX_HELPER_FDS];
  int nr = keep_reused(r);
  if (starter_reused()) {
    /* p11-kit-client would wait for, and after 3 s terminate, a child of
     * the host's: the socket is closed here instead, and that instance
     * left behind (a later C_Initialize takes a new one). */
    child_log("the helper's starter pid %d names another child: its socket closed without p11-kit-client", (int)starter_pid);
    for (int i = 0; i < n_helper_fds; i++) shutdown(helper_fds[i].fd, SHUT_RDWR);
    client = NULL;
  } else {
    continue_helper();
    struct tpm11_nopipe g;
    tpm11_nopipe_enter(&g);
    rv = c->C_Finalize(NULL);
    tpm11_nopipe_leave(&g);
  }
  restore_reused(r, nr);
  n_helper_fds = 0;
  starter_pid = 0;
  return rv;
}

/* At exit, a child that did not C_Finalize finalizes its helper (which then
 * finalizes the module in it and exits) before library destructors run:
 * p11-kit-client's own destructor frees its function lists, and a later
 * C_Finalize from another library's destructor must find nothing to do,
 * not freed memory. An atexit handler registered now runs before them. */
static void finalize_at_exit(void) {
  /* Not if another thread is starting a helper: exit must not wait. */
  if (pthread_mutex_trylock(&child_mu) != 0) return;
  CK_FUNCTION_LIST_3_0 *c = active;
  __atomic_store_n(&active, NULL, __ATOMIC_RELEASE);
  if (c != NULL) finalize_helper(c);
  pthread_mutex_unlock(&child_mu);
}

CK_RV tpm11_child_C_Initialize(CK_VOID_PTR pInitArgs) {
  if (!init_args_ok(pInitArgs)) return CKR_ARGUMENTS_BAD;
  pthread_mutex_lock(&child_mu);
  CK_RV rv = CKR_OK;
  if (active != NULL) rv = TPM11_CKR_CRYPTOKI_ALREADY_INITIALIZED;
  if (rv == CKR_OK && client == NULL) rv = load_client();
  if (rv == CKR_OK) {
    struct fdset before = {0};
    each_fd(collect, &before);
    pid_t seen[MAX_CHILDREN_SEEN];
    int nseen = children_now(seen, MAX_CHILDREN_SEEN);
    /* p11-kit-client starts the helper here; it locks with the OS. */
    CK_C_INITIALIZE_ARGS args = {NULL, NULL, NULL, NULL, TPM11_CKF_OS_LOCKING_OK, NULL};
    struct tpm11_nopipe g;
    tpm11_nopipe_enter(&g);
    rv = client->C_Initialize(&args);
    tpm11_nopipe_leave(&g);
    if (rv == CKR_OK) {
      remember_helper_fds(&before);
      if (nseen >= 0) reap_starter(seen, nseen);
      __atomic_store_n(&active, client, __ATOMIC_RELEASE);
      static int at_exit; /* inherited by a grandchild, where it serves too */
      if (!at_exit) at_exit = atexit(finalize_at_exit) == 0;
    } else {
      child_log("the helper did not start: C_Initialize 0x%lx", rv);
      if (nseen >= 0) reap_starter(seen, nseen);
    }
    free(before.v);
  }
  pthread_mutex_unlock(&child_mu);
  return rv;
}

CK_RV tpm11_child_C_Finalize(CK_VOID_PTR pReserved) {
  if (pReserved != NULL) return CKR_ARGUMENTS_BAD;
  pthread_mutex_lock(&child_mu);
  CK_RV rv = TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_FUNCTION_LIST_3_0 *c = active;
  if (c != NULL) {
    __atomic_store_n(&active, NULL, __ATOMIC_RELEASE);
    rv = finalize_helper(c);
    /* The helper's sessions are gone: so are the child's operations on
     * them (child_mech.c's lock is taken after child_mu). */
    tpm11_child_mech_reset();
  }
  pthread_mutex_unlock(&child_mu);
  return rv;
}

/* A child has no asynchronous sessions: p11-kit's RPC carries no
 * C_AsyncComplete. Its token says so, and CKF_ASYNC_SESSION is refused with
 * the spec's code for a token without them. */
CK_RV tpm11_child_C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  struct tpm11_nopipe g;
  tpm11_nopipe_enter(&g);
  CK_RV rv = r->C_GetTokenInfo(slotID, pInfo);
  tpm11_nopipe_leave(&g);
  if (rv == CKR_OK) pInfo->flags &= ~TPM11_CKF_ASYNC_SESSION_SUPPORTED;
  return rv;
}

CK_RV tpm11_child_C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                                CK_SESSION_HANDLE_PTR phSession) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (flags & TPM11_CKF_ASYNC_SESSION) return TPM11_CKR_SESSION_ASYNC_NOT_SUPPORTED;
  struct tpm11_nopipe g;
  tpm11_nopipe_enter(&g);
  CK_RV rv = r->C_OpenSession(slotID, flags, pApplication, Notify, phSession);
  tpm11_nopipe_leave(&g);
  return rv;
}

/* C_LoginUser is 3.0, which p11-kit 0.24's RPC does not carry. The module
 * treats a call without a user name as C_Login and refuses a name (its
 * token has no named users): the same here. */
CK_RV tpm11_child_C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                              CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (r->version.major < 3 || r->C_LoginUser == NULL) {
    if (ulUsernameLen > 0) return CKR_ARGUMENTS_BAD;
  }
  struct tpm11_nopipe g;
  tpm11_nopipe_enter(&g);
  CK_RV rv = r->version.major >= 3 && r->C_LoginUser != NULL
                 ? r->C_LoginUser(hSession, userType, pPin, ulPinLen, pUsername, ulUsernameLen)
                 : r->C_Login(hSession, userType, pPin, ulPinLen);
  tpm11_nopipe_leave(&g);
  return rv;
}
