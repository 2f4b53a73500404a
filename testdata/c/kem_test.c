/* Key encapsulation (C_EncapsulateKey, C_DecapsulateKey) against openssl,
 * both ways. Decapsulation: openssl encrypts a secret to the token's RSA
 * key (OAEP-SHA256, PKCS#1 v1.5, raw) or makes an ephemeral EC key and its
 * ECDH secret with the token's P-256 key; the key C_DecapsulateKey makes
 * (TPM2_RSA_Decrypt / TPM2_ECDH_ZGen) reads back as openssl's secret.
 * Encapsulation: to public keys made by openssl and imported; openssl's
 * private keys recover the secret the new key holds. Also the length
 * convention and the mechanism flags.
 * Usage: kem_test module.so workdir (openssl in PATH) */
#include <stdarg.h>
#include <stdint.h>
#include "setup.h"

#define D(name, value) static const CK_ULONG name = value
D(K_CKM_RSA_GEN, 0x0UL);
D(K_CKM_RSA_PKCS, 0x1UL);
D(K_CKM_RSA_X_509, 0x3UL);
D(K_CKM_RSA_PKCS_OAEP, 0x9UL);
D(K_CKM_EC_GEN, 0x1040UL);
D(K_CKM_ECDH1_COFACTOR_DERIVE, 0x1051UL);
D(K_CKA_MODULUS_BITS, 0x121UL);
D(K_CKA_MODULUS, 0x120UL);
D(K_CKA_PUBLIC_EXPONENT, 0x122UL);
D(K_CKA_PUBLIC_KEY_INFO, 0x129UL);
D(K_CKA_ENCRYPT, 0x104UL);
D(K_CKA_UNWRAP, 0x107UL);
D(K_CKO_PUBLIC_KEY, 2UL);
D(K_CKK_RSA, 0UL);
D(K_CKK_EC, 3UL);
D(K_CKK_AES, 0x1FUL);
D(K_CKF_ENCAPSULATE, 0x10000000UL);
D(K_CKF_DECAPSULATE, 0x20000000UL);
D(K_CKR_BUFFER_TOO_SMALL, 0x150UL);
D(K_CKA_ENCAPSULATE, 0x633UL);
D(K_CKA_DECAPSULATE, 0x634UL);
D(K_CKA_WRAP, 0x106UL);
D(K_CKR_KEY_FUNCTION_NOT_PERMITTED, 0x68UL);
D(K_CKR_ATTRIBUTE_READ_ONLY, 0x10UL);

static CK_FUNCTION_LIST_3_2 *f;
static const char *dir;
static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
/* The SubjectPublicKeyInfo of a P-256 key, before its 65-byte point. */
static const CK_BYTE p256_spki[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
                                    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};

static void sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(cmd, sizeof cmd, "cd '%s' && ", dir);
  vsnprintf(cmd + n, sizeof cmd - n, fmt, ap);
  va_end(ap);
  if (system(cmd) != 0) {
    fprintf(stderr, "FAIL: %s\n", cmd);
    exit(1);
  }
}

/* Files in the work directory (setup.h). */
#define rd(name, buf, cap) read_in(dir, name, buf, cap)
#define wr(name, buf, n) write_in(dir, name, buf, n)

/* value reads a readable secret key's CKA_VALUE. */
static CK_ULONG value(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k, CK_BYTE *buf) {
  CK_ATTRIBUTE a = {CKA_VALUE, buf, 128};
  RV(f->C_GetAttributeValue(h, k, &a, 1), CKR_OK);
  return a.ulValueLen;
}

static CK_ULONG secret_class = CKO_SECRET_KEY;
static CK_ULONG generic = CKK_GENERIC_SECRET;
static CK_BBOOL yes = 1, no = 0;
static CK_ULONG len32 = 32;
/* A readable session key, so the test can compare its value. */
#define SECRET_TEMPLATE(kt)                                                                                             \
  {                                                                                                                     \
    {CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, kt, sizeof(CK_ULONG)},                            \
        {CKA_VALUE_LEN, &len32, sizeof len32}, {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1},                    \
  }

