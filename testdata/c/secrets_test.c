/* No copy of a PIN survives C_Logout or C_Finalize: testdata/faults-test.sh.
 *   secrets_test MODULE
 * Makes a token whose user PIN is random, sets it (C_InitPIN), logs in and
 * out with it, changes it (C_SetPIN) and logs in with the new one, then
 * scans its own memory (every readable mapping, through /proc/self/mem)
 * for the PINs: after C_Logout, and after C_Finalize. The PINs are kept
 * XORed in this program and put in the clear only in the buffer handed to
 * the module, wiped when the call returns, so any copy found is the
 * module's. Prints the counts; exit 1 if any is not zero. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "test.h"

#define PINLEN 20
#define MASK 0x5a

static CK_FUNCTION_LIST_3_2 *f;
static unsigned char xpin[2][PINLEN]; /* the PINs, XORed with MASK */
static unsigned char *chunk;          /* scan buffer, mmapped: skipped */
#define CHUNK (1 << 20)

static void make_pin(unsigned char *x) {
  unsigned char r[8];
  int fd = open("/dev/urandom", O_RDONLY);
  if (fd < 0 || read(fd, r, sizeof r) != sizeof r) abort();
  close(fd);
  const char *hexd = "0123456789abcdef";
  const char *pre = "pin-";
  for (int i = 0; i < 4; i++) x[i] = (unsigned char) pre[i] ^ MASK;
  for (int i = 0; i < 8; i++) {
    x[4 + 2 * i] = (unsigned char) hexd[r[i] >> 4] ^ MASK;
    x[5 + 2 * i] = (unsigned char) hexd[r[i] & 15] ^ MASK;
  }
  explicit_bzero(r, sizeof r);
}

/* clear_pin puts PIN i in the clear in a fresh buffer for one call. */
static CK_UTF8CHAR *clear_pin(int i) {
  CK_UTF8CHAR *b = malloc(PINLEN);
  for (int k = 0; k < PINLEN; k++) b[k] = xpin[i][k] ^ MASK;
  return b;
}

static void drop_pin(CK_UTF8CHAR *b) {
  explicit_bzero(b, PINLEN);
  free(b);
}

/* count finds PIN i in every readable mapping but the scan buffer. */
static int count(int i) {
  FILE *maps = fopen("/proc/self/maps", "r");
  int mem = open("/proc/self/mem", O_RDONLY);
  if (!maps || mem < 0) abort();
  char line[512];
  int found = 0;
  while (fgets(line, sizeof line, maps)) {
    unsigned long lo, hi;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r') continue;
    if (strstr(line, "[vvar") || strstr(line, "[vsyscall]")) continue;
    if (lo == (unsigned long) chunk) continue;
    for (unsigned long at = lo; at < hi; at += CHUNK - PINLEN) {
      size_t want = hi - at < CHUNK ? hi - at : CHUNK;
      ssize_t n = pread(mem, chunk, want, (off_t) at);
      if (n <= 0) break;
      for (ssize_t k = 0; k + PINLEN <= n; k++) {
        if ((chunk[k] ^ MASK) != xpin[i][0]) continue;
        int m = 1;
        while (m < PINLEN && (chunk[k + m] ^ MASK) == xpin[i][m]) m++;
        /* The last PINLEN bytes are read again by the next chunk. */
        int last = (size_t) n < want || at + (unsigned long) n >= hi;
        if (m == PINLEN && (last || k < CHUNK - PINLEN)) {
          found++;
          fprintf(stderr, "  PIN %d at %#lx in %s", i, at + (unsigned long) k, line);
        }
      }
      if ((size_t) n < want || want < CHUNK) break;
    }
  }
  explicit_bzero(chunk, CHUNK);
  fclose(maps);
  close(mem);
  return found;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  chunk = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (chunk == MAP_FAILED) return 2;
  make_pin(xpin[0]);
  make_pin(xpin[1]);
  void *so = dlopen(argv[1], RTLD_NOW);
  if (!so) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) = dlsym(so, "C_GetInterface");
  CK_INTERFACE_PTR ip;
  RV(get_iface(NULL, NULL, &ip, 0), CKR_OK);
  f = ip->pFunctionList;
  RV(f->C_Initialize(NULL), CKR_OK);
  CK_BYTE label[32];
  memset(label, ' ', 32);
  RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "so-secret", 9, label), CKR_OK);
  CK_SESSION_HANDLE h;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  RV(f->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR) "so-secret", 9), CKR_OK);
  CK_UTF8CHAR *p = clear_pin(0);
  RV(f->C_InitPIN(h, p, PINLEN), CKR_OK);
  drop_pin(p);
  RV(f->C_Logout(h), CKR_OK);
  for (int round = 0; round < 3; round++) {
    p = clear_pin(0);
    RV(f->C_Login(h, CKU_USER, p, PINLEN), CKR_OK);
    drop_pin(p);
    RV(f->C_Logout(h), CKR_OK);
  }
  p = clear_pin(0);
  RV(f->C_Login(h, CKU_USER, p, PINLEN), CKR_OK);
  CK_UTF8CHAR *q = clear_pin(1);
  RV(f->C_SetPIN(h, p, PINLEN, q, PINLEN), CKR_OK);
  drop_pin(p);
  drop_pin(q);
  RV(f->C_Logout(h), CKR_OK);
  q = clear_pin(1);
  RV(f->C_Login(h, CKU_USER, q, PINLEN), CKR_OK);
  drop_pin(q);
  RV(f->C_Logout(h), CKR_OK);
  int afterLogout = count(0) + count(1);
  p = clear_pin(1);
  RV(f->C_Login(h, CKU_USER, p, PINLEN), CKR_OK);
  drop_pin(p);
  RV(f->C_Finalize(NULL), CKR_OK); /* logged in: C_Finalize ends it */
  int afterFinalize = count(0) + count(1);
  printf("PIN copies after C_Logout %d, after C_Finalize %d\n", afterLogout, afterFinalize);
  CHECK(afterLogout == 0, "%d PIN copies survive C_Logout", afterLogout);
  CHECK(afterFinalize == 0, "%d PIN copies survive C_Finalize", afterFinalize);
  return failures ? 1 : 0;
}
