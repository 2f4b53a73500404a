/* Mechanisms a forked child synthesizes. p11-kit 0.24's RPC carries only
 * the mechanisms it knows how to serialize: no ECDSA-SHA224/256/384/512, no
 * SHAx-RSA-PKCS-PSS, no SHA-224 or SHA224-RSA-PKCS (docs/fork.md). The
 * child hashes in C (sha.c) and sends the raw form the RPC carries:
 *   CKM_ECDSA_SHAx         -> CKM_ECDSA over the digest
 *   CKM_SHAx_RSA_PKCS      -> CKM_RSA_PKCS over the DigestInfo
 *   CKM_SHAx_RSA_PKCS_PSS  -> CKM_RSA_PKCS_PSS (same parameters) over the digest
 *   CKM_SHA224 (digest)    -> computed in the child, the helper is not asked
 * A hash-and-sign mechanism is made so only when the helper's RPC lacks it
 * (see init: one it carries goes to the helper unchanged, so the key's
 * CKA_ALLOWED_MECHANISMS stays the helper's to check); a digest only when
 * the helper's client refuses it as CKR_MECHANISM_INVALID (SHA-224), so
 * C_DigestKey keeps working for the others.
 *
 * The helper holds the raw operation (its C_SignInit was made), so its
 * rules on keys, login and sessions stay the module's; the child keeps the
 * hash and the form (single- or multi-part) of §5.2 as tpmtoken/operation.go
 * has them: the first call fixes the form, a call in the other form is
 * CKR_OPERATION_ACTIVE and ends the operation, a length query or
 * CKR_BUFFER_TOO_SMALL keeps it, any other result of a finishing call ends
 * it (and the helper's raw call ended the helper's too). The updates never
 * reach the helper: the raw single-part call finishes both forms.
 *
 * Lock: mu guards ops and every op's fields; it is never held across a
 * call into the helper (a busy op is owned by the call that set busy).
 * Order: fork.c's child_mu before mu (its C_Finalize calls
 * tpm11_child_mech_reset holding child_mu); mu is a leaf. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "child_mech.h"
#include "sha.h"

#define CKR_MECHANISM_INVALID 0x070UL
#define CKR_MECHANISM_PARAM_INVALID 0x071UL
#define CKR_OPERATION_ACTIVE 0x090UL
#define CKR_OPERATION_NOT_INITIALIZED 0x091UL
#define CKR_SESSION_HANDLE_INVALID 0x0B3UL
#define CKR_STATE_UNSAVEABLE 0x180UL
#define CKR_KEY_INDIGESTIBLE 0x067UL
#define CKA_ALLOWED_MECHANISMS_ 0x40000600UL
#define CKF_DIGEST 0x400UL
#define CKF_SIGN 0x800UL
#define CKF_VERIFY 0x2000UL
#define CKF_SIGN_RECOVER 0x1000UL
#define CKF_VERIFY_RECOVER 0x4000UL
#define CKF_ENCRYPT 0x100UL
#define CKF_DECRYPT 0x200UL
#define CKF_WRAP 0x20000UL
#define CKF_UNWRAP 0x40000UL

enum form { RAW_ECDSA, RAW_PKCS1, RAW_PSS, LOCAL_DIGEST };

/* A mechanism the child can make from a raw one: its hash, and the raw
 * mechanism the helper runs (none for a digest). */
struct synth {
  CK_MECHANISM_TYPE mech, raw, hash;
  enum form form;
  enum tpm11_sha_alg alg;
};