static void check_flags(void) {
  CK_ULONG ms[] = {K_CKM_RSA_PKCS, K_CKM_RSA_PKCS_OAEP, K_CKM_RSA_X_509, CKM_ECDH1_DERIVE, K_CKM_ECDH1_COFACTOR_DERIVE};
  for (int i = 0; i < 5; i++) {
    CK_MECHANISM_INFO info;
    RV(f->C_GetMechanismInfo(0, ms[i], &info), CKR_OK);
    CHECK((info.flags & (K_CKF_ENCAPSULATE | K_CKF_DECAPSULATE)) == (K_CKF_ENCAPSULATE | K_CKF_DECAPSULATE),
          "mechanism 0x%lx flags 0x%lx lack CKF_ENCAPSULATE|CKF_DECAPSULATE", ms[i], info.flags);
  }
}

/* Decapsulation of openssl's ciphertexts with the token's RSA key. */
static void rsa_decapsulate(CK_SESSION_HANDLE h) {
  CK_MECHANISM gen = {K_CKM_RSA_GEN, NULL, 0};
  CK_ULONG bits = 2048;
  CK_ATTRIBUTE pubt[] = {{K_CKA_MODULUS_BITS, &bits, sizeof bits}};
  CK_ATTRIBUTE privt[] = {{K_CKA_UNWRAP, &yes, 1}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 1, privt, 1, &pub, &priv), CKR_OK);
  CK_BYTE spki[1024];
  CK_ATTRIBUTE a = {K_CKA_PUBLIC_KEY_INFO, spki, sizeof spki};
  RV(f->C_GetAttributeValue(h, pub, &a, 1), CKR_OK);
  wr("rsa.der", spki, a.ulValueLen);
  sh("openssl rand 32 > secret && head -c 224 /dev/zero > raw && cat secret >> raw");
  sh("openssl pkeyutl -encrypt -pubin -keyform DER -inkey rsa.der -pkeyopt rsa_padding_mode:oaep "
     "-pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in secret -out ct-oaep");
  sh("openssl pkeyutl -encrypt -pubin -keyform DER -inkey rsa.der -pkeyopt rsa_padding_mode:pkcs1 -in secret -out ct-pkcs");
  sh("openssl pkeyutl -encrypt -pubin -keyform DER -inkey rsa.der -pkeyopt rsa_padding_mode:none -in raw -out ct-raw");
  CK_BYTE secret[32], ct[512], got[128];
  rd("secret", secret, sizeof secret);
  CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, 2 /* CKG_MGF1_SHA256 */, 1 /* CKZ_DATA_SPECIFIED */, NULL, 0};
  CK_MECHANISM oaep = {K_CKM_RSA_PKCS_OAEP, &op, sizeof op}, pkcs = {K_CKM_RSA_PKCS, NULL, 0}, x509 = {K_CKM_RSA_X_509, NULL, 0};
  struct { const char *file; CK_MECHANISM *m; } cases[] = {{"ct-oaep", &oaep}, {"ct-pkcs", &pkcs}, {"ct-raw", &x509}};
  for (int i = 0; i < 3; i++) {
    size_t n = rd(cases[i].file, ct, sizeof ct);
    CK_ATTRIBUTE t[] = SECRET_TEMPLATE(&generic);
    CK_OBJECT_HANDLE k = 0;
    RV(f->C_DecapsulateKey(h, cases[i].m, priv, t, 5, ct, n, &k), CKR_OK);
    CHECK(k && value(h, k, got) == 32 && memcmp(got, secret, 32) == 0, "%s: the decapsulated key is not openssl's secret",
          cases[i].file);
  }
  /* A flipped ciphertext bit is the caller's error, never a key. */
  size_t n = rd("ct-oaep", ct, sizeof ct);
  ct[100] ^= 1;
  CK_ATTRIBUTE t[] = SECRET_TEMPLATE(&generic);
  CK_OBJECT_HANDLE k = 0;
  CK_RV r = f->C_DecapsulateKey(h, &oaep, priv, t, 5, ct, n, &k);
  CHECK(r != CKR_OK && k == 0, "a tampered OAEP ciphertext decapsulated: 0x%lx", r);
}

