/* Conformance rules of the PKCS#11 3.2 text that no client exercises, on a
 * private swtpm and store: C_WaitForSlotEvent (events once, a blocked
 * caller woken by C_InitToken and by C_Finalize on another thread), what
 * callers of the 2.40 and 3.0 lists see, PIN lengths, C_LoginUser and the
 * PIN flags. Each block tests one rule. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "test.h"

static CK_FUNCTION_LIST_3_2 *f;
static CK_FUNCTION_LIST *f240; /* C_GetFunctionList's */
static CK_FUNCTION_LIST_3_0 *f30;
static CK_BYTE label[32];
static CK_BYTE label2[32]; /* another token's: two tokens never share one label */

static void fail_hard(const char *why) {
  fprintf(stderr, "FAIL: %s\n", why);
  _exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A thread blocked in C_WaitForSlotEvent without CKF_DONT_BLOCK. */
struct waiter {
  pthread_t thread;
  pid_t tid; /* set by the thread before it calls */
  CK_RV rv;
  CK_SLOT_ID slot;
};

static void *wait_for_event(void *arg) {
  struct waiter *w = arg;
  __atomic_store_n(&w->tid, gettid(), __ATOMIC_SEQ_CST);
  w->rv = f->C_WaitForSlotEvent(0, &w->slot, NULL);
  return NULL;
}

/* sleeping reports whether thread tid is asleep (state S in its stat). */
static int sleeping(pid_t tid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
  FILE *fp = fopen(path, "r");
  if (!fp) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* the command name may hold anything */
  return p && p[1] == ' ' && p[2] == 'S';
}

/* start_waiter starts a waiter and returns once its thread has slept
 * without a break for 5 ms (within 5 s: a thread entering Go can sleep
 * briefly on the way in). Whether the event comes before or after the
 * waiter blocks, the outcome must be the same, so this only makes the
 * blocked path the one taken; the Go test (TestSlotEvents) counts the
 * blocked waiters and checks that path deterministically. */
static int start_waiter(struct waiter *w) {
  memset(w, 0, sizeof *w);
  if (pthread_create(&w->thread, NULL, wait_for_event, w) != 0) fail_hard("pthread_create");
  double deadline = now() + 5, asleep = 0;
  pid_t tid;
  while ((tid = __atomic_load_n(&w->tid, __ATOMIC_SEQ_CST)) == 0 && now() < deadline) sched_yield();
  while (tid && now() < deadline) {
    if (!sleeping(tid)) asleep = 0;
    else if (asleep == 0) asleep = now();
    else if (now() - asleep >= 0.005) return 1;
    sched_yield();
  }
  return 0;
}

/* join_waiter waits at most 10 s: a waiter that never returns is a hang. */
static void join_waiter(struct waiter *w) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  if (pthread_timedjoin_np(w->thread, NULL, &until) != 0) fail_hard("a blocked C_WaitForSlotEvent did not return");
}

static void test_before_initialize(void) {
  CK_SLOT_ID slot;
  /* Even a blocking call returns at once. */
  RV(f->C_WaitForSlotEvent(0, &slot, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, &slot), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f->C_LoginUser(1, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8, NULL, 0), CKR_CRYPTOKI_NOT_INITIALIZED);
  /* The older lists' wrappers check nothing before the module does. */
  CK_TOKEN_INFO ti;
  CK_SESSION_INFO si;
  CK_MECHANISM_INFO mi;
  CK_SESSION_HANDLE h;
  RV(f240->C_GetTokenInfo(0, &ti), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f240->C_GetSessionInfo(1, &si), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f240->C_GetMechanismInfo(0, CKM_ECDSA_SHA256, &mi), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f240->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &h), CKR_CRYPTOKI_NOT_INITIALIZED);
  RV(f30->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &h), CKR_CRYPTOKI_NOT_INITIALIZED);
}

/* A caller that came through C_GetFunctionList (the 2.40 list) sees no flag
 * bit 2.40 does not define, one through the 3.0 interface none that 3.0
 * does not, and neither can open an asynchronous session (those lists have
 * no C_AsyncComplete): CKR_SESSION_ASYNC_NOT_SUPPORTED, as from a token
 * without them. Everything else is what the 3.2 list says. */