static const struct synth synths[] = {
    {0x1042, 0x1041, 0x220, RAW_ECDSA, TPM11_SHA1},   /* ECDSA_SHA1 */
    {0x1043, 0x1041, 0x255, RAW_ECDSA, TPM11_SHA224}, /* ECDSA_SHA224 */
    {0x1044, 0x1041, 0x250, RAW_ECDSA, TPM11_SHA256}, /* ECDSA_SHA256 */
    {0x1045, 0x1041, 0x260, RAW_ECDSA, TPM11_SHA384}, /* ECDSA_SHA384 */
    {0x1046, 0x1041, 0x270, RAW_ECDSA, TPM11_SHA512}, /* ECDSA_SHA512 */
    {0x0006, 0x0001, 0x220, RAW_PKCS1, TPM11_SHA1},   /* SHA1_RSA_PKCS */
    {0x0046, 0x0001, 0x255, RAW_PKCS1, TPM11_SHA224}, /* SHA224_RSA_PKCS */
    {0x0040, 0x0001, 0x250, RAW_PKCS1, TPM11_SHA256}, /* SHA256_RSA_PKCS */
    {0x0041, 0x0001, 0x260, RAW_PKCS1, TPM11_SHA384}, /* SHA384_RSA_PKCS */
    {0x0042, 0x0001, 0x270, RAW_PKCS1, TPM11_SHA512}, /* SHA512_RSA_PKCS */
    {0x000E, 0x000D, 0x220, RAW_PSS, TPM11_SHA1},     /* SHA1_RSA_PKCS_PSS */
    {0x0047, 0x000D, 0x255, RAW_PSS, TPM11_SHA224},   /* SHA224_RSA_PKCS_PSS */
    {0x0043, 0x000D, 0x250, RAW_PSS, TPM11_SHA256},   /* SHA256_RSA_PKCS_PSS */
    {0x0044, 0x000D, 0x260, RAW_PSS, TPM11_SHA384},   /* SHA384_RSA_PKCS_PSS */
    {0x0045, 0x000D, 0x270, RAW_PSS, TPM11_SHA512},   /* SHA512_RSA_PKCS_PSS */
    {0x0220, 0, 0x220, LOCAL_DIGEST, TPM11_SHA1},     /* SHA_1 */
    {0x0255, 0, 0x255, LOCAL_DIGEST, TPM11_SHA224},   /* SHA224 */
    {0x0250, 0, 0x250, LOCAL_DIGEST, TPM11_SHA256},   /* SHA256 */
    {0x0260, 0, 0x260, LOCAL_DIGEST, TPM11_SHA384},   /* SHA384 */
    {0x0270, 0, 0x270, LOCAL_DIGEST, TPM11_SHA512},   /* SHA512 */
};
#define NSYNTH (sizeof synths / sizeof synths[0])

static const struct synth *find_synth(CK_MECHANISM_TYPE m) {
  for (size_t i = 0; i < NSYNTH; i++)
    if (synths[i].mech == m) return &synths[i];
  return NULL;
}

