/* Every C_* function of libtpm11.so with random and hostile arguments
 * (issue 21): random and stale session and object handles, lengths that
 * lie low, zero or large, NULL where a pointer may be NULL (and where it
 * may not: the module must say CKR_ARGUMENTS_BAD), mechanisms with garbage
 * parameters of every length, templates of random attributes, values and
 * lengths (nested templates for array attributes), on sessions in random
 * states (logged in or out, operations active, async operations pending).
 * Never a garbage pointer: no module can tell one from a good one.
 *
 *   FUZZ_CALLS=N [FUZZ_SEED=S] fuzz_test MODULE
 *
 * Every buffer the module may write ends at a guard page; a watchdog ends
 * the run if one call blocks for 120 s (a hang); CKR_DEVICE_ERROR and
 * CKR_GENERAL_ERROR (a fault provoked by the caller's bytes) fail the run.
 * The parameter lists are read from module/ck.h's function table, so a
 * function added there is fuzzed too. Wrong PINs of a valid length are
 * never sent (each counts against the TPM's dictionary-attack lockout);
 * C_InitToken never gets a PIN it would accept. */
#include <stddef.h>
#include <ctype.h>
#include "hostile.h"
#include "setup.h"

static CK_FUNCTION_LIST_3_2 *f;

/* The function table, from ck.h's X-macro: name and parameter list. */
#define ENTRY(kind, name, params) {#name, #params, offsetof(CK_FUNCTION_LIST_3_2, name)},
static struct fn {
  const char *name, *params;
  size_t off;
  int n;
  char type[12][48], pname[12][48];
  unsigned long calls;
} fns[] = {CK_FUNCTIONS_2_40(ENTRY) CK_FUNCTIONS_3_0(ENTRY) CK_FUNCTIONS_3_2(ENTRY)};
#define NFNS ((int) (sizeof fns / sizeof fns[0]))

static void parse(struct fn *fn) {
  const char *p = fn->params;
  while (*p == '(' || isspace((unsigned char) *p)) p++;
  while (*p && *p != ')') {
    char t[48] = {0}, nm[48] = {0};
    int k = 0;
    while (*p && !isspace((unsigned char) *p) && k < 47) t[k++] = *p++;
    while (isspace((unsigned char) *p)) p++;
    k = 0;
    while (*p && *p != ',' && *p != ')' && !isspace((unsigned char) *p) && k < 47) nm[k++] = *p++;
    strcpy(fn->type[fn->n], t);
    strcpy(fn->pname[fn->n], nm);
    fn->n++;
    while (*p == ',' || isspace((unsigned char) *p)) p++;
  }
}

/* State: sessions, objects, mechanisms, detached IDs. */
#define MAXH 64
static CK_SESSION_HANDLE sess[MAXH];
static int nsess;
static CK_OBJECT_HANDLE base[16], recent[MAXH];
static int nbase, nrecent;
static CK_MECHANISM_TYPE mechs[256];
static int nmechs;
static CK_ULONG ids[16];
static int nids;

/* hot is the session of the last call that worked: operations begun
 * there are more often carried on than not. */
static CK_SESSION_HANDLE hot;
static CK_SESSION_HANDLE pick_session(void) {
  unsigned r = rn(100);
  if (r < 40 && hot) return hot;
  if (r < 85 && nsess) return sess[rn(nsess)];
  if (r < 90) return 0;
  if (r < 95) return rn(200);
  return rnd();
}
static CK_OBJECT_HANDLE pick_object(void) {
  unsigned r = rn(100);
  if (r < 55 && nbase) return base[rn(nbase)];
  if (r < 80 && nrecent) return recent[rn(nrecent)];
  if (r < 88) return 0;
  if (r < 95) return rn(1000);
  return rnd();
}
static void add_recent(CK_OBJECT_HANDLE h) {
  if (h == 0) return;
  if (nrecent < MAXH) recent[nrecent++] = h;
  else recent[rn(MAXH)] = h;
}

static const CK_MECHANISM_TYPE known_mechs[] = {
    0x0, 0x1, 0x3, 0x6, 0x9, 0xd, 0x40, 0x43, 0x250, 0x251, 0x220, 0x350, 0x1040, 0x1041, 0x1044, 0x1050, 0x1051,
    0x1080, 0x1081, 0x1082, 0x1085, 0x1086, 0x1087, 0x1088, 0x2109, 0x210a, 0x17, 0x1c, 0x1d, 0x1f, 0x255, 0x270, 0x260};
