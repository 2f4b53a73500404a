/* C_Finalize does not wait on a TPM that never answers (issue 21).
 *
 * The TPM is testdata/slowtpm with -hold DIR in front of a swtpm: while
 * DIR/hold exists it keeps each command it gets, unanswered, and says so
 * (DIR/holding); it creates DIR/abandoned when the client closes the
 * connection while it holds one, DIR/answered once it has answered it.
 * The module's command deadline is set far beyond this test's run
 * (TPM11_TIMEOUT=600s by the runner), so only an abort path lets C_Finalize
 * return before the TPM answers.
 *
 *   finalize_test MODULE HOLD_DIR
 *
 * A thread's C_GenerateRandom is held in the TPM; C_Finalize on the main
 * thread must return while the TPM still holds that command unanswered
 * (pass/fail by the order of events, not by a clock); the connection must
 * have been closed (the TPM sees it abandoned); the thread's call returns
 * an error; C_AsyncComplete of a held async operation... is not reachable
 * after C_Finalize (CKR_CRYPTOKI_NOT_INITIALIZED). Then the TPM answers
 * again and a new C_Initialize signs as ever. A watchdog releases the TPM
 * after 120 s, so a module without the abort path fails instead of hanging. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "setup.h"

static CK_FUNCTION_LIST_3_2 *f;
static const char *dir;
static CK_SESSION_HANDLE sync_h, async_h;

static char *path(const char *name) {
  static char buf[4][4096];
  static int i;
  char *p = buf[i++ % 4];
  snprintf(p, 4096, "%s/%s", dir, name);
  return p;
}
static int exists(const char *name) { struct stat st; return stat(path(name), &st) == 0; }
static void touch(const char *name) { FILE *fp = fopen(path(name), "w"); if (!fp) { perror(name); exit(1); } fclose(fp); }
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static void nap(void) { struct timespec ts = {0, 2000000}; nanosleep(&ts, NULL); }

/* wait_for waits for DIR/name, 120 s at most (only a hang reaches it). */
static int wait_for(const char *name) {
  for (double end = now() + 120; now() < end; nap())
    if (exists(name)) return 1;
  return 0;
}

static CK_RV held_rv = 0xffffffff;
static void *held_call(void *arg) {
  (void) arg;
  CK_BYTE out[16];
  held_rv = f->C_GenerateRandom(sync_h, out, sizeof out);
  return NULL;
}

/* The watchdog: without the abort path C_Finalize waits for the TPM; the
 * TPM is let go after 120 s so that the test ends, and fails. */
static volatile int finalized;
static void *watchdog(void *arg) {
  (void) arg;
  for (double end = now() + 120; now() < end && !finalized; nap()) {}
  if (!finalized) {
    fprintf(stderr, "finalize_test: C_Finalize still blocked after 120 s: letting the TPM answer\n");
    unlink(path("hold"));
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: finalize_test MODULE HOLD_DIR\n"); return 2; }
  dir = argv[2];
  f = load_module(argc, argv);
  CK_SESSION_HANDLE so = make_token(f);
  RV(f->C_CloseSession(so), CKR_OK);
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sync_h), CKR_OK);
  RV(f->C_Login(sync_h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &async_h), CKR_OK);

  /* The TPM goes silent; a synchronous call is held in it. */
  touch("hold");
  pthread_t th, wd;
  pthread_create(&th, NULL, held_call, NULL);
  CHECK(wait_for("holding"), "the TPM never got the command");
  /* An async operation queued behind the held command. */
  CK_BYTE rnd[32];
  CK_RV arv = f->C_GenerateRandom(async_h, rnd, sizeof rnd);
  CHECK(arv == CKR_PENDING, "async C_GenerateRandom behind a held command: 0x%lx, want CKR_PENDING", arv);

  pthread_create(&wd, NULL, watchdog, NULL);
  double t0 = now();
  CK_RV frv = f->C_Finalize(NULL);
  double took = now() - t0;
  finalized = 1;
  /* The order of events decides, not the time taken. */
  int answered = exists("answered");
  RV(frv, CKR_OK);
  CHECK(!answered, "C_Finalize returned only after the TPM answered (%.3f s): it waited on the TPM", took);
  CHECK(wait_for("abandoned"), "the held command's connection was never closed");
  pthread_join(th, NULL);
  CHECK(held_rv != CKR_OK, "the held C_GenerateRandom succeeded without an answer");
  CK_ASYNC_DATA res = {0};
  RV(f->C_AsyncComplete(async_h, (CK_UTF8CHAR_PTR) "C_GenerateRandom", &res), CKR_CRYPTOKI_NOT_INITIALIZED);
  pthread_join(wd, NULL);
  printf("C_Finalize with a command held unanswered in the TPM returned in %.1f ms; held call 0x%lx\n", took * 1000, held_rv);

  /* The TPM answers again: a new C_Initialize works as ever. */
  unlink(path("hold"));
  RV(f->C_Initialize(NULL), CKR_OK);
  CK_SESSION_HANDLE h;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  CK_BYTE out[16];
  RV(f->C_GenerateRandom(h, out, sizeof out), CKR_OK);
  RV(f->C_Finalize(NULL), CKR_OK);
  if (failures) return 1;
  printf("finalize_test: ok\n");
  return 0;
}