/* The DER DigestInfo header before a digest (RFC 8017 §9.2, note 1). */
static const unsigned char *digest_info(enum tpm11_sha_alg alg, size_t *n) {
  static const unsigned char di[5][19] = {
      {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
      {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
      {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
      {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
      {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
  };
  *n = alg == TPM11_SHA1 ? 15 : 19;
  return di[alg];
}

enum kind { SIGN, VERIFY, DIGEST, NKINDS };

/* One operation the child runs itself, or (fwd) one the helper runs with
 * the caller's own mechanism, recorded only so that an empty update, which
 * p11-kit's client refuses, is answered here. A busy op is owned by the
 * call that set busy, which works on it outside mu; one unlinked meanwhile
 * (its session closed, C_Finalize) is marked dead and freed by its owner's
 * give, never under the owner's feet. */
struct op {
  struct op *next;
  CK_SESSION_HANDLE h;
  enum kind kind;
  const struct synth *m;
  struct tpm11_sha sha;
  int multi, single, busy, dead, fwd;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct op *ops;

static struct op **find_locked(CK_SESSION_HANDLE h, enum kind k) {
  struct op **p = &ops;
  while (*p != NULL && !((*p)->h == h && (*p)->kind == k)) p = &(*p)->next;
  return p;
}

static void wipe_free(struct op *o) {
  memset(o, 0, sizeof *o);
  free(o);
}

/* Unlinks *p; frees it unless a call owns it (busy): that call's give
 * frees it. */
static void unlink_free_locked(struct op **p) {
  struct op *o = *p;
  *p = o->next;
  o->next = NULL;
  if (o->busy) o->dead = 1;
  else wipe_free(o);
}

/* The helper's mechanism list, as a mask over synths: which of them its
 * RPC carries (then the caller's mechanism goes to the helper unchanged).
 * Known once per helper (reset forgets it). Under mu. */
static unsigned carried_mask;
static int carried_known;

void tpm11_child_mech_drop(CK_SESSION_HANDLE h) {
  pthread_mutex_lock(&mu);
  for (struct op **p = &ops; *p != NULL;)
    if ((*p)->h == h) unlink_free_locked(p);
    else p = &(*p)->next;
  pthread_mutex_unlock(&mu);
}

/* fork: a child of a child starts with none of its parent's operations
 * (its helper is another one), and mu is not left held by a thread the
 * fork did not copy: held across the fork, released on both sides. */
static void fork_prepare(void) { pthread_mutex_lock(&mu); }
static void fork_parent(void) { pthread_mutex_unlock(&mu); }
static void fork_child(void) {
  /* No owner of a busy op survives a fork: all are freed. */
  while (ops != NULL) {
    struct op *o = ops;
    ops = o->next;
    wipe_free(o);
  }
  carried_known = 0;
  pthread_mutex_unlock(&mu);
}
__attribute__((constructor)) static void child_mech_atfork(void) {
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void tpm11_child_mech_reset(void) {
  pthread_mutex_lock(&mu);
  while (ops != NULL) unlink_free_locked(&ops);
  carried_known = 0;
  pthread_mutex_unlock(&mu);
}

/* A call on session h's op of kind k. Returns NULL when the child runs no
 * such op (the call goes to the helper), else the op, marked busy. *rv is
 * CKR_OPERATION_ACTIVE when another call owns it. */
static struct op *take(CK_SESSION_HANDLE h, enum kind k, CK_RV *rv) {
  pthread_mutex_lock(&mu);
  struct op *o = *find_locked(h, k);
  *rv = CKR_OK;
  if (o != NULL && o->busy) *rv = CKR_OPERATION_ACTIVE;
  else if (o != NULL) o->busy = 1;
  pthread_mutex_unlock(&mu);
  return o;
}

/* Gives o back; end drops it. One unlinked while it was busy is freed. */
static void give(struct op *o, int end) {
  pthread_mutex_lock(&mu);
  o->busy = 0;
  if (o->dead) wipe_free(o);
  else if (end) {
    struct op **p = find_locked(o->h, o->kind);
    if (*p == o) unlink_free_locked(p);
  }
  pthread_mutex_unlock(&mu);
}

/* Calls helper function fn of the client's list with SIGPIPE kept off. */
#define HELPER(r, call)                 \
  ({                                    \
    struct tpm11_nopipe g_;             \
    tpm11_nopipe_enter(&g_);            \
    CK_RV rv_ = (r)->call;              \
    tpm11_nopipe_leave(&g_);            \
    rv_;                                \
  })

/* ---- mechanism list and info ---- */

static int has(const CK_MECHANISM_TYPE *l, CK_ULONG n, CK_MECHANISM_TYPE m) {
  for (CK_ULONG i = 0; i < n; i++)
    if (l[i] == m) return 1;
  return 0;
}

CK_RV tpm11_child_C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (pulCount == NULL) return CKR_ARGUMENTS_BAD;
  CK_ULONG n = 0;
  CK_RV rv = HELPER(r, C_GetMechanismList(slotID, NULL, &n));
  if (rv != CKR_OK) return rv;
  CK_MECHANISM_TYPE *l = calloc(n + NSYNTH + 1, sizeof *l);
  if (l == NULL) return TPM11_CKR_HOST_MEMORY;
  rv = HELPER(r, C_GetMechanismList(slotID, l, &n));
  if (rv != CKR_OK) {
    free(l);
    return rv;
  }
  /* A synthesized mechanism is offered when its raw form is (a digest
   * needs none: the token offers the five, docs/fork.md). */
  CK_ULONG all = n;
  for (size_t i = 0; i < NSYNTH; i++)
    if (!has(l, all, synths[i].mech) && (synths[i].raw == 0 || has(l, n, synths[i].raw))) l[all++] = synths[i].mech;
  if (pMechanismList == NULL) rv = CKR_OK;
  else if (*pulCount < all) rv = CKR_BUFFER_TOO_SMALL;
  else memcpy(pMechanismList, l, all * sizeof *l);
  *pulCount = all;
  free(l);
  return rv;
}

CK_RV tpm11_child_C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_RV rv = HELPER(r, C_GetMechanismInfo(slotID, type, pInfo));
  const struct synth *s = find_synth(type);
  if (rv != CKR_MECHANISM_INVALID || s == NULL || pInfo == NULL) return rv;
  if (s->form == LOCAL_DIGEST) {
    /* The token's digests: any length of input, no key. */
    CK_SLOT_INFO si;
    rv = HELPER(r, C_GetSlotInfo(slotID, &si)); /* the slot must exist */
    if (rv != CKR_OK) return rv;
    pInfo->ulMinKeySize = pInfo->ulMaxKeySize = 0;
    pInfo->flags = CKF_DIGEST;
    return CKR_OK;
  }
  rv = HELPER(r, C_GetMechanismInfo(slotID, s->raw, pInfo));
  if (rv != CKR_OK) return rv;
  /* The raw mechanism's key sizes and curve flags; of its functions only
   * signing and verification (hash-and-sign does not encrypt or recover). */
  pInfo->flags &= ~(CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP | CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER |
                    CKF_DIGEST);
  return CKR_OK;
}

/* ---- init ---- */

/* The raw mechanism for s with the caller's parameters: PSS keeps them
 * (their hash must be the mechanism's); the others take none. */
static CK_RV raw_mechanism(const struct synth *s, CK_MECHANISM_PTR m, CK_MECHANISM *raw) {
  raw->mechanism = s->raw;
  raw->pParameter = NULL;
  raw->ulParameterLen = 0;
  if (s->form == RAW_PSS) {
    if (m->pParameter == NULL || m->ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS))
      return CKR_MECHANISM_PARAM_INVALID;
    if (((CK_RSA_PKCS_PSS_PARAMS *)m->pParameter)->hashAlg != s->hash) return CKR_MECHANISM_PARAM_INVALID;
    raw->pParameter = m->pParameter;
    raw->ulParameterLen = m->ulParameterLen;
  } else if (m->pParameter != NULL || m->ulParameterLen != 0) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  return CKR_OK;
}

/* Records a new op of kind k for session h (the helper's raw init, if any,
 * succeeded). */
static CK_RV add_op(CK_SESSION_HANDLE h, enum kind k, const struct synth *s, int fwd) {
  struct op *o = calloc(1, sizeof *o);
  if (o == NULL) return TPM11_CKR_HOST_MEMORY;
  o->h = h, o->kind = k, o->m = s, o->fwd = fwd;
  tpm11_sha_init(&o->sha, s->alg);
  pthread_mutex_lock(&mu);
  o->next = ops;
  ops = o;
  pthread_mutex_unlock(&mu);
  return CKR_OK;
}

static int active(CK_SESSION_HANDLE h, enum kind k) {
  pthread_mutex_lock(&mu);
  int a = *find_locked(h, k) != NULL;
  pthread_mutex_unlock(&mu);
  return a;
}

/* Ends the helper's raw operation when the child ends its own without a
 * finishing raw call (the caller used the other form): the helper's raw
 * op accepts no update, and a failed update ends an operation (§5.2). */
static void end_raw(CK_FUNCTION_LIST_3_0 *r, enum kind k, CK_SESSION_HANDLE h) {
  CK_BYTE b = 0;
  CK_ULONG n = 0;
  /* One byte: p11-kit's client refuses an empty update itself. */
  if (k == SIGN) {
    if (HELPER(r, C_SignUpdate(h, &b, 1)) == CKR_OK) (void)HELPER(r, C_Sign(h, &b, 1, NULL, &n));
  } else if (HELPER(r, C_VerifyUpdate(h, &b, 1)) == CKR_OK) {
    (void)HELPER(r, C_Verify(h, &b, 1, &b, 1));
  }
}

/* Whether the helper's RPC carries synthesizable mechanism s (it is in the
 * helper's own list). */
static CK_RV carried(CK_FUNCTION_LIST_3_0 *r, CK_SESSION_HANDLE h, const struct synth *s, int *yes) {
  pthread_mutex_lock(&mu);
  int known = carried_known;
  unsigned mask = carried_mask;
  pthread_mutex_unlock(&mu);
  if (!known) {
    CK_SESSION_INFO si;
    CK_RV rv = HELPER(r, C_GetSessionInfo(h, &si));
    if (rv != CKR_OK) return rv;
    CK_ULONG n = 0;
    if ((rv = HELPER(r, C_GetMechanismList(si.slotID, NULL, &n))) != CKR_OK) return rv;
    CK_MECHANISM_TYPE *l = calloc(n + 1, sizeof *l);
    if (l == NULL) return TPM11_CKR_HOST_MEMORY;
    if ((rv = HELPER(r, C_GetMechanismList(si.slotID, l, &n))) != CKR_OK) {
      free(l);
      return rv;
    }
    mask = 0;
    for (size_t i = 0; i < NSYNTH; i++)
      if (has(l, n, synths[i].mech)) mask |= 1u << i;
    free(l);
    pthread_mutex_lock(&mu);
    carried_mask = mask, carried_known = 1;
    pthread_mutex_unlock(&mu);
  }
  *yes = (mask >> (s - synths)) & 1;
  return CKR_OK;
}

/* The key's CKA_ALLOWED_MECHANISMS, read through the helper, must hold both
 * the mechanism the caller asked for and the raw one the helper will run
 * (the helper sees only the raw one, so it cannot enforce the first). A
 * key without the attribute, or with an empty list, allows any. p11-kit
 * 0.24's RPC cannot carry the attribute (CKR_ATTRIBUTE_TYPE_INVALID):
 * then the helper's own check of the raw mechanism is the rule, which
 * grants nothing the key does not (a key allowed CKM_ECDSA signs any
 * digest; one that lacks it is refused). */
static CK_RV allowed(CK_FUNCTION_LIST_3_0 *r, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, const struct synth *s) {
  CK_ATTRIBUTE a = {CKA_ALLOWED_MECHANISMS_, NULL, 0};
  if (HELPER(r, C_GetAttributeValue(h, key, &a, 1)) != CKR_OK || a.ulValueLen == (CK_ULONG)-1 ||
      a.ulValueLen < sizeof(CK_MECHANISM_TYPE))
    return CKR_OK; /* no list (or no key: the helper's init answers for it) */
  CK_ULONG n = a.ulValueLen / sizeof(CK_MECHANISM_TYPE);
  CK_MECHANISM_TYPE *l = calloc(n, sizeof *l);
  if (l == NULL) return TPM11_CKR_HOST_MEMORY;
  a.pValue = l;
  a.ulValueLen = n * sizeof *l;
  CK_RV rv = HELPER(r, C_GetAttributeValue(h, key, &a, 1));
  if (rv == CKR_OK && (!has(l, n, s->mech) || !has(l, n, s->raw))) rv = CKR_MECHANISM_INVALID;
  else rv = CKR_OK;
  free(l);
  return rv;
}

/* Ends session h's op of kind k, if the child has one, and the helper's
 * raw op under it: C_SignInit/C_VerifyInit/C_DigestInit with no mechanism
 * (PKCS#11 3.x, §5.12). Returns whether there was one. */
static int cancel(CK_FUNCTION_LIST_3_0 *r, CK_SESSION_HANDLE h, enum kind k) {
  pthread_mutex_lock(&mu);
  struct op **p = find_locked(h, k);
  int found = *p != NULL, raw = found && (*p)->kind != DIGEST, fwd = found && (*p)->fwd;
  if (found) unlink_free_locked(p);
  pthread_mutex_unlock(&mu);
  /* p11-kit's client sends no NULL mechanism: the helper's op (raw, or
   * the caller's own when fwd) is ended by a call in the wrong form. */
  (void)fwd;
  if (raw) end_raw(r, k, h);
  return found;
}

/* SignInit and VerifyInit. A hash-and-sign mechanism the helper's RPC
 * carries goes to the helper unchanged (its key's CKA_ALLOWED_MECHANISMS
 * is the helper's to check), recorded as fwd for empty updates. One the
 * RPC lacks is made in the child over the raw mechanism, after the
 * child checked the key's CKA_ALLOWED_MECHANISMS. */
static CK_RV init(enum kind k, CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (m == NULL) {
    if (cancel(r, h, k)) return CKR_OK;
    return k == SIGN ? HELPER(r, C_SignInit(h, NULL, key)) : HELPER(r, C_VerifyInit(h, NULL, key));
  }
  if (active(h, k)) return CKR_OPERATION_ACTIVE;
  const struct synth *s = find_synth(m->mechanism);
  if (s == NULL || s->form == LOCAL_DIGEST)
    return k == SIGN ? HELPER(r, C_SignInit(h, m, key)) : HELPER(r, C_VerifyInit(h, m, key));
  CK_RV rv;
  int fwd = 0;
  if ((rv = carried(r, h, s, &fwd)) != CKR_OK) return rv;
  CK_MECHANISM raw;
  if (fwd) {
    rv = k == SIGN ? HELPER(r, C_SignInit(h, m, key)) : HELPER(r, C_VerifyInit(h, m, key));
  } else {
    if ((rv = raw_mechanism(s, m, &raw)) != CKR_OK) return rv;
    if ((rv = allowed(r, h, key, s)) != CKR_OK) return rv;
    rv = k == SIGN ? HELPER(r, C_SignInit(h, &raw, key)) : HELPER(r, C_VerifyInit(h, &raw, key));
  }
  if (rv != CKR_OK) return rv;
  if ((rv = add_op(h, k, s, fwd)) != CKR_OK) end_raw(r, k, h); /* out of memory: end the helper's too */
  return rv;
}

CK_RV tpm11_child_C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) {
  return init(SIGN, hSession, pMechanism, hKey);
}
CK_RV tpm11_child_C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey) {
  return init(VERIFY, hSession, pMechanism, hKey);
}

CK_RV tpm11_child_C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (pMechanism == NULL) {
    if (cancel(r, hSession, DIGEST)) return CKR_OK;
    return HELPER(r, C_DigestInit(hSession, NULL));
  }
  if (active(hSession, DIGEST)) return CKR_OPERATION_ACTIVE;
  CK_RV rv = HELPER(r, C_DigestInit(hSession, pMechanism));
  const struct synth *s = pMechanism != NULL ? find_synth(pMechanism->mechanism) : NULL;
  if (rv != CKR_MECHANISM_INVALID || s == NULL || s->form != LOCAL_DIGEST) return rv;
  if (pMechanism->pParameter != NULL || pMechanism->ulParameterLen != 0) return CKR_MECHANISM_PARAM_INVALID;
  CK_SESSION_INFO si; /* the session must exist */
  if ((rv = HELPER(r, C_GetSessionInfo(hSession, &si))) != CKR_OK) return rv;
  return add_op(hSession, DIGEST, s, 0);
}

/* ---- the raw call that finishes a signature or verification ---- */

/* The raw input for o's hash so far: the digest, or the DigestInfo and
 * digest for RSA-PKCS. o's hash is consumed. */
static CK_ULONG raw_input(struct op *o, CK_BYTE *out) {
  size_t n = 0;
  if (o->m->form == RAW_PKCS1) {
    const unsigned char *p = digest_info(o->m->alg, &n);
    memcpy(out, p, n);
  }
  tpm11_sha_final(&o->sha, out + n);
  return (CK_ULONG)(n + tpm11_sha_size(o->m->alg));
}

/* The state of o's hash is kept when a length query or a short buffer
 * keeps the operation: the raw input is made from a copy. */
static CK_RV sign_finish(CK_FUNCTION_LIST_3_0 *r, struct op *o, CK_BYTE_PTR sig, CK_ULONG_PTR siglen, int *end) {
  CK_BYTE in[19 + TPM11_SHA_MAX_DIGEST];
  struct op copy = *o;
  CK_ULONG n = raw_input(&copy, in);
  CK_RV rv = HELPER(r, C_Sign(o->h, in, n, sig, siglen));
  *end = !((rv == CKR_OK && sig == NULL) || rv == CKR_BUFFER_TOO_SMALL);
  return rv;
}

/* ---- signing ---- */

static CK_RV digest_out(struct op *o, CK_BYTE_PTR out, CK_ULONG_PTR outlen, int *end);

/* C_Sign, C_SignFinal, C_Digest and C_DigestFinal on an op the child runs
 * (final: the multi-part form, no data), given the helper's call for a
 * session without one. The form rules of §5.2, then the output: the
 * helper's raw signature, or the child's digest. */
static CK_RV finish(enum kind k, int final, CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG n, CK_BYTE_PTR out,
                    CK_ULONG_PTR outlen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_RV rv;
  struct op *o = take(h, k, &rv);
  if (o == NULL) {
    if (rv != CKR_OK) return rv;
    if (k == SIGN)
      return final ? HELPER(r, C_SignFinal(h, out, outlen)) : HELPER(r, C_Sign(h, data, n, out, outlen));
    return final ? HELPER(r, C_DigestFinal(h, out, outlen)) : HELPER(r, C_Digest(h, data, n, out, outlen));
  }
  int end;
  if (o->fwd) {
    rv = final ? HELPER(r, C_SignFinal(h, out, outlen)) : HELPER(r, C_Sign(h, data, n, out, outlen));
    give(o, !((rv == CKR_OK && out == NULL) || rv == CKR_BUFFER_TOO_SMALL));
    return rv;
  }
  if ((!final && data == NULL && n > 0) || outlen == NULL) {
    give(o, 0);
    return CKR_ARGUMENTS_BAD;
  }
  if (final ? o->single : o->multi) {
    if (k == SIGN) end_raw(r, SIGN, h);
    give(o, 1);
    return CKR_OPERATION_ACTIVE;
  }
  /* A single-part call repeated after a length query or a short buffer
   * works on what the first call gave (the hash is taken once). */
  if (!final && !o->single) {
    o->single = 1;
    tpm11_sha_update(&o->sha, data, n);
  }
  rv = k == SIGN ? sign_finish(r, o, out, outlen, &end) : digest_out(o, out, outlen, &end);
  give(o, end);
  return rv;
}

CK_RV tpm11_child_C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                         CK_ULONG_PTR pulSignatureLen) {
  return finish(SIGN, 0, hSession, pData, ulDataLen, pSignature, pulSignatureLen);
}