static CK_MECHANISM_TYPE pick_mech(void) {
  unsigned r = rn(100);
  if (r < 60 && nmechs) return mechs[rn(nmechs)];
  if (r < 85) return known_mechs[rn(sizeof known_mechs / sizeof known_mechs[0])];
  if (r < 95) return rn(0x3000);
  return rnd();
}

/* Guarded regions, a new one for each buffer of a call (never one region
 * for two buffers of one call: a reused region would make the fuzzer lie
 * about a buffer's length). */
#define NGUARD 1024
static guard_t guards[NGUARD];
static int gnext;
static void *gbuf(size_t n) {
  if (gnext >= NGUARD) { fprintf(stderr, "fuzz_test: more than %d buffers in one call\n", NGUARD); exit(2); }
  return guard_buf(guards[gnext++], n);
}
/* scratch is readable and writable memory that pointers inside mechanism
 * parameters point to; every length beside such a pointer is below its size. */
static unsigned char *scratch;
#define SCRATCH (64 * 1024)

static CK_ULONG gen_len(void) {
  static const CK_ULONG common[] = {1, 8, 15, 16, 17, 20, 24, 28, 32, 33, 48, 64, 65, 66, 97, 128, 129, 255, 256, 257, 384, 512};
  unsigned r = rn(100);
  if (r < 30) return rn(33);
  if (r < 55) return common[rn(sizeof common / sizeof common[0])];
  if (r < 85) return 33 + rn(400);
  if (r < 97) return 400 + rn(5000);
  return 5000 + rn(REGION - 5000);
}

/* in_bytes: a buffer of len random bytes that ends at a guard page (read
 * past its end crashes), sometimes NULL. */
static void *in_bytes(CK_ULONG len) {
  if (rn(24) == 0) return NULL;
  void *p = gbuf(len);
  rnd_fill(p, len);
  return p;
}

/* Parameter structures with pointers, by mechanism: which 8-byte words
 * are pointers (to scratch, or NULL); every other word is a small number
 * (the length of what a pointer points to must not exceed it). */
static unsigned ptr_mask(CK_MECHANISM_TYPE m) {
  switch (m) {
  case 0x9: return 1u << 3;                 /* CK_RSA_PKCS_OAEP_PARAMS.pSourceData */
  case 0x1050: case 0x1051: return 1u << 2 | 1u << 4; /* CK_ECDH1_DERIVE_PARAMS */
  case 0x1088: return 1u << 1 | 1u << 3 | 1u << 5; /* CK_CCM_PARAMS {1,3}, or CK_CCM_MESSAGE_PARAMS {1,5} (C_WrapKeyAuthenticated) */
  case 0x1087: return 1u << 0 | 1u << 3;    /* CK_GCM_PARAMS (pIv, ulIvLen, ulIvBits, pAAD...) */
  }
  if (m >= 0x1c && m <= 0x2f) return 1u << 1; /* CK_SIGN_ADDITIONAL_CONTEXT (ML-DSA) */
  return 0;
}

static void *gen_params(unsigned mask, int has_mask, CK_ULONG *len) {
  static const CK_ULONG sizes[] = {8, 16, 24, 32, 40, 48, 56};
  unsigned r = rn(100);
  CK_ULONG n;
  if (r < 10) n = 0;
  else if (r < 70) n = sizes[rn(7)];
  else n = rn(97);
  *len = n;
  if (n && rn(32) == 0) return NULL;
  unsigned char *p = gbuf(n);
  rnd_fill(p, n);
  if (has_mask || mask) {
    for (CK_ULONG w = 0; (w + 1) * 8 <= n; w++) {
      uint64_t v;
      if (mask & (1u << w)) v = rn(8) == 0 ? 0 : (uint64_t) (uintptr_t) (scratch + rn(SCRATCH / 2));
      else v = rn(10) == 0 ? rn(4096) : rn(300);
      memcpy(p + w * 8, &v, 8);
    }
  } else if (rn(2)) {
    for (CK_ULONG w = 0; (w + 1) * 8 <= n; w++) {
      uint64_t v = rn(4) == 0 ? rnd() : rn(300);
      memcpy(p + w * 8, &v, 8);
    }
  }
  return p;
}