/* Decapsulation of an openssl ephemeral key with the token's P-256 key. */
static void ec_decapsulate(CK_SESSION_HANDLE h) {
  CK_MECHANISM gen = {K_CKM_EC_GEN, NULL, 0};
  CK_ATTRIBUTE pubt[] = {{CKA_EC_PARAMS, p256, sizeof p256}};
  CK_ATTRIBUTE privt[] = {{CKA_DERIVE, &yes, 1}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 1, privt, 1, &pub, &priv), CKR_OK);
  CK_BYTE spki[256];
  CK_ATTRIBUTE a = {K_CKA_PUBLIC_KEY_INFO, spki, sizeof spki};
  RV(f->C_GetAttributeValue(h, pub, &a, 1), CKR_OK);
  wr("ec.der", spki, a.ulValueLen);
  sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out eph.pem 2>/dev/null");
  sh("openssl pkey -in eph.pem -pubout -outform DER -out eph.der");
  sh("openssl pkeyutl -derive -inkey eph.pem -peerkey ec.der -peerform DER -out z");
  CK_BYTE z[32], eph[128], got[128];
  rd("z", z, sizeof z);
  size_t n = rd("eph.der", eph, sizeof eph);
  CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, 0, NULL};
  CK_ULONG mechs[] = {CKM_ECDH1_DERIVE, K_CKM_ECDH1_COFACTOR_DERIVE};
  for (int i = 0; i < 2; i++) {
    CK_MECHANISM m = {mechs[i], &p, sizeof p};
    CK_ATTRIBUTE t[] = SECRET_TEMPLATE(&generic);
    CK_OBJECT_HANDLE k = 0;
    RV(f->C_DecapsulateKey(h, &m, priv, t, 5, eph + n - 65, 65, &k), CKR_OK);
    CHECK(k && value(h, k, got) == 32 && memcmp(got, z, 32) == 0, "ECDH 0x%lx: the decapsulated key is not openssl's secret",
          mechs[i]);
  }
  /* The ciphertext is the public value: one given in the parameter too is bad. */
  CK_ECDH1_DERIVE_PARAMS withpub = {CKD_NULL, 0, NULL, 65, eph + n - 65};
  CK_MECHANISM bad = {CKM_ECDH1_DERIVE, &withpub, sizeof withpub};
  CK_ATTRIBUTE t[] = SECRET_TEMPLATE(&generic);
  CK_OBJECT_HANDLE k = 0;
  RV(f->C_DecapsulateKey(h, &bad, priv, t, 5, eph + n - 65, 65, &k), CKR_MECHANISM_PARAM_INVALID);
}

/* Encapsulation to an openssl RSA key: openssl's private key recovers the
 * secret of the new key. Also the length query and a short buffer. */