/* An update of a signature or verification the child runs: hashed here. */
static CK_RV update(enum kind k, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG n) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_RV rv;
  struct op *o = take(h, k, &rv);
  if (o == NULL) {
    if (rv != CKR_OK) return rv;
    if (k == SIGN) return HELPER(r, C_SignUpdate(h, part, n));
    if (k == VERIFY) return HELPER(r, C_VerifyUpdate(h, part, n));
    return HELPER(r, C_DigestUpdate(h, part, n));
  }
  if (o->fwd) {
    /* The helper's own op: an empty update, which p11-kit's client
     * refuses, changes nothing; a failed update ends the op (§5.2). */
    if (n == 0) rv = CKR_OK;
    else rv = k == SIGN ? HELPER(r, C_SignUpdate(h, part, n)) : HELPER(r, C_VerifyUpdate(h, part, n));
    give(o, rv != CKR_OK);
    return rv;
  }
  if (part == NULL && n > 0) {
    if (k != DIGEST) end_raw(r, k, h);
    give(o, 1); /* a failed update ends the operation */
    return CKR_ARGUMENTS_BAD;
  }
  if (o->single) {
    if (k != DIGEST) end_raw(r, k, h);
    give(o, 1);
    return CKR_OPERATION_ACTIVE;
  }
  o->multi = 1;
  tpm11_sha_update(&o->sha, part, n);
  give(o, 0);
  return CKR_OK;
}