static CK_MECHANISM *gen_mech(void) {
  if (rn(32) == 0) return NULL;
  CK_MECHANISM *m = gbuf(sizeof *m);
  m->mechanism = pick_mech();
  unsigned mask = ptr_mask(m->mechanism);
  m->pParameter = gen_params(mask, mask != 0, &m->ulParameterLen);
  if (rn(4) == 0) { m->pParameter = NULL; m->ulParameterLen = rn(8) ? 0 : m->ulParameterLen; }
  return m;
}

/* Templates. */
static const CK_ATTRIBUTE_TYPE known_attrs[] = {
    0x0, 0x1, 0x2, 0x3, 0x11, 0x80, 0x81, 0x82, 0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109,
    0x10a, 0x10b, 0x10c, 0x110, 0x111, 0x120, 0x121, 0x122, 0x123, 0x124, 0x125, 0x126, 0x127, 0x128, 0x160, 0x161,
    0x162, 0x163, 0x164, 0x165, 0x166, 0x170, 0x180, 0x181, 0x210, 0x40000211, 0x40000212, 0x40000213, 0x40000600,
    0x618, 0x619, 0x61a, 0x61b, 0x61c, 0x61d, 0x61e, 0x61f, 0x620, 0x62a, 0x62b, 0x62c, 0x62d, 0x62e, 0x163, 0x202, 0x90, 0x8a,
    0x8b};
static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const CK_BYTE p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

static CK_ATTRIBUTE *gen_template(CK_ULONG *count, int depth);

/* The template attributes: arrays of CK_ATTRIBUTE (CKA_ENCAPSULATE_TEMPLATE
 * and CKA_DECAPSULATE_TEMPLATE lack the CKF_ARRAY_ATTRIBUTE bit). */
static int is_tmpl(CK_ATTRIBUTE_TYPE t) { return ((t & 0x40000000) && t != 0x40000600) || t == 0x62a || t == 0x62b; }

static void gen_value(CK_ATTRIBUTE *a, int depth) {
  CK_ATTRIBUTE_TYPE t = a->type;
  unsigned r = rn(100);
  if (is_tmpl(t) && depth < 2 && r < (depth ? 20u : 80u)) {
    /* An array of attributes: a nested template (at depth 1, a template
     * in a template, which the module refuses). Its length in bytes may
     * lie low, even to no whole number of attributes, never high. */
    CK_ULONG n;
    a->pValue = gen_template(&n, depth + 1);
    a->ulValueLen = n * sizeof(CK_ATTRIBUTE);
    if (n && rn(8) == 0) a->ulValueLen -= 1 + rn(2 * sizeof(CK_ATTRIBUTE) - 1) % a->ulValueLen;
    return;
  }
  CK_ULONG len;
  if (r < 35) len = 1;
  else if (r < 65) len = 8;
  else if (r < 75) len = rn(2) ? sizeof p256 : sizeof p384;
  else len = gen_len() % 600;
  unsigned char *p = gbuf(len);
  rnd_fill(p, len);
  if (len == 1) p[0] = rn(4) ? rn(2) : p[0];
  if (len == 8) {
    static const CK_ULONG vals[] = {0, 1, 2, 3, 4, 5, 0x10, 0x1f, 16, 24, 32, 64, 256, 512, 1024, 2048, 3072, 4096, 0x10001};
    CK_ULONG v = rn(5) ? vals[rn(sizeof vals / sizeof vals[0])] : rnd();
    memcpy(p, &v, 8);
  }
  if (len == sizeof p256 && rn(2)) memcpy(p, p256, len);
  if (len == sizeof p384 && rn(2)) memcpy(p, p384, len);
  a->pValue = rn(40) ? p : NULL;
  a->ulValueLen = len;
  if (rn(64) == 0) a->ulValueLen = (CK_ULONG) -1; /* CK_UNAVAILABLE_INFORMATION */
  if (a->pValue == NULL) return;
  if (a->ulValueLen > len) a->pValue = NULL; /* never a length beyond the buffer */
}

static CK_ATTRIBUTE *gen_template(CK_ULONG *count, int depth) {
  unsigned r = rn(100);
  CK_ULONG n = r < 10 ? 0 : r < 95 || depth ? 1 + rn(8) : 9 + rn(40);
  *count = n;
  if (rn(40) == 0) return NULL;
  CK_ATTRIBUTE *tpl = gbuf(n * sizeof(CK_ATTRIBUTE));
  for (CK_ULONG i = 0; i < n; i++) {
    unsigned q = rn(100);
    tpl[i].type = q < 80 ? known_attrs[rn(sizeof known_attrs / sizeof known_attrs[0])] : q < 95 ? rn(0x700) : rnd();
    gen_value(&tpl[i], depth);
  }
  return tpl;
}

