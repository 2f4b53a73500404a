/* SHA-1, SHA-224, SHA-256, SHA-384 and SHA-512 (FIPS 180-4) in plain C, for
 * a forked child that hashes before it sends a raw signature request to its
 * helper (child_mech.c). The library links libc only, so no libcrypto. */
#ifndef TPM11_SHA_H
#define TPM11_SHA_H
#include <stddef.h>
#include <stdint.h>

enum tpm11_sha_alg { TPM11_SHA1, TPM11_SHA224, TPM11_SHA256, TPM11_SHA384, TPM11_SHA512 };

#define TPM11_SHA_MAX_DIGEST 64

struct tpm11_sha {
  enum tpm11_sha_alg alg;
  union {
    uint32_t w32[8]; /* SHA-1 (5 words), SHA-224/256 */
    uint64_t w64[8]; /* SHA-384/512 */
  } h;
  unsigned char buf[128]; /* a partial block */
  size_t nbuf;
  uint64_t len; /* bytes hashed so far (2^64 bytes is beyond any caller) */
};

/* Length in bytes of alg's digest. */
size_t tpm11_sha_size(enum tpm11_sha_alg alg) __attribute__((visibility("hidden")));
void tpm11_sha_init(struct tpm11_sha *s, enum tpm11_sha_alg alg) __attribute__((visibility("hidden")));
void tpm11_sha_update(struct tpm11_sha *s, const void *data, size_t n) __attribute__((visibility("hidden")));
/* Writes tpm11_sha_size(alg) bytes to out; s must be initialized again before reuse. */
void tpm11_sha_final(struct tpm11_sha *s, unsigned char *out) __attribute__((visibility("hidden")));

#endif