CK_RV tpm11_child_C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen) {
  return update(SIGN, hSession, pPart, ulPartLen);
}

CK_RV tpm11_child_C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen) {
  return finish(SIGN, 1, hSession, NULL, 0, pSignature, pulSignatureLen);
}

/* ---- verification ---- */

CK_RV tpm11_child_C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                           CK_ULONG ulSignatureLen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_RV rv;
  struct op *o = take(hSession, VERIFY, &rv);
  if (o == NULL) return rv != CKR_OK ? rv : HELPER(r, C_Verify(hSession, pData, ulDataLen, pSignature, ulSignatureLen));
  if (o->fwd) {
    rv = HELPER(r, C_Verify(hSession, pData, ulDataLen, pSignature, ulSignatureLen));
    give(o, 1);
    return rv;
  }
  if ((pData == NULL && ulDataLen > 0) || (pSignature == NULL && ulSignatureLen > 0)) {
    give(o, 0);
    return CKR_ARGUMENTS_BAD;
  }
  if (o->multi) {
    end_raw(r, VERIFY, hSession);
    give(o, 1);
    return CKR_OPERATION_ACTIVE;
  }
  tpm11_sha_update(&o->sha, pData, ulDataLen);
  CK_BYTE in[19 + TPM11_SHA_MAX_DIGEST];
  CK_ULONG n = raw_input(o, in);
  rv = HELPER(r, C_Verify(hSession, in, n, pSignature, ulSignatureLen));
  give(o, 1); /* C_Verify always ends the operation */
  return rv;
}

