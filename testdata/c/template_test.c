/* Template attributes (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE,
 * CKA_DERIVE_TEMPLATE, CKA_ENCAPSULATE_TEMPLATE, CKA_DECAPSULATE_TEMPLATE)
 * through the ABI, with libcrypto as the other party:
 * - set at creation and read back by key_objects.md's rules (the array's
 *   size, the inner types and lengths, the values; too small an array or
 *   inner buffer: CK_UNAVAILABLE_INFORMATION and CKR_BUFFER_TOO_SMALL; a
 *   mixture of known and unknown inner types: CKR_TEMPLATE_INCONSISTENT);
 *   fixed afterwards (CKR_ATTRIBUTE_READ_ONLY);
 * - bad arrays refused, never a crash: a length that is no whole number of
 *   CK_ATTRIBUTEs, a NULL array or inner value with a length, too many
 *   attributes, a template nested, a CK_BBOOL of two bytes;
 * - C_WrapKey of a key that matches the wrapping key's CKA_WRAP_TEMPLATE:
 *   the bytes are openssl's AES key wrap (RFC 3394) of the key; one that
 *   does not: CKR_KEY_HANDLE_INVALID;
 * - C_UnwrapKey of openssl's wrap, C_DeriveKey and C_DecapsulateKey with
 *   openssl's ephemeral P-256 key: the new key has the unwrap/derive/
 *   decapsulate template's attributes and openssl's value; a caller's
 *   template that contradicts one: CKR_TEMPLATE_INCONSISTENT;
 * - C_EncapsulateKey: a key the CKA_ENCAPSULATE_TEMPLATE does not match
 *   is CKR_KEY_HANDLE_INVALID;
 * - in a forked child (p11-kit's RPC, docs/fork.md, module/child_tmpl.c)
 *   an array is read as absent and refused in a template, never sent to
 *   the helper, whose connection keeps working;
 * - through p11-kit's RPC server, CKA_ENCAPSULATE_TEMPLATE (which p11-kit
 *   carries as bytes) is refused, never read through the client's pointers.
 * Usage: template_test module.so */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include "setup.h"

#define D(name, value) static const CK_ULONG name = value
D(T_CKA_LABEL, 0x3UL);
D(T_CKA_ENCRYPT, 0x104UL);
D(T_CKA_DECRYPT, 0x105UL);
D(T_CKA_WRAP, 0x106UL);
D(T_CKA_UNWRAP, 0x107UL);
D(T_CKA_SIGN, 0x108UL);
D(T_CKA_WRAP_TEMPLATE, 0x40000211UL);
D(T_CKA_UNWRAP_TEMPLATE, 0x40000212UL);
D(T_CKA_DERIVE_TEMPLATE, 0x40000213UL);
D(T_CKA_ENCAPSULATE_TEMPLATE, 0x62aUL);
D(T_CKA_DECAPSULATE_TEMPLATE, 0x62bUL);
D(T_CKK_AES, 0x1FUL);
D(T_CKM_AES_KEY_WRAP, 0x2109UL);
D(T_CKR_ATTRIBUTE_READ_ONLY, 0x10UL);
D(T_CKR_ATTRIBUTE_VALUE_INVALID, 0x13UL);
D(T_CKR_KEY_HANDLE_INVALID, 0x60UL);
D(T_CKR_TEMPLATE_INCONSISTENT, 0xD1UL);
D(CKR_ATTRIBUTE_TYPE_INVALID_, 0x12UL);
#define UNAVAILABLE (~0UL)

static CK_FUNCTION_LIST_3_2 *f;
static CK_BBOOL yes = 1, no = 0;
static CK_ULONG secret_class = CKO_SECRET_KEY, aes = 0x1FUL, generic = CKK_GENERIC_SECRET;
static CK_ULONG len16 = 16, len32 = 32;
static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const CK_BYTE p256_spki[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
                                    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};

/* A readable AES key of n bytes with value v (ENCRYPT as given). */
static CK_OBJECT_HANDLE readable(CK_SESSION_HANDLE h, CK_ULONG kt, CK_BYTE *v, CK_ULONG n, CK_BBOOL *encrypt) {
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &kt, sizeof kt},
                      {CKA_VALUE, v, n}, {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}, {T_CKA_ENCRYPT, encrypt, 1}};
  CK_OBJECT_HANDLE k = 0;
  RV(f->C_CreateObject(h, t, 6, &k), CKR_OK);
  return k;
}