static void test_older_lists(void) {
  CK_TOKEN_INFO t32, t240, t30;
  /* Zeroed: memcmp below sees the padding bytes too. */
  memset(&t32, 0, sizeof t32);
  memset(&t240, 0, sizeof t240);
  memset(&t30, 0, sizeof t30);
  RV(f->C_GetTokenInfo(0, &t32), CKR_OK);
  RV(f240->C_GetTokenInfo(0, &t240), CKR_OK);
  RV(f30->C_GetTokenInfo(0, &t30), CKR_OK);
  CHECK(t32.flags & CKF_ASYNC_SESSION_SUPPORTED, "3.2 token flags 0x%lx lack CKF_ASYNC_SESSION_SUPPORTED", t32.flags);
  CHECK(t240.flags == (t32.flags & TOKEN_FLAGS_2_40), "2.40 token flags 0x%lx, 3.2 0x%lx", t240.flags, t32.flags);
  CHECK(t30.flags == (t32.flags & TOKEN_FLAGS_3_0), "3.0 token flags 0x%lx, 3.2 0x%lx", t30.flags, t32.flags);
  t240.flags = t30.flags = t32.flags;
  CHECK(memcmp(&t240, &t32, sizeof t32) == 0, "2.40 token info differs beyond its flags");
  CHECK(memcmp(&t30, &t32, sizeof t32) == 0, "3.0 token info differs beyond its flags");
  RV(f240->C_GetTokenInfo(999, &t240), CKR_SLOT_ID_INVALID);
  RV(f240->C_GetTokenInfo(0, NULL), CKR_ARGUMENTS_BAD);

  CK_SESSION_HANDLE h, async;
  RV(f240->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &h), CKR_SESSION_ASYNC_NOT_SUPPORTED);
  RV(f30->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &h), CKR_SESSION_ASYNC_NOT_SUPPORTED);
  RV(f240->C_OpenSession(999, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &h), CKR_SLOT_ID_INVALID);
  RV(f240->C_OpenSession(0, CKF_ASYNC_SESSION, NULL, NULL, &h), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
  RV(f240->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
  RV(f240->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &async), CKR_OK);
  CK_SESSION_INFO s32, s240, s30;
  RV(f->C_GetSessionInfo(async, &s32), CKR_OK);
  RV(f240->C_GetSessionInfo(async, &s240), CKR_OK);
  RV(f30->C_GetSessionInfo(async, &s30), CKR_OK);
  CHECK(s32.flags == (CKF_SERIAL_SESSION | CKF_ASYNC_SESSION), "3.2 session flags 0x%lx", s32.flags);
  CHECK(s240.flags == CKF_SERIAL_SESSION && s30.flags == CKF_SERIAL_SESSION, "2.40/3.0 session flags 0x%lx/0x%lx", s240.flags, s30.flags);
  CHECK(s240.slotID == s32.slotID && s240.state == s32.state, "2.40 session info differs beyond its flags");
  RV(f240->C_GetSessionInfo(h, &s240), CKR_OK);
  CHECK(s240.flags == (CKF_SERIAL_SESSION | CKF_RW_SESSION), "2.40 R/W session flags 0x%lx", s240.flags);
  RV(f240->C_GetSessionInfo(0x12345, &s240), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_CloseSession(async), CKR_OK);
  RV(f240->C_CloseSession(h), CKR_OK);

  CK_MECHANISM_TYPE mechs[64];
  CK_ULONG n = 64;
  RV(f->C_GetMechanismList(0, mechs, &n), CKR_OK);
  CHECK(n > 10, "%lu mechanisms", n);
  for (CK_ULONG i = 0; i < n; i++) {
    CK_MECHANISM_INFO m32, m240, m30;
    RV(f->C_GetMechanismInfo(0, mechs[i], &m32), CKR_OK);
    RV(f240->C_GetMechanismInfo(0, mechs[i], &m240), CKR_OK);
    RV(f30->C_GetMechanismInfo(0, mechs[i], &m30), CKR_OK);
    CHECK(m240.flags == (m32.flags & MECHANISM_FLAGS_2_40), "mechanism 0x%lx: 2.40 flags 0x%lx, 3.2 0x%lx", mechs[i], m240.flags, m32.flags);
    CHECK(m30.flags == (m32.flags & MECHANISM_FLAGS_3_0), "mechanism 0x%lx: 3.0 flags 0x%lx, 3.2 0x%lx", mechs[i], m30.flags, m32.flags);
    CHECK(m240.ulMinKeySize == m32.ulMinKeySize && m240.ulMaxKeySize == m32.ulMaxKeySize, "mechanism 0x%lx: 2.40 key sizes", mechs[i]);
  }
  CK_MECHANISM_INFO mi;
  RV(f240->C_GetMechanismInfo(0, 0xdeadUL, &mi), CKR_MECHANISM_INVALID);
}