CK_RV tpm11_child_C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen) {
  return update(VERIFY, hSession, pPart, ulPartLen);
}

CK_RV tpm11_child_C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_RV rv;
  struct op *o = take(hSession, VERIFY, &rv);
  if (o == NULL) return rv != CKR_OK ? rv : HELPER(r, C_VerifyFinal(hSession, pSignature, ulSignatureLen));
  if (o->fwd) {
    rv = HELPER(r, C_VerifyFinal(hSession, pSignature, ulSignatureLen));
    give(o, 1);
    return rv;
  }
  if (pSignature == NULL && ulSignatureLen > 0) {
    give(o, 0);
    return CKR_ARGUMENTS_BAD;
  }
  CK_BYTE in[19 + TPM11_SHA_MAX_DIGEST];
  CK_ULONG n = raw_input(o, in);
  rv = HELPER(r, C_Verify(hSession, in, n, pSignature, ulSignatureLen));
  give(o, 1);
  return rv;
}

/* ---- digests the child computes ---- */

/* The digest of o's input into out (a length query or a short buffer
 * keeps o's hash). */
static CK_RV digest_out(struct op *o, CK_BYTE_PTR out, CK_ULONG_PTR outlen, int *end) {
  CK_ULONG size = (CK_ULONG)tpm11_sha_size(o->m->alg);
  *end = 0;
  if (out == NULL) {
    *outlen = size;
    return CKR_OK;
  }
  if (*outlen < size) {
    *outlen = size;
    return CKR_BUFFER_TOO_SMALL;
  }
  tpm11_sha_final(&o->sha, out);
  *outlen = size;
  *end = 1;
  return CKR_OK;
}