/* openssl's RFC 3394 key wrap. */
static int ossl_wrap(const CK_BYTE *kek, const CK_BYTE *in, int n, CK_BYTE *out) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  int l = 0, l2 = 0;
  if (!EVP_EncryptInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL) || !EVP_EncryptUpdate(c, out, &l, in, n) ||
      !EVP_EncryptFinal_ex(c, out + l, &l2)) {
    fprintf(stderr, "FAIL: openssl key wrap\n");
    exit(1);
  }
  EVP_CIPHER_CTX_free(c);
  return l + l2;
}

/* Reading the arrays back (key_objects.md "Template Attributes"). */
static void read_back(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE kek) {
  /* The size of the array, beside an ordinary attribute. */
  CK_BYTE label[16];
  CK_ATTRIBUTE q[] = {{T_CKA_WRAP_TEMPLATE, NULL, 0}, {T_CKA_LABEL, label, sizeof label}, {T_CKA_UNWRAP_TEMPLATE, NULL, 0}};
  RV(f->C_GetAttributeValue(h, kek, q, 3), CKR_OK);
  CHECK(q[0].ulValueLen == 2 * sizeof(CK_ATTRIBUTE), "wrap template size %lu", q[0].ulValueLen);
  CHECK(q[1].ulValueLen == 3 && memcmp(label, "kek", 3) == 0, "the label beside it");
  CHECK(q[2].ulValueLen == 4 * sizeof(CK_ATTRIBUTE), "unwrap template size %lu", q[2].ulValueLen);

  /* Too small an array: unavailable, CKR_BUFFER_TOO_SMALL. */
  CK_ATTRIBUTE inner[4];
  memset(inner, 0, sizeof inner);
  CK_ATTRIBUTE small = {T_CKA_WRAP_TEMPLATE, inner, sizeof(CK_ATTRIBUTE)};
  RV(f->C_GetAttributeValue(h, kek, &small, 1), CKR_BUFFER_TOO_SMALL);
  CHECK(small.ulValueLen == UNAVAILABLE, "too small an array: %lu", small.ulValueLen);

  /* Types unknown: each gets its type and length, in order. */
  for (int i = 0; i < 2; i++) inner[i] = (CK_ATTRIBUTE){UNAVAILABLE, NULL, 0};
  CK_ATTRIBUTE a = {T_CKA_WRAP_TEMPLATE, inner, 2 * sizeof(CK_ATTRIBUTE)};
  RV(f->C_GetAttributeValue(h, kek, &a, 1), CKR_OK);
  CHECK(a.ulValueLen == 2 * sizeof(CK_ATTRIBUTE), "array length");
  CHECK(inner[0].type == CKA_KEY_TYPE && inner[0].ulValueLen == sizeof(CK_ULONG) && inner[0].pValue == NULL,
        "inner 0: type 0x%lx len %lu", inner[0].type, inner[0].ulValueLen);
  CHECK(inner[1].type == CKA_VALUE_LEN && inner[1].ulValueLen == sizeof(CK_ULONG), "inner 1: type 0x%lx", inner[1].type);

  /* Types known, buffers given (in another order): the values. */
  CK_ULONG kt = 0, vl = 0;
  inner[0] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &vl, sizeof vl};
  inner[1] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &kt, sizeof kt};
  RV(f->C_GetAttributeValue(h, kek, &a, 1), CKR_OK);
  CHECK(kt == T_CKK_AES && vl == 16, "values: key type 0x%lx, length %lu", kt, vl);

  /* A larger array than needed: its length is set to the template's. */
  CK_ATTRIBUTE big = {T_CKA_WRAP_TEMPLATE, inner, 4 * sizeof(CK_ATTRIBUTE)};
  for (int i = 0; i < 4; i++) inner[i] = (CK_ATTRIBUTE){UNAVAILABLE, NULL, 0};
  RV(f->C_GetAttributeValue(h, kek, &big, 1), CKR_OK);
  CHECK(big.ulValueLen == 2 * sizeof(CK_ATTRIBUTE), "larger array: %lu", big.ulValueLen);

  /* The unwrap template: one inner buffer too small. */
  CK_ATTRIBUTE u[4];
  CK_BYTE lbl[4], b1 = 9, b2 = 9, b3 = 9;
  u[0] = (CK_ATTRIBUTE){T_CKA_LABEL, lbl, 2};
  u[1] = (CK_ATTRIBUTE){T_CKA_DECRYPT, &b1, 1};
  u[2] = (CK_ATTRIBUTE){CKA_SENSITIVE, &b2, 1};
  u[3] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &b3, 1};
  CK_ATTRIBUTE ua = {T_CKA_UNWRAP_TEMPLATE, u, sizeof u};
  RV(f->C_GetAttributeValue(h, kek, &ua, 1), CKR_BUFFER_TOO_SMALL);
  CHECK(u[0].ulValueLen == UNAVAILABLE, "inner buffer too small: %lu", u[0].ulValueLen);
  CHECK(b1 == 0 && b2 == 0 && b3 == 1 && u[3].ulValueLen == 1, "the others are filled");
  u[0].ulValueLen = sizeof lbl;
  RV(f->C_GetAttributeValue(h, kek, &ua, 1), CKR_OK);
  CHECK(u[0].ulValueLen == 4 && memcmp(lbl, "mine", 4) == 0, "the inner label");

  /* A mixture of known and unknown types, or a type the template lacks. */
  u[1].type = UNAVAILABLE;
  RV(f->C_GetAttributeValue(h, kek, &ua, 1), T_CKR_TEMPLATE_INCONSISTENT);
  u[1].type = T_CKA_SIGN;
  RV(f->C_GetAttributeValue(h, kek, &ua, 1), T_CKR_TEMPLATE_INCONSISTENT);

  /* Fixed once made. */
  CK_ATTRIBUTE none = {T_CKA_WRAP_TEMPLATE, NULL, 0};
  RV(f->C_SetAttributeValue(h, kek, &none, 1), T_CKR_ATTRIBUTE_READ_ONLY);
}