static void rsa_encapsulate(CK_SESSION_HANDLE h) {
  sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out peer.pem 2>/dev/null");
  sh("openssl rsa -in peer.pem -noout -modulus | cut -d= -f2 > modulus");
  CK_BYTE hex[600], mod[256], ct[512], got[128], e[] = {1, 0, 1};
  size_t hl = rd("modulus", hex, sizeof hex), mlen = 0;
  for (size_t i = 0; i + 1 < hl && mlen < sizeof mod; i += 2) {
    unsigned v;
    if (sscanf((char *)hex + i, "%2x", &v) != 1) break;
    mod[mlen++] = (CK_BYTE)v;
  }
  CHECK(mlen == 256, "modulus of %zu bytes from openssl", mlen);
  CK_ULONG pc = K_CKO_PUBLIC_KEY;
  CK_ULONG kt = K_CKK_RSA;
  CK_ATTRIBUTE pt[] = {{CKA_CLASS, &pc, sizeof pc}, {CKA_KEY_TYPE, &kt, sizeof kt}, {K_CKA_MODULUS, mod, mlen},
                       {K_CKA_PUBLIC_EXPONENT, e, 3}, {K_CKA_ENCRYPT, &yes, 1}};
  CK_OBJECT_HANDLE pub;
  RV(f->C_CreateObject(h, pt, 5, &pub), CKR_OK);
  CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, 2, 1, NULL, 0};
  CK_MECHANISM oaep = {K_CKM_RSA_PKCS_OAEP, &op, sizeof op}, pkcs = {K_CKM_RSA_PKCS, NULL, 0};
  CK_ATTRIBUTE t[] = SECRET_TEMPLATE(&generic);
  CK_OBJECT_HANDLE k = 0;
  CK_ULONG n = 0;
  RV(f->C_EncapsulateKey(h, &oaep, pub, t, 5, NULL, &n, &k), CKR_OK);
  CHECK(n == 256 && k == 0, "length query: %lu, key %lu", n, k);
  n = 255;
  RV(f->C_EncapsulateKey(h, &oaep, pub, t, 5, ct, &n, &k), K_CKR_BUFFER_TOO_SMALL);
  CHECK(n == 256 && k == 0, "short buffer: %lu, key %lu", n, k);
  struct { CK_MECHANISM *m; const char *opts; } cases[] = {
      {&oaep, "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256"},
      {&pkcs, "-pkeyopt rsa_padding_mode:pkcs1"}};
  for (int i = 0; i < 2; i++) {
    n = sizeof ct;
    k = 0;
    RV(f->C_EncapsulateKey(h, cases[i].m, pub, t, 5, ct, &n, &k), CKR_OK);
    CHECK(n == 256 && k != 0, "encapsulated %lu bytes, key %lu", n, k);
    wr("enc-ct", ct, n);
    sh("openssl pkeyutl -decrypt -inkey peer.pem %s -in enc-ct -out enc-secret", cases[i].opts);
    CK_BYTE want[64];
    size_t wl = rd("enc-secret", want, sizeof want);
    CHECK(value(h, k, got) == 32 && wl == 32 && memcmp(got, want, 32) == 0, "RSA case %d: openssl recovered another secret", i);
  }
  /* On an async session it runs to the end too (C_AsyncComplete could not
   * hand back a ciphertext): never CKR_PENDING. */
  CK_SESSION_HANDLE ha;
  RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_ASYNC_SESSION, NULL, NULL, &ha), CKR_OK);
  for (int i = 0; i < 20; i++) {
    n = sizeof ct;
    k = 0;
    RV(f->C_EncapsulateKey(ha, &oaep, pub, t, 5, ct, &n, &k), CKR_OK);
    CHECK(n == 256 && k != 0, "async session: encapsulated %lu bytes, key %lu", n, k);
  }
  wr("enc-ct", ct, n);
  sh("openssl pkeyutl -decrypt -inkey peer.pem %s -in enc-ct -out enc-secret", cases[0].opts);
  {
    CK_BYTE want[64];
    size_t wl = rd("enc-secret", want, sizeof want);
    CHECK(value(ha, k, got) == 32 && wl == 32 && memcmp(got, want, 32) == 0, "async session: openssl recovered another secret");
  }
  RV(f->C_CloseSession(ha), CKR_OK);
  /* An AES key needs its length; with it, an AES-128 key. */
  CK_ULONG aes = K_CKK_AES;
  CK_ULONG len16 = 16;
  CK_ATTRIBUTE ta[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes}, {CKA_VALUE_LEN, &len16, sizeof len16},
                       {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
  n = sizeof ct;
  RV(f->C_EncapsulateKey(h, &oaep, pub, ta, 5, ct, &n, &k), CKR_OK);
  wr("enc-ct", ct, n);
  sh("openssl pkeyutl -decrypt -inkey peer.pem -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 "
     "-pkeyopt rsa_mgf1_md:sha256 -in enc-ct -out enc-secret");
  CK_BYTE want[64];
  size_t wl = rd("enc-secret", want, sizeof want);
  CHECK(value(h, k, got) == 16 && wl == 16 && memcmp(got, want, 16) == 0, "AES-128: openssl recovered another secret");
}

/* Encapsulation to an openssl P-256 key: the ciphertext is our ephemeral
 * point; openssl's ECDH of its private key with it is the new key. */