CK_RV tpm11_child_C_Digest(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest,
                           CK_ULONG_PTR pulDigestLen) {
  return finish(DIGEST, 0, hSession, pData, ulDataLen, pDigest, pulDigestLen);
}

CK_RV tpm11_child_C_DigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen) {
  return update(DIGEST, hSession, pPart, ulPartLen);
}

CK_RV tpm11_child_C_DigestFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen) {
  return finish(DIGEST, 1, hSession, NULL, 0, pDigest, pulDigestLen);
}

/* ---- sessions ---- */

CK_RV tpm11_child_C_CloseSession(CK_SESSION_HANDLE hSession) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_RV rv = HELPER(r, C_CloseSession(hSession));
  if (rv == CKR_OK) tpm11_child_mech_drop(hSession);
  return rv;
}

/* The token has one slot: closing its sessions closes all. */
CK_RV tpm11_child_C_CloseAllSessions(CK_SLOT_ID slotID) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_RV rv = HELPER(r, C_CloseAllSessions(slotID));
  if (rv == CKR_OK) tpm11_child_mech_reset();
  return rv;
}

/* ---- the calls that meet a child's own operation elsewhere ---- */

static int any_op(CK_SESSION_HANDLE h) {
  return active(h, SIGN) || active(h, VERIFY) || active(h, DIGEST);
}