/* Bad arrays: each refused, none a crash. */
static void bad_arrays(CK_SESSION_HANDLE h) {
  CK_BYTE v[16] = {0};
  CK_ATTRIBUTE ok1[] = {{CKA_SENSITIVE, &yes, 1}};
  CK_BBOOL two[2] = {1, 1};
  CK_ATTRIBUTE bool2[] = {{CKA_SENSITIVE, two, 2}};
  CK_ATTRIBUTE nullval[] = {{CKA_SENSITIVE, NULL, 1}};
  CK_ATTRIBUTE nested[] = {{T_CKA_DERIVE_TEMPLATE, ok1, sizeof ok1}};
  CK_ATTRIBUTE many[65];
  for (int i = 0; i < 65; i++) many[i] = (CK_ATTRIBUTE){CKA_SENSITIVE, &yes, 1};
  struct { void *p; CK_ULONG n; CK_RV want; const char *what; } cases[] = {
      {ok1, sizeof ok1 + 1, T_CKR_ATTRIBUTE_VALUE_INVALID, "a length that is no array"},
      {ok1, 3, T_CKR_ATTRIBUTE_VALUE_INVALID, "a length under one attribute"},
      {NULL, sizeof ok1, T_CKR_ATTRIBUTE_VALUE_INVALID, "a NULL array"},
      {nullval, sizeof nullval, T_CKR_ATTRIBUTE_VALUE_INVALID, "a NULL inner value"},
      {bool2, sizeof bool2, T_CKR_ATTRIBUTE_VALUE_INVALID, "a CK_BBOOL of two bytes"},
      {nested, sizeof nested, T_CKR_TEMPLATE_INCONSISTENT, "a template in a template"},
      {many, sizeof many, T_CKR_ATTRIBUTE_VALUE_INVALID, "65 attributes"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes},
                        {CKA_VALUE, v, 16}, {T_CKA_UNWRAP_TEMPLATE, cases[i].p, cases[i].n}};
    CK_OBJECT_HANDLE k = 0;
    CK_RV r = f->C_CreateObject(h, t, 4, &k);
    CHECK(r == cases[i].want, "C_CreateObject, %s: 0x%lx, want 0x%lx", cases[i].what, r, cases[i].want);
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE g[] = {{CKA_VALUE_LEN, &len16, sizeof len16}, {T_CKA_DERIVE_TEMPLATE, cases[i].p, cases[i].n}};
    r = f->C_GenerateKey(h, &gen, g, 2, &k);
    CHECK(r == cases[i].want, "C_GenerateKey, %s: 0x%lx, want 0x%lx", cases[i].what, r, cases[i].want);
    /* C_FindObjectsInit has no CKR_TEMPLATE_INCONSISTENT: an array it
     * cannot read, or a template in it, is CKR_ATTRIBUTE_VALUE_INVALID. (A
     * two-byte CK_BBOOL is a well-formed array whose value matches no key:
     * a search may ask for it.) */
    if (cases[i].p == bool2) continue;
    CK_ATTRIBUTE q[] = {{T_CKA_UNWRAP_TEMPLATE, cases[i].p, cases[i].n}};
    r = f->C_FindObjectsInit(h, q, 1);
    if (r == CKR_OK) f->C_FindObjectsFinal(h);
    CHECK(r == T_CKR_ATTRIBUTE_VALUE_INVALID, "C_FindObjectsInit, %s: 0x%lx", cases[i].what, r);
  }
}