static void test_slot_events(void) {
  CK_SLOT_ID slot = 99;
  /* pReserved must be NULL, pSlot must not be; neither blocks. */
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, &slot), CKR_ARGUMENTS_BAD);
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_WaitForSlotEvent(0, NULL, NULL), CKR_ARGUMENTS_BAD);
  RV(f->C_WaitForSlotEvent(0, &slot, &slot), CKR_ARGUMENTS_BAD);
  /* Nothing has happened since C_Initialize. */
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);

  /* A token initialized into the empty slot wakes a blocked caller with
   * that slot's ID, once. */
  struct waiter w;
  CHECK(start_waiter(&w), "a blocking C_WaitForSlotEvent did not block");
  RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
  join_waiter(&w);
  RV(w.rv, CKR_OK);
  CHECK(w.slot == 0, "event for slot %lu, want 0", w.slot);
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);

  /* Re-initializing a token is an event too; with CKF_DONT_BLOCK it is
   * reported at once, and once. */
  RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
  slot = 99;
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_OK);
  CHECK(slot == 0, "event for slot %lu, want 0", slot);
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);

  /* Two slots' flags set: each reported once. */
  RV(f->C_InitToken(1, (CK_UTF8CHAR_PTR) "so-secret", 9, label), 0x6UL); /* CKR_FUNCTION_FAILED: the label is taken */
  RV(f->C_InitToken(1, (CK_UTF8CHAR_PTR) "so-secret", 9, label2), CKR_OK);
  RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
  CK_SLOT_ID a = 99, b = 99;
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &a, NULL), CKR_OK);
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &b, NULL), CKR_OK);
  CHECK((a == 0 && b == 1) || (a == 1 && b == 0), "events for slots %lu and %lu, want 0 and 1", a, b);
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);

  /* A failed C_InitToken changes nothing. (A PIN that is too short: a
   * wrong one would count against the TPM's lockout, which the PIN tests
   * below need whole.) */
  RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so", 2, label), CKR_PIN_LEN_RANGE);
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);

  /* C_Finalize on another thread wakes a blocked caller with
   * CKR_CRYPTOKI_NOT_INITIALIZED (and does not wait for it: no lock is held
   * while blocked). */
  CHECK(start_waiter(&w), "a blocking C_WaitForSlotEvent did not block");
  RV(f->C_Finalize(NULL), CKR_OK);
  join_waiter(&w);
  RV(w.rv, CKR_CRYPTOKI_NOT_INITIALIZED);

  /* C_Initialize clears every flag; tokens already there are no event. */
  RV(f->C_Initialize(NULL), CKR_OK);
  RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
}

#define USER_PIN_FLAGS (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED)
#define SO_PIN_FLAGS (CKF_SO_PIN_COUNT_LOW | CKF_SO_PIN_FINAL_TRY | CKF_SO_PIN_LOCKED)

static CK_FLAGS pin_flags(void) {
  CK_TOKEN_INFO ti;
  RV(f->C_GetTokenInfo(0, &ti), CKR_OK);
  return ti.flags & (USER_PIN_FLAGS | SO_PIN_FLAGS);
}

/* A PIN shorter than ulMinPinLen (the empty one too) or longer than
 * ulMaxPinLen never reaches the TPM: CKR_PIN_LEN_RANGE where a PIN is set,
 * CKR_PIN_INCORRECT where one is presented. The TPM locks after 3 failures
 * (swtpm's default), so the right PIN still working after 12 such PINs
 * shows that none cost a try. Leaves the user PIN "user-pin" on slot 0. */