/* A saved state would hold the helper's raw operation without the child's
 * hash: such a state is not offered. Nor for a forwarded (fwd) op: a
 * restored one would lack the record that answers its empty updates. */
CK_RV tpm11_child_C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                                      CK_ULONG_PTR pulOperationStateLen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (any_op(hSession)) return CKR_STATE_UNSAVEABLE;
  return HELPER(r, C_GetOperationState(hSession, pOperationState, pulOperationStateLen));
}

/* The child cannot read a key's value (nor should it): a digest it runs
 * itself cannot take one, and the failed update ends it. */
CK_RV tpm11_child_C_DigestKey(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  CK_RV rv;
  struct op *o = take(hSession, DIGEST, &rv);
  if (o == NULL) return rv != CKR_OK ? rv : HELPER(r, C_DigestKey(hSession, hKey));
  give(o, 1);
  return CKR_KEY_INDIGESTIBLE;
}

/* Dual-function updates: the cipher half runs in the helper, the hash half
 * here, over the plaintext (after the cipher gave it, when decrypting). A
 * length query or a short buffer feeds nothing. */
static CK_RV encrypt_and(enum kind k, CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG n, CK_BYTE_PTR out,
                         CK_ULONG_PTR outlen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  CK_RV rv = HELPER(r, C_EncryptUpdate(h, part, n, out, outlen));
  if (rv == CKR_OK && out != NULL) rv = update(k, h, part, n);
  return rv;
}

static CK_RV decrypt_and(enum kind k, CK_SESSION_HANDLE h, CK_BYTE_PTR enc, CK_ULONG n, CK_BYTE_PTR part,
                         CK_ULONG_PTR partlen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  CK_RV rv = HELPER(r, C_DecryptUpdate(h, enc, n, part, partlen));
  if (rv == CKR_OK && part != NULL) rv = update(k, h, part, *partlen);
  return rv;
}

CK_RV tpm11_child_C_DigestEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                                        CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (!active(hSession, DIGEST))
    return HELPER(r, C_DigestEncryptUpdate(hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen));
  return encrypt_and(DIGEST, hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen);
}

CK_RV tpm11_child_C_SignEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                                      CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (!active(hSession, SIGN))
    return HELPER(r, C_SignEncryptUpdate(hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen));
  return encrypt_and(SIGN, hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen);
}

CK_RV tpm11_child_C_DecryptDigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                                        CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (!active(hSession, DIGEST))
    return HELPER(r, C_DecryptDigestUpdate(hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen));
  return decrypt_and(DIGEST, hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen);
}

CK_RV tpm11_child_C_DecryptVerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                                        CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen) {
  CK_FUNCTION_LIST_3_0 *r = tpm11_child_list();
  if (r == NULL) return TPM11_CKR_CRYPTOKI_NOT_INITIALIZED;
  if (!active(hSession, VERIFY))
    return HELPER(r, C_DecryptVerifyUpdate(hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen));
  return decrypt_and(VERIFY, hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen);
}
