/* Shared by fuzz_test.c and stress_test.c: output buffers that end at a
 * guard page, a watchdog on every call, a report of what crashed, and a
 * CK_RV tally. */
#ifndef TPM11_HOSTILE_H
#define TPM11_HOSTILE_H
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "ck.h"

#define PAGE 4096UL
#define REGION (64 * 1024UL)

/* A guarded region: REGION bytes of read/write memory followed by a page
 * that cannot be touched, so a write of one byte past what a buffer's
 * length allows crashes at once. */
typedef struct { unsigned char *base; } guard_t;

static guard_t guard_new(void) {
  unsigned char *p = mmap(NULL, REGION + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) { perror("mmap"); exit(2); }
  if (mprotect(p + REGION, PAGE, PROT_NONE)) { perror("mprotect"); exit(2); }
  return (guard_t){p};
}

/* guard_buf is n bytes (n <= REGION) that end at g's guard page. */
static void *guard_buf(guard_t g, size_t n) {
  if (n > REGION) n = REGION;
  return g.base + REGION - n;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift random numbers, one state per thread. */
static __thread uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
  uint64_t x = rng_state;
  x ^= x << 13; x ^= x >> 7; x ^= x << 17;
  return rng_state = x;
}
static unsigned rn(unsigned n) { return n ? (unsigned)(rnd() % n) : 0; }
static void rnd_fill(void *p, size_t n) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char) rnd();
}

/* The watchdog: each thread says which call it is in and since when; a call
 * that runs longer than WATCH_LIMIT seconds is a hang, and ends the
 * program with its name. */
#define MAX_WATCHED 64
#define WATCH_LIMIT 120.0
static struct watched { volatile double since; const char *volatile fn; } watched[MAX_WATCHED];
static __thread int watch_slot;
static volatile int watch_stop;

static void watch_enter(const char *fn) { watched[watch_slot].fn = fn; watched[watch_slot].since = now_s(); }
static void watch_leave(void) { watched[watch_slot].since = 0; }