static void test_pin_lengths(void) {
  CK_TOKEN_INFO ti;
  RV(f->C_GetTokenInfo(0, &ti), CKR_OK);
  CHECK(ti.ulMinPinLen >= 1 && ti.ulMaxPinLen < 1024, "PIN length range %lu..%lu", ti.ulMinPinLen, ti.ulMaxPinLen);
  static CK_UTF8CHAR long_pin[1024];
  memset(long_pin, 'x', sizeof long_pin);
  const CK_ULONG bad[] = {0, ti.ulMinPinLen - 1, ti.ulMaxPinLen + 1};
  CK_ULONG slots = 0;
  RV(f->C_GetSlotList(0, NULL, &slots), CKR_OK);

  for (int i = 0; i < 3; i++) {
    RV(f->C_InitToken(0, long_pin, bad[i], label), CKR_PIN_LEN_RANGE);
    RV(f->C_InitToken(slots - 1, long_pin, bad[i], label), CKR_PIN_LEN_RANGE); /* the empty slot */
  }
  CK_ULONG n = 0;
  RV(f->C_GetSlotList(0, NULL, &n), CKR_OK);
  CHECK(n == slots, "a PIN of impossible length made a token (%lu slots, were %lu)", n, slots);

  CK_SESSION_HANDLE h;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  for (int i = 0; i < 3; i++) RV(f->C_Login(h, CKU_SO, long_pin, bad[i]), CKR_PIN_INCORRECT);
  RV(f->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR) "so-secret", 9), CKR_OK);
  for (int i = 0; i < 3; i++) {
    RV(f->C_InitPIN(h, long_pin, bad[i]), CKR_PIN_LEN_RANGE);
    RV(f->C_SetPIN(h, (CK_UTF8CHAR_PTR) "so-secret", 9, long_pin, bad[i]), CKR_PIN_LEN_RANGE);
    RV(f->C_SetPIN(h, long_pin, bad[i], (CK_UTF8CHAR_PTR) "so-secret", 9), CKR_PIN_INCORRECT);
  }
  RV(f->C_InitPIN(h, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  RV(f->C_Logout(h), CKR_OK);
  for (int i = 0; i < 3; i++) {
    RV(f->C_Login(h, CKU_USER, long_pin, bad[i]), CKR_PIN_INCORRECT);
    RV(f->C_SetPIN(h, (CK_UTF8CHAR_PTR) "user-pin", 8, long_pin, bad[i]), CKR_PIN_LEN_RANGE);
    RV(f->C_SetPIN(h, long_pin, bad[i], (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_PIN_INCORRECT);
  }
  CHECK(pin_flags() == 0, "PIN flags 0x%lx after PINs of impossible length", pin_flags());
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  RV(f->C_CloseSession(h), CKR_OK);
}

static CK_STATE state(CK_SESSION_HANDLE h) {
  CK_SESSION_INFO si;
  RV(f->C_GetSessionInfo(h, &si), CKR_OK);
  return si.state;
}

/* C_LoginUser (3.0) on a token with one user of each type and no names:
 * with a NULL or empty name it is C_Login, codes and all; a name is
 * CKR_ARGUMENTS_BAD and logs nobody in. Needs the user PIN "user-pin". */
static void test_login_user(void) {
  CK_SESSION_HANDLE h, ro;
  CK_UTF8CHAR_PTR pin = (CK_UTF8CHAR_PTR) "user-pin", so_pin = (CK_UTF8CHAR_PTR) "so-secret";
  RV(f->C_LoginUser(0x12345, CKU_USER, pin, 8, NULL, 0), CKR_SESSION_HANDLE_INVALID);
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  RV(f->C_LoginUser(h, CKU_USER, pin, 8, NULL, 0), CKR_OK);
  CHECK(state(h) == CKS_RW_USER_FUNCTIONS, "state %lu after C_LoginUser", state(h));
  RV(f->C_LoginUser(h, CKU_USER, pin, 8, NULL, 0), CKR_USER_ALREADY_LOGGED_IN);
  RV(f->C_LoginUser(h, CKU_SO, so_pin, 9, NULL, 0), CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
  RV(f->C_Logout(h), CKR_OK);
  RV(f->C_LoginUser(h, CKU_USER, pin, 8, (CK_UTF8CHAR_PTR) "", 0), CKR_OK); /* empty, not NULL */
  RV(f->C_Logout(h), CKR_OK);
  RV(f->C_LoginUser(h, CKU_USER, pin, 8, (CK_UTF8CHAR_PTR) "alice", 5), CKR_ARGUMENTS_BAD);
  RV(f->C_LoginUser(h, CKU_USER, pin, 8, NULL, 5), CKR_ARGUMENTS_BAD);
  RV(f->C_LoginUser(h, CKU_SO, so_pin, 9, (CK_UTF8CHAR_PTR) "admin", 5), CKR_ARGUMENTS_BAD);
  CHECK(state(h) == CKS_RW_PUBLIC_SESSION, "state %lu after a refused C_LoginUser", state(h));
  RV(f->C_LoginUser(h, CKU_SO, so_pin, 9, NULL, 0), CKR_OK);
  CHECK(state(h) == CKS_RW_SO_FUNCTIONS, "state %lu after the SO's C_LoginUser", state(h));
  RV(f->C_Logout(h), CKR_OK);
  RV(f->C_LoginUser(h, 7, pin, 8, NULL, 0), CKR_USER_TYPE_INVALID);
  RV(f->C_LoginUser(h, CKU_CONTEXT_SPECIFIC, pin, 8, NULL, 0), CKR_OPERATION_NOT_INITIALIZED);
  RV(f->C_LoginUser(h, CKU_USER, pin, 3, NULL, 0), CKR_PIN_INCORRECT); /* too short: no TPM try */
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
  RV(f->C_LoginUser(h, CKU_SO, so_pin, 9, NULL, 0), CKR_SESSION_READ_ONLY_EXISTS);
  CHECK(pin_flags() == 0, "PIN flags 0x%lx after C_LoginUser", pin_flags());
  RV(f->C_CloseSession(ro), CKR_OK);
  RV(f->C_CloseSession(h), CKR_OK);
}

/* CKF_*_PIN_COUNT_LOW mean a wrong PIN since that user's last successful
 * login, whatever the TPM's lockout counter (TPM-wide, not reset by a
 * success) says; FINAL_TRY: that, and the TPM one failure from lockout;
 * LOCKED: the TPM in lockout. swtpm's defaults: lockout at 3 failures. This
 * uses up the TPM's tries: it runs last. */
static void test_pin_counts(void) {
  CK_SESSION_HANDLE h;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  CHECK(pin_flags() == 0, "PIN flags 0x%lx before any wrong PIN", pin_flags());
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9), CKR_PIN_INCORRECT); /* TPM: 1 of 3 */
  CHECK(pin_flags() == CKF_USER_PIN_COUNT_LOW, "PIN flags 0x%lx after a wrong user PIN", pin_flags());
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9), CKR_PIN_INCORRECT); /* 2 of 3 */
  CHECK(pin_flags() == (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY), "PIN flags 0x%lx with one try left", pin_flags());
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  CHECK(pin_flags() == 0, "PIN flags 0x%lx after a good login (was: COUNT_LOW stayed)", pin_flags());
  RV(f->C_Logout(h), CKR_OK);
  RV(f->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR) "wrong-so", 8), CKR_PIN_INCORRECT); /* 3 of 3 */
  CHECK(pin_flags() == (CKF_SO_PIN_COUNT_LOW | CKF_USER_PIN_LOCKED | CKF_SO_PIN_LOCKED), "PIN flags 0x%lx in lockout", pin_flags());
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_PIN_LOCKED);
  RV(f->C_CloseSession(h), CKR_OK);
}