/* openssl's P-256 public key of the token's CKA_EC_POINT (DER OCTET STRING). */
static EVP_PKEY *token_point(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub) {
  CK_BYTE pt[80], spki[100];
  CK_ATTRIBUTE a = {CKA_EC_POINT, pt, sizeof pt};
  RV(f->C_GetAttributeValue(h, pub, &a, 1), CKR_OK);
  if (a.ulValueLen != 67) { fprintf(stderr, "FAIL: EC point of %lu bytes\n", a.ulValueLen); exit(1); }
  memcpy(spki, p256_spki, sizeof p256_spki);
  memcpy(spki + sizeof p256_spki, pt + 2, 65);
  const unsigned char *p = spki;
  EVP_PKEY *k = d2i_PUBKEY(NULL, &p, sizeof p256_spki + 65);
  if (!k) { fprintf(stderr, "FAIL: d2i_PUBKEY\n"); exit(1); }
  return k;
}

static CK_ULONG get(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k, CK_ULONG type, void *buf, CK_ULONG cap) {
  CK_ATTRIBUTE a = {type, buf, cap};
  RV(f->C_GetAttributeValue(h, k, &a, 1), CKR_OK);
  return a.ulValueLen;
}

/* What a forked child saw (shared with the parent). */
struct child_report {
  int done;
  CK_RV find, size, types, values, create, after, fin;
  CK_ULONG size_len, t0, t1, kt, vl;
  CK_RV badobj; /* a template attribute of no object */
};

/* A forked child reads the token key's wrap template and makes a key with
 * one, through the helper; the parent waits with a bound that only
 * catches a hang, and checks what it got. */