static void *watchdog(void *arg) {
  (void) arg;
  while (!watch_stop) {
    double t = now_s();
    for (int i = 0; i < MAX_WATCHED; i++) {
      double s = watched[i].since;
      if (s > 0 && t - s > WATCH_LIMIT) {
        fprintf(stderr, "HANG: thread %d in %s for %.0f s\n", i, watched[i].fn, t - s);
        fflush(stderr);
        _exit(3);
      }
    }
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

/* On a crash, say which call it was in (the Go runtime forwards signals
 * raised outside Go code to the handler installed before it loaded). */
static void on_crash(int sig) {
  char buf[256];
  const char *fn = watched[watch_slot].fn ? watched[watch_slot].fn : "?";
  int n = snprintf(buf, sizeof buf, "CRASH: signal %d in %s (thread slot %d)\n", sig, fn, watch_slot);
  if (write(2, buf, n) < 0) {}
  signal(sig, SIG_DFL);
  raise(sig);
}

static void hostile_start(void) {
  signal(SIGSEGV, on_crash);
  signal(SIGBUS, on_crash);
  signal(SIGABRT, on_crash);
  pthread_t t;
  pthread_create(&t, NULL, watchdog, NULL);
  pthread_detach(t);
}

/* A tally of return values. */
#define TALLY 4096
struct tally_row { CK_RV rv; unsigned long n; };
static struct tally_row tally[TALLY];
static pthread_mutex_t tally_mu = PTHREAD_MUTEX_INITIALIZER;
static void count_rv(CK_RV r) {
  pthread_mutex_lock(&tally_mu);
  for (int i = 0; i < TALLY; i++) {
    if (tally[i].n == 0) { tally[i].rv = r; tally[i].n = 1; break; }
    if (tally[i].rv == r) { tally[i].n++; break; }
  }
  pthread_mutex_unlock(&tally_mu);
}

static const char *rv_name(CK_RV r) {
  /* From the 3.2 pkcs11t.h. */
  switch (r) {
  case 0x0: return "OK";
  case 0x1: return "CANCEL";
  case 0x2: return "HOST_MEMORY";
  case 0x3: return "SLOT_ID_INVALID";
  case 0x5: return "GENERAL_ERROR";
  case 0x6: return "FUNCTION_FAILED";
  case 0x7: return "ARGUMENTS_BAD";
  case 0x8: return "NO_EVENT";
  case 0x9: return "NEED_TO_CREATE_THREADS";
  case 0xA: return "CANT_LOCK";
  case 0x10: return "ATTRIBUTE_READ_ONLY";
  case 0x11: return "ATTRIBUTE_SENSITIVE";
  case 0x12: return "ATTRIBUTE_TYPE_INVALID";
  case 0x13: return "ATTRIBUTE_VALUE_INVALID";
  case 0x1B: return "ACTION_PROHIBITED";
  case 0x20: return "DATA_INVALID";
  case 0x21: return "DATA_LEN_RANGE";
  case 0x30: return "DEVICE_ERROR";
  case 0x31: return "DEVICE_MEMORY";
  case 0x32: return "DEVICE_REMOVED";
  case 0x40: return "ENCRYPTED_DATA_INVALID";
  case 0x41: return "ENCRYPTED_DATA_LEN_RANGE";
  case 0x42: return "AEAD_DECRYPT_FAILED";
  case 0x50: return "FUNCTION_CANCELED";
  case 0x51: return "FUNCTION_NOT_PARALLEL";
  case 0x54: return "FUNCTION_NOT_SUPPORTED";
  case 0x60: return "KEY_HANDLE_INVALID";
  case 0x62: return "KEY_SIZE_RANGE";
  case 0x63: return "KEY_TYPE_INCONSISTENT";
  case 0x64: return "KEY_NOT_NEEDED";
  case 0x65: return "KEY_CHANGED";
  case 0x66: return "KEY_NEEDED";
  case 0x67: return "KEY_INDIGESTIBLE";
  case 0x68: return "KEY_FUNCTION_NOT_PERMITTED";
  case 0x69: return "KEY_NOT_WRAPPABLE";
  case 0x6A: return "KEY_UNEXTRACTABLE";
  case 0x70: return "MECHANISM_INVALID";
  case 0x71: return "MECHANISM_PARAM_INVALID";
  case 0x82: return "OBJECT_HANDLE_INVALID";
  case 0x90: return "OPERATION_ACTIVE";
  case 0x91: return "OPERATION_NOT_INITIALIZED";
  case 0xA0: return "PIN_INCORRECT";
  case 0xA1: return "PIN_INVALID";
  case 0xA2: return "PIN_LEN_RANGE";
  case 0xA3: return "PIN_EXPIRED";
  case 0xA4: return "PIN_LOCKED";
  case 0xB0: return "SESSION_CLOSED";
  case 0xB1: return "SESSION_COUNT";
  case 0xB3: return "SESSION_HANDLE_INVALID";
  case 0xB4: return "SESSION_PARALLEL_NOT_SUPPORTED";
  case 0xB5: return "SESSION_READ_ONLY";
  case 0xB6: return "SESSION_EXISTS";
  case 0xB7: return "SESSION_READ_ONLY_EXISTS";
  case 0xB8: return "SESSION_READ_WRITE_SO_EXISTS";
  case 0xC0: return "SIGNATURE_INVALID";
  case 0xC1: return "SIGNATURE_LEN_RANGE";
  case 0xD0: return "TEMPLATE_INCOMPLETE";
  case 0xD1: return "TEMPLATE_INCONSISTENT";
  case 0xE0: return "TOKEN_NOT_PRESENT";
  case 0xE1: return "TOKEN_NOT_RECOGNIZED";
  case 0xE2: return "TOKEN_WRITE_PROTECTED";
  case 0xF0: return "UNWRAPPING_KEY_HANDLE_INVALID";
  case 0xF1: return "UNWRAPPING_KEY_SIZE_RANGE";
  case 0xF2: return "UNWRAPPING_KEY_TYPE_INCONSISTENT";
  case 0x100: return "USER_ALREADY_LOGGED_IN";
  case 0x101: return "USER_NOT_LOGGED_IN";
  case 0x102: return "USER_PIN_NOT_INITIALIZED";
  case 0x103: return "USER_TYPE_INVALID";
  case 0x104: return "USER_ANOTHER_ALREADY_LOGGED_IN";
  case 0x105: return "USER_TOO_MANY_TYPES";
  case 0x110: return "WRAPPED_KEY_INVALID";
  case 0x112: return "WRAPPED_KEY_LEN_RANGE";
  case 0x113: return "WRAPPING_KEY_HANDLE_INVALID";
  case 0x114: return "WRAPPING_KEY_SIZE_RANGE";
  case 0x115: return "WRAPPING_KEY_TYPE_INCONSISTENT";
  case 0x120: return "RANDOM_SEED_NOT_SUPPORTED";
  case 0x121: return "RANDOM_NO_RNG";
  case 0x130: return "DOMAIN_PARAMS_INVALID";
  case 0x140: return "CURVE_NOT_SUPPORTED";
  case 0x150: return "BUFFER_TOO_SMALL";
  case 0x160: return "SAVED_STATE_INVALID";
  case 0x170: return "INFORMATION_SENSITIVE";
  case 0x180: return "STATE_UNSAVEABLE";
  case 0x190: return "CRYPTOKI_NOT_INITIALIZED";
  case 0x191: return "CRYPTOKI_ALREADY_INITIALIZED";
  case 0x1A0: return "MUTEX_BAD";
  case 0x1A1: return "MUTEX_NOT_LOCKED";
  case 0x1B0: return "NEW_PIN_MODE";
  case 0x1B1: return "NEXT_OTP";
  case 0x1B5: return "EXCEEDED_MAX_ITERATIONS";
  case 0x1B6: return "FIPS_SELF_TEST_FAILED";
  case 0x1B7: return "LIBRARY_LOAD_FAILED";
  case 0x1B8: return "PIN_TOO_WEAK";
  case 0x1B9: return "PUBLIC_KEY_INVALID";
  case 0x200: return "FUNCTION_REJECTED";
  case 0x201: return "TOKEN_RESOURCE_EXCEEDED";
  case 0x202: return "OPERATION_CANCEL_FAILED";
  case 0x203: return "KEY_EXHAUSTED";
  case 0x204: return "PENDING";
  case 0x205: return "SESSION_ASYNC_NOT_SUPPORTED";
  case 0x206: return "SEED_RANDOM_REQUIRED";
  case 0x207: return "OPERATION_NOT_VALIDATED";
  case 0x208: return "TOKEN_NOT_INITIALIZED";
  case 0x209: return "PARAMETER_SET_NOT_SUPPORTED";
  }
  return "?";
}

static int tally_cmp(const void *a, const void *b) {
  unsigned long x = ((const struct tally_row *) a)->n, y = ((const struct tally_row *) b)->n;
  return x < y ? 1 : x > y ? -1 : 0;
}

static void print_tally(FILE *out) {
  pthread_mutex_lock(&tally_mu);
  int n = 0;
  while (n < TALLY && tally[n].n) n++;
  qsort(tally, n, sizeof tally[0], tally_cmp);
  for (int i = 0; i < n; i++) fprintf(out, "  CKR_%s (0x%lx): %lu\n", rv_name(tally[i].rv), tally[i].rv, tally[i].n);
  pthread_mutex_unlock(&tally_mu);
}

/* rss_kb is the process's resident set now. */
static long rss_kb(void) {
  FILE *fp = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (fp) { if (fscanf(fp, "%ld %ld", &pages, &res) != 2) res = 0; fclose(fp); }
  return res * (long) (sysconf(_SC_PAGESIZE) / 1024);
}
#endif