/* PINs: the right one for the role, or one of a length no token takes. */
static const char *user_pin = "user-pin", *so_pin = "so-secret";
static void gen_pin(int role, CK_UTF8CHAR_PTR *p, CK_ULONG *len) {
  unsigned r = rn(100);
  const char *pin = role == 0 ? so_pin : user_pin;
  if (role >= 0 && r < 55) {
    CK_ULONG n = strlen(pin);
    char *b = gbuf(n);
    memcpy(b, pin, n);
    *p = (CK_UTF8CHAR_PTR) b, *len = n;
    return;
  }
  CK_ULONG n = r < 75 ? rn(3) : 129 + rn(300);
  *p = rn(16) == 0 ? NULL : gbuf(n);
  if (*p) rnd_fill(*p, n);
  *len = n;
}

static const char *fn_names[] = {"C_Sign", "C_SignFinal", "C_GenerateKeyPair", "C_GenerateKey", "C_GenerateRandom",
                                 "C_Decrypt", "C_Encrypt", "C_Verify", "C_WrapKey", "C_UnwrapKey", "C_DeriveKey",
                                 "C_SignMessage", "C_DecapsulateKey", "C_EncapsulateKey", "C_Login", "", "C_",
                                 "C_SignX", "c_sign", "C_Sign\xff"};

static unsigned long ncalls, nfail;
static int bad_rv_shown;