static void ec_encapsulate(CK_SESSION_HANDLE h) {
  sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer-ec.pem 2>/dev/null");
  sh("openssl pkey -in peer-ec.pem -pubout -outform DER -out peer-ec.der");
  CK_BYTE der[128], point[67], ct[128], got[128];
  size_t n = rd("peer-ec.der", der, sizeof der);
  point[0] = 0x04, point[1] = 65; /* CKA_EC_POINT: the DER OCTET STRING */
  memcpy(point + 2, der + n - 65, 65);
  CK_ULONG pc = K_CKO_PUBLIC_KEY;
  CK_ULONG kt = K_CKK_EC;
  CK_ATTRIBUTE pt[] = {{CKA_CLASS, &pc, sizeof pc}, {CKA_KEY_TYPE, &kt, sizeof kt}, {CKA_EC_PARAMS, p256, sizeof p256},
                       {CKA_EC_POINT, point, sizeof point}, {CKA_DERIVE, &yes, 1}};
  CK_OBJECT_HANDLE pub;
  RV(f->C_CreateObject(h, pt, 5, &pub), CKR_OK);
  CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, 0, NULL};
  CK_ULONG mechs[] = {CKM_ECDH1_DERIVE, K_CKM_ECDH1_COFACTOR_DERIVE};
  for (int i = 0; i < 2; i++) {
    CK_MECHANISM m = {mechs[i], &p, sizeof p};
    CK_ATTRIBUTE t[] = SECRET_TEMPLATE(&generic);
    CK_OBJECT_HANDLE k = 0;
    CK_ULONG cl = sizeof ct;
    RV(f->C_EncapsulateKey(h, &m, pub, t, 5, ct, &cl, &k), CKR_OK);
    CHECK(cl == 65 && ct[0] == 4, "ECDH ciphertext: %lu bytes", cl);
    CK_BYTE spki[sizeof p256_spki + 65];
    memcpy(spki, p256_spki, sizeof p256_spki);
    memcpy(spki + sizeof p256_spki, ct, 65);
    wr("eph-ours.der", spki, sizeof spki);
    sh("openssl pkeyutl -derive -inkey peer-ec.pem -peerkey eph-ours.der -peerform DER -out z-ours");
    CK_BYTE z[64];
    size_t zl = rd("z-ours", z, sizeof z);
    CHECK(value(h, k, got) == 32 && zl == 32 && memcmp(got, z, 32) == 0, "ECDH 0x%lx: openssl derived another secret", mechs[i]);
  }
}

static CK_BBOOL bool_attr(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k, CK_ULONG typ) {
  CK_BBOOL v = 2;
  CK_ATTRIBUTE a = {typ, &v, 1};
  RV(f->C_GetAttributeValue(h, k, &a, 1), CKR_OK);
  CHECK(a.ulValueLen == 1 && v <= 1, "attribute 0x%lx: %lu bytes, %u", typ, a.ulValueLen, v);
  return v;
}

/* CKA_ENCAPSULATE / CKA_DECAPSULATE (3.2) decide: by default they follow
 * CKA_WRAP / CKA_UNWRAP (RSA); given, they alone say yes or no; false is
 * CKR_KEY_FUNCTION_NOT_PERMITTED; C_SetAttributeValue turns them off,
 * never on. The ciphertext is openssl's. */