static void forked_child(CK_SESSION_HANDLE parent_h, CK_ATTRIBUTE *wt, CK_ULONG wn) {
  (void) parent_h;
  struct child_report *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) { perror("mmap"); exit(1); }
  memset(r, 0, sizeof *r);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(600); /* a hang ends the child; the parent reports it */
    CK_SESSION_HANDLE h;
    if (f->C_Initialize(NULL) != CKR_OK || f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h) != CKR_OK ||
        f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8) != CKR_OK)
      _exit(3);
    CK_ATTRIBUTE q = {T_CKA_LABEL, "token-kek", 9};
    CK_OBJECT_HANDLE k = 0;
    CK_ULONG n = 0;
    r->find = f->C_FindObjectsInit(h, &q, 1);
    if (r->find == CKR_OK) r->find = f->C_FindObjects(h, &k, 1, &n);
    f->C_FindObjectsFinal(h);
    if (r->find == CKR_OK && n != 1) r->find = ~0UL;
    CK_ATTRIBUTE a = {T_CKA_WRAP_TEMPLATE, NULL, 0};
    r->size = f->C_GetAttributeValue(h, k, &a, 1);
    r->size_len = a.ulValueLen;
    CK_ATTRIBUTE inner[2] = {{UNAVAILABLE, NULL, 0}, {UNAVAILABLE, NULL, 0}};
    a = (CK_ATTRIBUTE){T_CKA_WRAP_TEMPLATE, inner, sizeof inner};
    r->types = f->C_GetAttributeValue(h, k, &a, 1);
    r->t0 = inner[0].type, r->t1 = inner[1].type;
    inner[0] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &r->kt, sizeof r->kt};
    inner[1] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &r->vl, sizeof r->vl};
    r->values = f->C_GetAttributeValue(h, k, &a, 1);
    CK_BYTE v[16] = {0};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes},
                        {CKA_VALUE, v, 16}, {T_CKA_WRAP_TEMPLATE, wt, wn * sizeof(CK_ATTRIBUTE)}};
    CK_OBJECT_HANDLE nk;
    r->create = f->C_CreateObject(h, t, 4, &nk);
    /* The child's connection still works after them. */
    CK_BYTE lbl[16];
    CK_ATTRIBUTE la = {T_CKA_LABEL, lbl, sizeof lbl};
    r->after = f->C_GetAttributeValue(h, k, &la, 1);
    CK_ATTRIBUTE wa = {T_CKA_WRAP_TEMPLATE, NULL, 0};
    r->badobj = f->C_GetAttributeValue(h, 0x7fffffffUL, &wa, 1);
    if (r->after == CKR_OK && (la.ulValueLen != 9 || memcmp(lbl, "token-kek", 9) != 0)) r->after = ~0UL;
    r->fin = f->C_Finalize(NULL);
    r->done = 1;
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && r->done, "the forked child did not finish (status 0x%x)", st);
  fprintf(stderr,
          "template_test: in a forked child: find 0x%lx; array size 0x%lx (%lu bytes); types 0x%lx (0x%lx 0x%lx); "
          "values 0x%lx (0x%lx %lu); C_CreateObject with an array 0x%lx; then CKA_LABEL 0x%lx\n",
          r->find, r->size, r->size_len, r->types, r->t0, r->t1, r->values, r->kt, r->vl, r->create, r->after);
  RV(r->find, CKR_OK);
  RV(r->after, CKR_OK);
  RV(r->fin, CKR_OK);
  /* p11-kit 0.24's RPC carries no array (docs/fork.md): the child answers
   * them as absent and refuses to make one, and its connection lives on. */
  RV(r->size, CKR_ATTRIBUTE_TYPE_INVALID_);
  CHECK(r->size_len == UNAVAILABLE, "child: the array's length %lu", r->size_len);
  RV(r->types, CKR_ATTRIBUTE_TYPE_INVALID_);
  RV(r->values, CKR_ATTRIBUTE_TYPE_INVALID_);
  RV(r->create, T_CKR_TEMPLATE_INCONSISTENT);
  /* Asked only for a template attribute, the child still asks the helper
   * about the object: a handle of none is CKR_OBJECT_HANDLE_INVALID. */
  RV(r->badobj, CKR_OBJECT_HANDLE_INVALID);
  munmap(r, sizeof *r);
}

/* Through p11-kit's RPC (p11-kit-client.so to `p11-kit remote` running
 * the module, as a forked child's helper runs): p11-kit carries
 * CKA_ENCAPSULATE_TEMPLATE as bytes, so the "array" the module gets holds
 * this process's pointers, any address there. The module refuses it
 * (CKR_TEMPLATE_INCONSISTENT) rather than read through them: an inner
 * pointer to nowhere must not take the server down (CKR_DEVICE_ERROR
 * here), and one to the server's memory must not copy it into a key. */