/* One call of fn with random arguments. */
static void fuzz_one(struct fn *fn) {
  uintptr_t a[12] = {0};
  gnext = 0;
  int role = -1; /* the user type of a login, for the PIN */
  CK_OBJECT_HANDLE *out_handles[4];
  int nout = 0;
  CK_SESSION_HANDLE *out_session = NULL;
  CK_ULONG *out_id = NULL;
  CK_OBJECT_HANDLE *found = NULL;
  CK_ULONG *found_n = NULL;
  int is = 0;
#define IS(s) (strcmp(fn->name, s) == 0)
  for (int i = 0; i < fn->n; i++) {
    const char *t = fn->type[i], *nm = fn->pname[i];
    const char *nt = i + 1 < fn->n ? fn->type[i + 1] : "";
    if (!strcmp(t, "CK_SESSION_HANDLE")) a[i] = pick_session();
    else if (!strcmp(t, "CK_OBJECT_HANDLE")) {
      a[i] = pick_object();
      /* The base keys stay (destroying them would leave little to fuzz). */
      if (IS("C_DestroyObject") || IS("C_SetAttributeValue"))
        for (int k = 0; k < nbase; k++)
          if (a[i] == base[k]) a[i] = nrecent ? recent[rn(nrecent)] : rnd();
    }
    else if (!strcmp(t, "CK_SLOT_ID")) {
      unsigned r = rn(100);
      a[i] = r < 70 ? 0 : r < 85 ? 1 : r < 95 ? rn(10) : rnd();
      if (IS("C_InitToken") && a[i] == 0 && rn(2)) a[i] = 2 + rn(100);
    } else if (!strcmp(t, "CK_BBOOL")) a[i] = rn(3) ? rn(2) : (CK_BYTE) rnd();
    else if (!strcmp(t, "CK_FLAGS")) {
      if (IS("C_OpenSession")) a[i] = rn(20) ? (4 | (rn(2) ? 2 : 0) | (rn(3) == 0 ? 8 : 0)) : rnd();
      else if (IS("C_WaitForSlotEvent")) a[i] = 1 | (rn(4) == 0 ? rnd() : 0); /* CKF_DONT_BLOCK: never block */
      else a[i] = rn(3) ? rn(4) : rnd();
    } else if (!strcmp(t, "CK_USER_TYPE")) {
      unsigned r = rn(100);
      a[i] = r < 60 ? 1 : r < 80 ? 0 : r < 90 ? 2 : r < 95 ? 3 : rnd();
      role = a[i] == 0 ? 0 : (a[i] == 1 || a[i] == 2) ? 1 : -1;
    } else if (!strcmp(t, "CK_MECHANISM_TYPE")) a[i] = pick_mech();
    else if (!strcmp(t, "CK_SESSION_VALIDATION_FLAGS_TYPE")) a[i] = rn(4) ? rn(3) : rnd();
    else if (!strcmp(t, "CK_NOTIFY")) a[i] = 0;
    else if (!strcmp(t, "CK_MECHANISM_PTR")) a[i] = (uintptr_t) gen_mech();
    else if (!strcmp(t, "CK_ATTRIBUTE_PTR") && !strcmp(nt, "CK_ULONG")) {
      CK_ULONG n;
      a[i] = (uintptr_t) gen_template(&n, 0);
      a[++i] = n;
      if (rn(64) == 0) a[i] = rn(4) ? n + 1 + rn(3) : 0; /* a count beyond the array: only with... */
      if (a[i] > n) a[i - 1] = 0;                          /* ...no array (NULL): never read past it */
    } else if (!strcmp(t, "CK_OBJECT_HANDLE_PTR") && !strcmp(nt, "CK_ULONG")) {
      CK_ULONG n = rn(10) ? rn(64) : rn(2000);
      found = rn(24) ? gbuf(n * sizeof(CK_OBJECT_HANDLE)) : NULL;
      a[i] = (uintptr_t) found;
      a[++i] = n;
    } else if (!strcmp(t, "CK_UTF8CHAR_PTR") && !strcmp(nm, "pLabel")) a[i] = rn(16) ? (uintptr_t) in_bytes(32) : 0;
    else if (!strcmp(t, "CK_UTF8CHAR_PTR") && !strcmp(nm, "pFunctionName")) {
      if (rn(16) == 0) a[i] = 0;
      else {
        const char *s = fn_names[rn(sizeof fn_names / sizeof fn_names[0])];
        char *b = gbuf(strlen(s) + 1);
        strcpy(b, s);
        a[i] = (uintptr_t) b;
      }
    } else if (!strcmp(t, "CK_UTF8CHAR_PTR") && !strcmp(nm, "pInterfaceName")) {
      const char *s = rn(3) ? "PKCS 11" : rn(2) ? "Vendor tpm11" : "x";
      char *b = gbuf(strlen(s) + 1);
      strcpy(b, s);
      a[i] = rn(4) ? (uintptr_t) b : 0;
    } else if (!strcmp(t, "CK_UTF8CHAR_PTR") && !strcmp(nt, "CK_ULONG") &&
               (strstr(nm, "Pin") || strstr(nm, "pPin"))) {
      CK_UTF8CHAR_PTR p;
      CK_ULONG n;
      int r = role;
      if (IS("C_InitToken") || (IS("C_SetPIN") && !strcmp(nm, "pOldPin"))) r = -1; /* never a PIN they would take */
      if (IS("C_InitPIN") || (IS("C_SetPIN") && !strcmp(nm, "pNewPin"))) r = 1;
      gen_pin(r, &p, &n);
      a[i] = (uintptr_t) p;
      a[++i] = n;
    } else if ((!strcmp(t, "CK_BYTE_PTR") || !strcmp(t, "CK_UTF8CHAR_PTR") || !strcmp(t, "CK_VOID_PTR")) &&
               !strcmp(nt, "CK_ULONG")) {
      CK_ULONG n;
      void *p;
      if (!strcmp(nm, "pParameter")) {
        int enc = strstr(fn->name, "crypt") != NULL;
        p = gen_params(enc ? (1u << 1 | 1u << 5) : (1u << 1), 1, &n);
      } else {
        n = gen_len();
        p = in_bytes(n);
      }
      a[i] = (uintptr_t) p;
      a[++i] = n;
    } else if ((!strcmp(t, "CK_BYTE_PTR") || !strcmp(t, "CK_SLOT_ID_PTR") || !strcmp(t, "CK_MECHANISM_TYPE_PTR") ||
                !strcmp(t, "CK_INTERFACE_PTR")) &&
               !strcmp(nt, "CK_ULONG_PTR")) {
      size_t el = !strcmp(t, "CK_BYTE_PTR") ? 1 : !strcmp(t, "CK_INTERFACE_PTR") ? sizeof(CK_INTERFACE) : 8;
      unsigned r = rn(100);
      CK_ULONG cap = r < 35 ? rn(17) : r < 70 ? gen_len() : rn(4096);
      if (cap * el > REGION) cap = REGION / el;
      void *buf = rn(4) == 0 ? NULL : gbuf(cap * el);
      CK_ULONG *lp = rn(32) == 0 ? NULL : gbuf(sizeof(CK_ULONG));
      if (lp) *lp = buf || rn(2) ? cap : rnd();
      a[i] = (uintptr_t) buf;
      a[++i] = (uintptr_t) lp;
    } else if (!strcmp(t, "CK_ASYNC_DATA_PTR")) {
      if (rn(16) == 0) a[i] = 0;
      else {
        CK_ASYNC_DATA *d = gbuf(sizeof *d);
        CK_ULONG cap = rn(3) ? rn(600) : rn(17);
        d->ulVersion = rn(4) ? 0 : rn(5);
        d->pValue = rn(4) ? gbuf(cap) : NULL;
        d->ulValue = cap;
        d->hObject = d->hAdditionalObject = 0;
        a[i] = (uintptr_t) d;
      }
    } else if (!strcmp(t, "CK_VERSION_PTR")) {
      if (rn(5) == 0) a[i] = 0;
      else {
        CK_VERSION *v = gbuf(sizeof *v);
        static const CK_VERSION vs[] = {{3, 2}, {3, 0}, {2, 40}, {3, 1}, {9, 9}};
        *v = vs[rn(5)];
        a[i] = (uintptr_t) v;
      }
    } else if (!strcmp(t, "CK_VOID_PTR")) {
      /* pApplication (opaque to the module), pReserved (must be NULL). */
      a[i] = rn(4) == 0 ? (uintptr_t) scratch : 0;
    } else if (!strcmp(t, "CK_ULONG")) {
      /* ulID (C_AsyncJoin) and any other lone number. */
      a[i] = rn(2) && nids ? ids[rn(nids)] : rn(3) ? rn(1000) : rnd();
    } else if (strstr(t, "_PTR")) {
      /* One value written by the module: exactly its size before a guard page. */
      size_t sz = !strcmp(t, "CK_INFO_PTR") ? sizeof(CK_INFO)
                  : !strcmp(t, "CK_SLOT_INFO_PTR") ? sizeof(CK_SLOT_INFO)
                  : !strcmp(t, "CK_TOKEN_INFO_PTR") ? sizeof(CK_TOKEN_INFO)
                  : !strcmp(t, "CK_SESSION_INFO_PTR") ? sizeof(CK_SESSION_INFO)
                  : !strcmp(t, "CK_MECHANISM_INFO_PTR") ? sizeof(CK_MECHANISM_INFO)
                  : 8;
      void *p = rn(20) == 0 ? NULL : gbuf(sz);
      if (p) memset(p, 0, sz);
      a[i] = (uintptr_t) p;
      if (p && !strcmp(t, "CK_SESSION_HANDLE_PTR")) out_session = p;
      if (p && !strcmp(t, "CK_OBJECT_HANDLE_PTR") && nout < 4) out_handles[nout++] = p;
      if (p && !strcmp(t, "CK_ULONG_PTR") && !strcmp(nm, "pulID")) out_id = p;
      if (p && !strcmp(t, "CK_ULONG_PTR") && !strcmp(nm, "pulObjectCount")) found_n = p;
    } else {
      fprintf(stderr, "fuzz_test: no generator for %s %s of %s\n", t, nm, fn->name);
      exit(2);
    }
  }
  (void) is;
  typedef CK_RV (*any_fn)(uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t,
                          uintptr_t, uintptr_t, uintptr_t, uintptr_t);
  any_fn call = *(any_fn *) ((char *) f + fn->off);
  watch_enter(fn->name);
  CK_RV r = call(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
  watch_leave();
  ncalls++;
  fn->calls++;
  count_rv(r);
  if (r == 0x30 || r == 0x5) {
    nfail++;
    if (bad_rv_shown++ < 20) {
      fprintf(stderr, "BAD: %s = %s:", fn->name, r == 0x30 ? "CKR_DEVICE_ERROR" : "CKR_GENERAL_ERROR");
      for (int i = 0; i < fn->n; i++) fprintf(stderr, " %s=0x%lx", fn->pname[i], (unsigned long) a[i]);
      if (strstr(fn->params, "CK_MECHANISM_PTR")) {
        for (int i = 0; i < fn->n; i++)
          if (!strcmp(fn->type[i], "CK_MECHANISM_PTR") && a[i]) {
            CK_MECHANISM *m = (CK_MECHANISM *) a[i];
            fprintf(stderr, " mech=0x%lx plen=%lu", m->mechanism, m->ulParameterLen);
          }
      }
      fputc('\n', stderr);
    }
  }
  if (r == 0) {
    if (fn->n && !strcmp(fn->type[0], "CK_SESSION_HANDLE")) hot = a[0];
    if (out_session && nsess < MAXH) sess[nsess++] = *out_session;
    for (int k = 0; k < nout; k++) add_recent(*out_handles[k]);
    if (out_id && nids < 16) ids[nids++] = *out_id;
    if (found && found_n)
      for (CK_ULONG k = 0; k < *found_n && k < 4; k++) add_recent(found[k]);
    if (IS("C_CloseAllSessions") && a[0] == 0) nsess = 0, hot = 0;
    if (IS("C_CloseSession"))
      for (int k = 0; k < nsess; k++)
        if (sess[k] == a[0]) { sess[k] = sess[--nsess]; hot = 0; break; }
  }
#undef IS
}

/* setup opens sessions (sync R/W, sync R/O, async), logs the user in and
 * finds the base objects by label (made at the first run). */
static void setup(int first) {
  CK_RV r;
  nsess = 0;
  /* The fuzzing may have left the SO logged in (no R/O session then):
   * every session closed logs everyone out. */
  f->C_CloseAllSessions(0);
  for (int k = 0; k < 3; k++) {
    CK_FLAGS fl = k == 0 ? 6 : k == 1 ? 4 : 14;
    CK_SESSION_HANDLE h;
    if ((r = f->C_OpenSession(0, fl, NULL, NULL, &h)) != 0) { fprintf(stderr, "setup: C_OpenSession 0x%lx\n", r); exit(1); }
    sess[nsess++] = h;
  }
  r = f->C_Login(sess[0], 1, (CK_UTF8CHAR_PTR) user_pin, strlen(user_pin));
  if (r != 0 && r != 0x100) { fprintf(stderr, "setup: C_Login 0x%lx\n", r); exit(1); }
  CK_BBOOL yes = 1;
  if (first) {
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {1, 0, 1};
    CK_OBJECT_HANDLE pub, prv, k;
    CK_MECHANISM ecgen = {0x1040, NULL, 0}, rsagen = {0x0, NULL, 0}, aesgen = {0x1080, NULL, 0}, hgen = {0x350, NULL, 0};
    CK_ULONG len16 = 16, len32 = 32;
#define L(s) {0x3, (void *) s, sizeof s - 1}
    CK_ATTRIBUTE ecpub[] = {{0x1, &yes, 1}, {0x180, (void *) p256, sizeof p256}, L("fuzz-ec")};
    CK_ATTRIBUTE ecprv[] = {{0x1, &yes, 1}, {0x108, &yes, 1}, {0x10c, &yes, 1}, L("fuzz-ec")};
    CK_ATTRIBUTE rsapub[] = {{0x1, &yes, 1}, {0x121, &bits, 8}, {0x122, e, 3}, {0x104, &yes, 1}, {0x10a, &yes, 1}, L("fuzz-rsa")};
    CK_ATTRIBUTE rsaprv[] = {{0x1, &yes, 1}, {0x108, &yes, 1}, {0x105, &yes, 1}, {0x107, &yes, 1}, L("fuzz-rsa")};
    CK_ATTRIBUTE aes[] = {{0x1, &yes, 1}, {0x161, &len16, 8}, {0x104, &yes, 1}, {0x105, &yes, 1}, {0x106, &yes, 1}, {0x107, &yes, 1}, {0x10c, &yes, 1}, L("fuzz-aes")};
    CK_ATTRIBUTE hmac[] = {{0x1, &yes, 1}, {0x161, &len32, 8}, {0x108, &yes, 1}, {0x10a, &yes, 1}, {0x10c, &yes, 1}, L("fuzz-hmac")};
    CK_ULONG dataclass = 0;
    CK_ATTRIBUTE data[] = {{0x0, &dataclass, 8}, {0x1, &yes, 1}, {0x11, "value", 5}, L("fuzz-data")};
#undef L
    if ((r = f->C_GenerateKeyPair(sess[0], &ecgen, ecpub, 3, ecprv, 4, &pub, &prv))) { fprintf(stderr, "setup: EC 0x%lx\n", r); exit(1); }
    if ((r = f->C_GenerateKeyPair(sess[0], &rsagen, rsapub, 6, rsaprv, 5, &pub, &prv))) { fprintf(stderr, "setup: RSA 0x%lx\n", r); exit(1); }
    if ((r = f->C_GenerateKey(sess[0], &aesgen, aes, 8, &k))) { fprintf(stderr, "setup: AES 0x%lx\n", r); exit(1); }
    if ((r = f->C_GenerateKey(sess[0], &hgen, hmac, 6, &k))) { fprintf(stderr, "setup: HMAC 0x%lx\n", r); exit(1); }
    if ((r = f->C_CreateObject(sess[0], data, 4, &k))) { fprintf(stderr, "setup: data 0x%lx\n", r); exit(1); }
  }
  nbase = 0;
  static const char *labels[] = {"fuzz-ec", "fuzz-rsa", "fuzz-aes", "fuzz-hmac", "fuzz-data"};
  for (int i = 0; i < 5; i++) {
    CK_ATTRIBUTE q[] = {{0x3, (void *) labels[i], strlen(labels[i])}};
    CK_OBJECT_HANDLE hs[4];
    CK_ULONG n = 0;
    if (f->C_FindObjectsInit(sess[0], q, 1) == 0) {
      f->C_FindObjects(sess[0], hs, 4, &n);
      f->C_FindObjectsFinal(sess[0]);
    }
    for (CK_ULONG k = 0; k < n && nbase < 16; k++) base[nbase++] = hs[k];
  }
  if (first && nbase < 5) { fprintf(stderr, "setup: %d base objects found, want 7\n", nbase); exit(1); }
  nmechs = 0;
  CK_ULONG n = 256;
  if (f->C_GetMechanismList(0, mechs, &n) == 0) nmechs = (int) n;
  nrecent = 0;
  nids = 0;
}

int main(int argc, char **argv) {
  hostile_start();
  const char *calls_env = getenv("FUZZ_CALLS");
  unsigned long want = calls_env ? strtoul(calls_env, NULL, 10) : 20000;
  const char *seed = getenv("FUZZ_SEED");
  rng_state = seed ? strtoull(seed, NULL, 10) | 1 : ((uint64_t) time(NULL) << 20 | (uint64_t) getpid()) | 1;
  printf("fuzz_test: seed %lu\n", (unsigned long) rng_state);
  for (int i = 0; i < NFNS; i++) parse(&fns[i]);
  for (int i = 0; i < NGUARD; i++) guards[i] = guard_new();
  scratch = malloc(SCRATCH);
  rnd_fill(scratch, SCRATCH);

  f = load_module(argc, argv);
  /* A token (SO PIN so-secret, user PIN user-pin), made at the first run. */
  CK_TOKEN_INFO ti;
  if (!failures && (f->C_GetTokenInfo(0, &ti) != 0 || !(ti.flags & 0x400))) RV(f->C_CloseSession(make_token(f)), CKR_OK);
  if (failures) { fprintf(stderr, "module or token setup failed\n"); return 2; }
  setup(1);

  double t0 = now_s();
  long rss0 = rss_kb();
  unsigned long reinit = 0;
  while (ncalls < want) {
    struct fn *fn = &fns[rn(NFNS)];
    if (!strcmp(fn->name, "C_Initialize") || !strcmp(fn->name, "C_Finalize")) {
      /* Now and then the whole library again, mid-state. */
      if (rn(2000) == 0) {
        watch_enter("C_Finalize");
        CK_RV r = f->C_Finalize(NULL);
        watch_leave();
        count_rv(r);
        watch_enter("C_Initialize");
        r = f->C_Initialize(NULL);
        watch_leave();
        count_rv(r);
        ncalls += 2;
        if (r) { fprintf(stderr, "C_Initialize again: 0x%lx\n", r); return 1; }
        reinit++;
        setup(0);
      }
      continue;
    }
    fuzz_one(fn);
    if (nsess < 2) {
      /* Every session closed: open some (the base objects are found again). */
      setup(0);
    }
    if (ncalls % 50000 == 0) fprintf(stderr, "fuzz_test: %lu calls, %.0f s, rss %ld kB\n", ncalls, now_s() - t0, rss_kb());
  }
  double took = now_s() - t0;
  watch_enter("C_Finalize");
  CK_RV r = f->C_Finalize(NULL);
  watch_leave();
  if (r) { fprintf(stderr, "final C_Finalize: 0x%lx\n", r); return 1; }
  printf("calls per function:");
  for (int i = 0; i < NFNS; i++) printf(" %s=%lu", fns[i].name + 2, fns[i].calls);
  printf("\nreturn values:\n");
  print_tally(stdout);
  printf("%lu calls of %d functions in %.0f s (%d re-initializations), rss %ld -> %ld kB: 0 crashes, 0 hangs, %lu CKR_DEVICE_ERROR/CKR_GENERAL_ERROR\n",
         ncalls, NFNS - 2, took, (int) reinit, rss0, rss_kb(), nfail);
  return nfail ? 1 : 0;
}