static void kem_usage(CK_SESSION_HANDLE h) {
  CK_MECHANISM gen = {K_CKM_RSA_GEN, NULL, 0};
  CK_ULONG bits = 2048;
  CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, 2, 1, NULL, 0};
  CK_MECHANISM oaep = {K_CKM_RSA_PKCS_OAEP, &op, sizeof op};
  CK_BYTE spki[1024], secret[32], ct[512], got[128], out[512];
  for (int given = 0; given < 2; given++) {
    /* given: CKA_ENCAPSULATE/CKA_DECAPSULATE true, CKA_WRAP/CKA_UNWRAP
     * false; else CKA_WRAP/CKA_UNWRAP true and the defaults. */
    CK_ATTRIBUTE pubt[] = {{K_CKA_MODULUS_BITS, &bits, sizeof bits}, {given ? K_CKA_ENCAPSULATE : K_CKA_WRAP, &yes, 1}};
    CK_ATTRIBUTE privt[] = {{given ? K_CKA_DECAPSULATE : K_CKA_UNWRAP, &yes, 1}};
    CK_OBJECT_HANDLE pub, priv;
    RV(f->C_GenerateKeyPair(h, &gen, pubt, 2, privt, 1, &pub, &priv), CKR_OK);
    CHECK(bool_attr(h, pub, K_CKA_ENCAPSULATE) == 1 && bool_attr(h, priv, K_CKA_DECAPSULATE) == 1,
          "case %d: CKA_ENCAPSULATE/CKA_DECAPSULATE not true", given);
    CHECK(bool_attr(h, priv, K_CKA_UNWRAP) == !given, "case %d: CKA_UNWRAP", given);
    CK_ATTRIBUTE a = {K_CKA_PUBLIC_KEY_INFO, spki, sizeof spki};
    RV(f->C_GetAttributeValue(h, pub, &a, 1), CKR_OK);
    wr("usage.der", spki, a.ulValueLen);
    sh("openssl rand 32 > usage-secret && openssl pkeyutl -encrypt -pubin -keyform DER -inkey usage.der "
       "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in usage-secret -out usage-ct");
    rd("usage-secret", secret, sizeof secret);
    size_t n = rd("usage-ct", ct, sizeof ct);
    CK_ATTRIBUTE t[] = SECRET_TEMPLATE(&generic);
    CK_OBJECT_HANDLE k = 0;
    RV(f->C_DecapsulateKey(h, &oaep, priv, t, 5, ct, n, &k), CKR_OK);
    CHECK(k && value(h, k, got) == 32 && memcmp(got, secret, 32) == 0, "case %d: not openssl's secret", given);
    CK_ULONG cl = sizeof out;
    RV(f->C_EncapsulateKey(h, &oaep, pub, t, 5, out, &cl, &k), CKR_OK);

    CK_ATTRIBUTE off[] = {{K_CKA_DECAPSULATE, &no, 1}}, offp[] = {{K_CKA_ENCAPSULATE, &no, 1}};
    RV(f->C_SetAttributeValue(h, priv, off, 1), CKR_OK);
    RV(f->C_SetAttributeValue(h, pub, offp, 1), CKR_OK);
    k = 0;
    RV(f->C_DecapsulateKey(h, &oaep, priv, t, 5, ct, n, &k), K_CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK(k == 0, "case %d: a key made without the usage", given);
    cl = sizeof out;
    RV(f->C_EncapsulateKey(h, &oaep, pub, t, 5, out, &cl, &k), K_CKR_KEY_FUNCTION_NOT_PERMITTED);
    CK_ATTRIBUTE on[] = {{K_CKA_DECAPSULATE, &yes, 1}};
    RV(f->C_SetAttributeValue(h, priv, on, 1), K_CKR_ATTRIBUTE_READ_ONLY);
  }
  /* A signing key pair: neither, so no raw RSA decryption with it. */
  CK_ATTRIBUTE pubt[] = {{K_CKA_MODULUS_BITS, &bits, sizeof bits}};
  CK_OBJECT_HANDLE pub, priv;
  RV(f->C_GenerateKeyPair(h, &gen, pubt, 1, NULL, 0, &pub, &priv), CKR_OK);
  CHECK(bool_attr(h, pub, K_CKA_ENCAPSULATE) == 0 && bool_attr(h, priv, K_CKA_DECAPSULATE) == 0,
        "a signing key pair encapsulates or decapsulates by default");
  CK_ATTRIBUTE t[] = SECRET_TEMPLATE(&generic);
  CK_OBJECT_HANDLE k = 0;
  RV(f->C_DecapsulateKey(h, &oaep, priv, t, 5, ct, rd("usage-ct", ct, sizeof ct), &k), K_CKR_KEY_FUNCTION_NOT_PERMITTED);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: kem_test module.so workdir\n");
    return 2;
  }
  dir = argv[2];
  f = load_module(argc, argv);
  CK_SESSION_HANDLE h = make_token(f);
  RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "user-pin", 8), CKR_OK);
  check_flags();
  rsa_decapsulate(h);
  ec_decapsulate(h);
  rsa_encapsulate(h);
  ec_encapsulate(h);
  kem_usage(h);
  RV(f->C_Finalize(NULL), CKR_OK);
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("kem_test: all checks passed\n");
  return 0;
}