static void rpc_bytes(const char *module) {
  void *so = dlopen("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so", RTLD_NOW | RTLD_LOCAL);
  if (so == NULL) {
    fprintf(stderr, "FAIL: p11-kit-client.so (p11-kit-modules): %s\n", dlerror());
    failures++;
    return;
  }
  char addr[4096];
  snprintf(addr, sizeof addr, "|/usr/libexec/p11-kit/p11-kit-remote %s", module);
  setenv("P11_KIT_SERVER_ADDRESS", addr, 1);
  CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR) = (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(so, "C_GetFunctionList");
  CK_FUNCTION_LIST_PTR r = NULL;
  RV(get_list(&r), CKR_OK);
  RV(r->C_Initialize(NULL), CKR_OK);
  CK_SLOT_ID slots[4];
  CK_ULONG ns = 4;
  RV(r->C_GetSlotList(1, slots, &ns), CKR_OK);
  CK_SESSION_HANDLE h = 0;
  RV(r->C_OpenSession(slots[0], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
  RV(r->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  CK_ATTRIBUTE inner[] = {{T_CKA_LABEL, (void *)(uintptr_t)0x7ff0deadbee0ULL, 5}};
  CK_ULONG pubc = 2, ec = 3;
  CK_BYTE point[67] = {0x04, 65, 0x04};
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &pubc, sizeof pubc}, {CKA_KEY_TYPE, &ec, sizeof ec}, {CKA_EC_PARAMS, p256, sizeof p256},
                      {CKA_EC_POINT, point, sizeof point}, {T_CKA_ENCAPSULATE_TEMPLATE, inner, sizeof inner}};
  CK_OBJECT_HANDLE k = 0;
  RV(r->C_CreateObject(h, t, 5, &k), T_CKR_TEMPLATE_INCONSISTENT);
  CK_SESSION_INFO si;
  RV(r->C_GetSessionInfo(h, &si), CKR_OK); /* the server lives */
  RV(r->C_Finalize(NULL), CKR_OK);
}

int main(int argc, char **argv) {
  f = load_module(argc, argv);
  CK_SESSION_HANDLE h = make_token(f);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);

  /* The wrapping key: wraps AES-128 keys only; what it unwraps is
   * labelled "mine", readable and never decrypts. */
  CK_BYTE kekv[32];
  RAND_bytes(kekv, sizeof kekv);
  CK_ATTRIBUTE wrapT[] = {{CKA_KEY_TYPE, &aes, sizeof aes}, {CKA_VALUE_LEN, &len16, sizeof len16}};
  CK_ATTRIBUTE unwrapT[] = {{T_CKA_LABEL, "mine", 4}, {T_CKA_DECRYPT, &no, 1}, {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
  CK_ATTRIBUTE kt[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes},
                       {CKA_VALUE, kekv, sizeof kekv}, {T_CKA_WRAP, &yes, 1}, {T_CKA_UNWRAP, &yes, 1},
                       {T_CKA_LABEL, "kek", 3}, {T_CKA_WRAP_TEMPLATE, wrapT, sizeof wrapT},
                       {T_CKA_UNWRAP_TEMPLATE, unwrapT, sizeof unwrapT}};
  CK_OBJECT_HANDLE kek = 0;
  RV(f->C_CreateObject(h, kt, 8, &kek), CKR_OK);
  /* The caller's arrays are copied, not kept: scribbling on them now
   * changes nothing. */
  memset(wrapT, 0xA5, sizeof wrapT);
  read_back(h, kek);
  bad_arrays(h);
  /* A token key with a wrap template, for the forked child. */
  CK_ATTRIBUTE wrapT2[] = {{CKA_KEY_TYPE, &aes, sizeof aes}, {CKA_VALUE_LEN, &len16, sizeof len16}};
  CK_ATTRIBUTE tt[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes},
                       {CKA_VALUE, kekv, sizeof kekv}, {CKA_TOKEN, &yes, 1}, {T_CKA_LABEL, "token-kek", 9},
                       {T_CKA_WRAP_TEMPLATE, wrapT2, sizeof wrapT2}};
  CK_OBJECT_HANDLE tkek = 0;
  RV(f->C_CreateObject(h, tt, 6, &tkek), CKR_OK);

  /* Wrap: a matching key wraps to openssl's RFC 3394 bytes. */
  CK_BYTE v16[16], v32[32], wrapped[64], want[64];
  RAND_bytes(v16, sizeof v16);
  RAND_bytes(v32, sizeof v32);
  CK_MECHANISM kw = {T_CKM_AES_KEY_WRAP, NULL, 0};
  CK_OBJECT_HANDLE good = readable(h, T_CKK_AES, v16, 16, &yes);
  CK_ULONG n = 0;
  RV(f->C_WrapKey(h, &kw, kek, good, NULL, &n), CKR_OK);
  CHECK(n == 24, "wrapped length %lu", n);
  RV(f->C_WrapKey(h, &kw, kek, good, wrapped, &n), CKR_OK);
  int wn = ossl_wrap(kekv, v16, 16, want);
  CHECK((int)n == wn && memcmp(wrapped, want, n) == 0, "the wrapped bytes are openssl's AES key wrap");
  /* A key of another type or length: CKR_KEY_HANDLE_INVALID. */
  CK_OBJECT_HANDLE long_key = readable(h, T_CKK_AES, v32, 32, &yes);
  CK_OBJECT_HANDLE gen_key = readable(h, generic, v16, 16, &yes);
  CK_ULONG n2 = sizeof wrapped;
  RV(f->C_WrapKey(h, &kw, kek, long_key, wrapped, &n2), T_CKR_KEY_HANDLE_INVALID);
  RV(f->C_WrapKey(h, &kw, kek, gen_key, NULL, &n2), T_CKR_KEY_HANDLE_INVALID);

  /* Unwrap openssl's wrap of a fresh key: the unwrap template's
   * attributes, the caller's beside them, openssl's value. */
  CK_BYTE fresh[16], got[64];
  RAND_bytes(fresh, sizeof fresh);
  wn = ossl_wrap(kekv, fresh, 16, want);
  CK_ATTRIBUTE ut[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes},
                       {CKA_ID, "u1", 2}, {CKA_SENSITIVE, &no, 1}};
  CK_OBJECT_HANDLE uk = 0;
  RV(f->C_UnwrapKey(h, &kw, kek, want, wn, ut, 4, &uk), CKR_OK);
  CHECK(get(h, uk, CKA_VALUE, got, sizeof got) == 16 && memcmp(got, fresh, 16) == 0, "the unwrapped key is openssl's");
  CHECK(get(h, uk, T_CKA_LABEL, got, sizeof got) == 4 && memcmp(got, "mine", 4) == 0, "the unwrap template's label");
  CHECK(get(h, uk, T_CKA_DECRYPT, got, 1) == 1 && got[0] == 0, "the unwrap template's CKA_DECRYPT");
  CHECK(get(h, uk, CKA_ID, got, sizeof got) == 2 && memcmp(got, "u1", 2) == 0, "the caller's CKA_ID");
  CK_ATTRIBUTE conflict[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes},
                             {T_CKA_DECRYPT, &yes, 1}};
  RV(f->C_UnwrapKey(h, &kw, kek, want, wn, conflict, 3, &uk), T_CKR_TEMPLATE_INCONSISTENT);

  /* An EC key pair whose private key derives / decapsulates readable
   * keys labelled "derived" / "decap"; its public key encapsulates only
   * generic secrets. */
  CK_ATTRIBUTE derT[] = {{T_CKA_LABEL, "derived", 7}, {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
  CK_ATTRIBUTE decT[] = {{T_CKA_LABEL, "decap", 5}, {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
  CK_ATTRIBUTE encT[] = {{CKA_KEY_TYPE, &generic, sizeof generic}};
  CK_ATTRIBUTE pubT[] = {{CKA_EC_PARAMS, p256, sizeof p256}, {T_CKA_ENCAPSULATE_TEMPLATE, encT, sizeof encT},
                         {CKA_DERIVE, &yes, 1}};
  CK_ATTRIBUTE privT[] = {{CKA_DERIVE, &yes, 1}, {T_CKA_DERIVE_TEMPLATE, derT, sizeof derT},
                          {T_CKA_DECAPSULATE_TEMPLATE, decT, sizeof decT}};
  CK_MECHANISM ecgen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
  CK_OBJECT_HANDLE pub = 0, priv = 0;
  RV(f->C_GenerateKeyPair(h, &ecgen, pubT, 3, privT, 3, &pub, &priv), CKR_OK);
  CK_ATTRIBUTE dq = {T_CKA_DECAPSULATE_TEMPLATE, NULL, 0}, eq = {T_CKA_ENCAPSULATE_TEMPLATE, NULL, 0};
  RV(f->C_GetAttributeValue(h, priv, &dq, 1), CKR_OK);
  RV(f->C_GetAttributeValue(h, pub, &eq, 1), CKR_OK);
  CHECK(dq.ulValueLen == 3 * sizeof(CK_ATTRIBUTE) && eq.ulValueLen == sizeof(CK_ATTRIBUTE), "KEM template sizes");

  /* openssl's ephemeral key and its ECDH secret with the token's key. */
  EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  EVP_PKEY *tok = token_point(h, pub);
  CK_BYTE z[32], der[128];
  size_t zl = sizeof z;
  EVP_PKEY_CTX *dc = EVP_PKEY_CTX_new(eph, NULL);
  if (!eph || !dc || EVP_PKEY_derive_init(dc) <= 0 || EVP_PKEY_derive_set_peer(dc, tok) <= 0 || EVP_PKEY_derive(dc, z, &zl) <= 0) {
    fprintf(stderr, "FAIL: openssl ECDH\n");
    return 1;
  }
  unsigned char *dp = der;
  int dl = i2d_PUBKEY(eph, &dp);
  CK_BYTE *point = der + dl - 65;

  CK_ECDH1_DERIVE_PARAMS dp1 = {CKD_NULL, 0, NULL, 65, point};
  CK_MECHANISM derive = {CKM_ECDH1_DERIVE, &dp1, sizeof dp1};
  CK_ATTRIBUTE gt[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &generic, sizeof generic},
                       {CKA_VALUE_LEN, &len32, sizeof len32}, {T_CKA_LABEL, "derived", 7}};
  CK_OBJECT_HANDLE dk = 0;
  RV(f->C_DeriveKey(h, &derive, priv, gt, 4, &dk), CKR_OK); /* the same label as the template's: no conflict */
  CHECK(get(h, dk, CKA_VALUE, got, sizeof got) == 32 && memcmp(got, z, 32) == 0, "the derived key is openssl's ECDH secret");
  CHECK(get(h, dk, T_CKA_LABEL, got, sizeof got) == 7 && memcmp(got, "derived", 7) == 0, "the derive template's label");
  gt[3] = (CK_ATTRIBUTE){CKA_SENSITIVE, &yes, 1};
  RV(f->C_DeriveKey(h, &derive, priv, gt, 4, &dk), T_CKR_TEMPLATE_INCONSISTENT);

  CK_ECDH1_DERIVE_PARAMS dp2 = {CKD_NULL, 0, NULL, 0, NULL};
  CK_MECHANISM kem = {CKM_ECDH1_DERIVE, &dp2, sizeof dp2};
  CK_OBJECT_HANDLE ck = 0;
  RV(f->C_DecapsulateKey(h, &kem, priv, gt, 3, point, 65, &ck), CKR_OK);
  CHECK(get(h, ck, CKA_VALUE, got, sizeof got) == 32 && memcmp(got, z, 32) == 0, "the decapsulated key is openssl's ECDH secret");
  CHECK(get(h, ck, T_CKA_LABEL, got, sizeof got) == 5 && memcmp(got, "decap", 5) == 0, "the decapsulate template's label");
  gt[3] = (CK_ATTRIBUTE){T_CKA_LABEL, "other", 5};
  RV(f->C_DecapsulateKey(h, &kem, priv, gt, 4, point, 65, &ck), T_CKR_TEMPLATE_INCONSISTENT);

  /* Encapsulation to the token's public key: a generic secret matches its
   * template; an AES key does not (nothing is made, no ciphertext). */
  CK_BYTE ct[80];
  CK_ULONG ctl = sizeof ct;
  CK_OBJECT_HANDLE ek = 0;
  CK_ATTRIBUTE gen32[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &generic, sizeof generic},
                          {CKA_VALUE_LEN, &len32, sizeof len32}};
  RV(f->C_EncapsulateKey(h, &kem, pub, gen32, 3, ct, &ctl, &ek), CKR_OK);
  CK_ATTRIBUTE aes32[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes},
                          {CKA_VALUE_LEN, &len32, sizeof len32}};
  ctl = sizeof ct;
  ek = 0;
  RV(f->C_EncapsulateKey(h, &kem, pub, aes32, 3, ct, &ctl, &ek), T_CKR_KEY_HANDLE_INVALID);
  CHECK(ek == 0, "no key made");

  EVP_PKEY_CTX_free(dc);
  EVP_PKEY_free(eph);
  EVP_PKEY_free(tok);
  forked_child(h, wrapT2, sizeof wrapT2 / sizeof wrapT2[0]);
  RV(f->C_Finalize(NULL), CKR_OK);
  rpc_bytes(argc > 1 ? argv[1] : "build/libtpm11.so");
  if (failures) {
    fprintf(stderr, "template_test: %d failures\n", failures);
    return 1;
  }
  printf("template_test: ok\n");
  return 0;
}