static void timed_out(int sig) {
  (void)sig;
  static const char msg[] = "FAIL: conformance_test timed out (a deadlock: C_Finalize and a blocked C_WaitForSlotEvent?)\n";
  if (write(2, msg, sizeof msg - 1) < 0) _exit(1);
  _exit(1);
}

int main(int argc, char **argv) {
  signal(SIGALRM, timed_out);
  alarm(60); /* a deadlock fails the test instead of hanging it */
  void *so = dlopen(argc > 1 ? argv[1] : "build/libtpm11.so", RTLD_NOW | RTLD_LOCAL);
  if (!so) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  CK_VERSION v32 = {3, 2};
  RV(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v32, &ip, 0), CKR_OK);
  f = ip->pFunctionList;
  CK_VERSION v30 = {3, 0};
  RV(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &ip, 0), CKR_OK);
  f30 = ip->pFunctionList;
  CK_RV (*get_fl)(CK_FUNCTION_LIST_PTR_PTR) = dlsym(so, "C_GetFunctionList");
  RV(get_fl(&f240), CKR_OK);
  memset(label, ' ', sizeof label);
  memcpy(label, "conformance", 11);
  memset(label2, ' ', sizeof label2);
  memcpy(label2, "conformance 2", 13);

  test_before_initialize();
  RV(f->C_Initialize(NULL), CKR_OK);
  test_slot_events();
  test_older_lists();
  test_pin_lengths();
  test_login_user();
  test_pin_counts(); /* last: leaves the TPM in lockout */
  RV(f->C_Finalize(NULL), CKR_OK);
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("conformance_test: all checks passed\n");
  return 0;
}
