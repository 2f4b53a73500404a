/* The raw floor of make bench: what the TPM itself gives a client with no
 * TSS and no runtime. TPM2_Sign bytes are built once, written to swtpm's
 * socket, and the answer read with blocking calls; the key is a primary
 * made for it (ECC P-256 / ECDSA-SHA256, or RSA-2048 / RSASSA-SHA256) and
 * flushed at the end.
 *   rawfloor SOCKET ec|rsa N  -> prints "raw_<alg>_signs_per_s", p50/p99 ms */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int fd;

static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static void io_all(int write_, uint8_t *b, size_t n) {
  while (n > 0) {
    ssize_t k = write_ ? write(fd, b, n) : read(fd, b, n);
    if (k <= 0) { perror(write_ ? "write" : "read"); exit(3); }
    b += k;
    n -= k;
  }
}

/* transact sends cmd (its size field filled here) and reads one response. */
static uint32_t transact(uint8_t *cmd, size_t len, uint8_t *rsp, size_t cap) {
  put32(cmd + 2, len);
  io_all(1, cmd, len);
  io_all(0, rsp, 10);
  uint32_t size = get32(rsp + 2);
  if (size < 10 || size > cap) { fprintf(stderr, "bad response size %u\n", size); exit(3); }
  io_all(0, rsp + 10, size - 10);
  return get32(rsp + 6);
}

/* An empty password authorization (TPM_RS_PW). */
static size_t pw_session(uint8_t *p) {
  put32(p, 9);
  put32(p + 4, 0x40000009);
  memset(p + 8, 0, 5);
  return 13;
}

static uint32_t create_primary(int rsa) {
  uint8_t c[128], r[2048];
  size_t n = 0;
  put16(c, 0x8002); n = 6;
  put32(c + n, 0x131); n += 4;              /* TPM2_CreatePrimary */
  put32(c + n, 0x40000001); n += 4;         /* owner hierarchy */
  n += pw_session(c + n);
  put16(c + n, 4); put16(c + n + 2, 0); put16(c + n + 4, 0); n += 6;  /* inSensitive: empty */
  uint8_t *pub = c + n + 2;
  size_t m = 0;
  put16(pub + m, rsa ? 0x0001 : 0x0023); m += 2;  /* RSA or ECC */
  put16(pub + m, 0x000B); m += 2;                 /* name alg SHA-256 */
  put32(pub + m, 0x40472); m += 4;                /* fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|sign */
  put16(pub + m, 0); m += 2;                      /* no policy */
  put16(pub + m, 0x0010); m += 2;                 /* symmetric: null */
  put16(pub + m, rsa ? 0x0014 : 0x0018); m += 2;  /* RSASSA or ECDSA */
  put16(pub + m, 0x000B); m += 2;                 /* with SHA-256 */
  if (rsa) {
    put16(pub + m, 2048); m += 2;
    put32(pub + m, 0); m += 4;                    /* default exponent */
    put16(pub + m, 0); m += 2;                    /* unique: empty */
  } else {
    put16(pub + m, 0x0003); m += 2;               /* NIST P-256 */
    put16(pub + m, 0x0010); m += 2;               /* kdf: null */
    put32(pub + m, 0); m += 4;                    /* unique: empty point */
  }
  put16(c + n, m); n += 2 + m;
  put16(c + n, 0); n += 2;                        /* outsideInfo */
  put32(c + n, 0); n += 4;                        /* creationPCR: none */
  uint32_t rc = transact(c, n, r, sizeof r);
  if (rc != 0) { fprintf(stderr, "CreatePrimary: rc 0x%x\n", rc); exit(3); }
  return get32(r + 10);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}
static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* cpu_s is this process's user+system CPU time (its system calls are
 * most of it: the same write, wait and read any client makes). */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: rawfloor SOCKET ec|rsa N\n"); return 2; }
  int rsa = strcmp(argv[2], "rsa") == 0, n = atoi(argv[3]);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strncpy(sa.sun_path, argv[1], sizeof sa.sun_path - 1);
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("connect"); return 3; }
  uint32_t key = create_primary(rsa);

  /* TPM2_Sign of a fixed SHA-256 digest with the key's own scheme. */
  uint8_t c[128], r[1024];
  size_t len = 0;
  put16(c, 0x8002); len = 6;
  put32(c + len, 0x15D); len += 4;
  put32(c + len, key); len += 4;
  len += pw_session(c + len);
  put16(c + len, 32); memset(c + len + 2, 0x5a, 32); len += 34;
  put16(c + len, 0x0010); len += 2;                          /* inScheme: the key's */
  put16(c + len, 0x8024); put32(c + len + 2, 0x40000007); put16(c + len + 6, 0); len += 8;  /* null ticket */

  for (int i = 0; i < 5; i++) transact(c, len, r, sizeof r);  /* warm up */
  double *lat = malloc(n * sizeof *lat), t0 = now(), c0 = cpu_s();
  for (int i = 0; i < n; i++) {
    double s = now();
    uint32_t rc = transact(c, len, r, sizeof r);
    lat[i] = now() - s;
    if (rc != 0) { fprintf(stderr, "Sign: rc 0x%x\n", rc); return 3; }
  }
  double total = now() - t0, cpu = cpu_s() - c0;
  qsort(lat, n, sizeof *lat, cmpd);
  const char *a = rsa ? "rsa" : "ec";
  printf("raw_%s_signs_per_s %.0f\nraw_%s_p50_ms %.3f\nraw_%s_p99_ms %.3f\n", a, n / total, a, lat[n / 2] * 1e3, a,
         lat[(n - 1) * 99 / 100] * 1e3);
  printf("raw_%s_cpu_us %.1f\n", a, cpu / n * 1e6);

  uint8_t fl[14];
  put16(fl, 0x8001); put32(fl + 6, 0x165); put32(fl + 10, key);  /* TPM2_FlushContext */
  transact(fl, 14, r, sizeof r);
  close(fd);
  return 0;
}
