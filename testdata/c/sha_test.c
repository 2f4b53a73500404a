/* The child's own SHA-1/224/256/384/512 (module/sha.c, built into this
 * program) against libcrypto's, over lengths around every padding edge of
 * both block sizes, in one call and split into parts of every size 1..n. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include "sha.h"

int main(void) {
  const EVP_MD *mds[] = {EVP_sha1(), EVP_sha224(), EVP_sha256(), EVP_sha384(), EVP_sha512()};
  const char *names[] = {"SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512"};
  static unsigned char msg[1200];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = (unsigned char)(i * 131 + 7);
  int checked = 0;
  for (int a = 0; a < 5; a++) {
    for (size_t n = 0; n <= sizeof msg; n = n < 300 ? n + 1 : n + 450) { /* 0..300, 750, 1200 */
      unsigned char want[64], got[64];
      unsigned int wl;
      EVP_Digest(msg, n, want, &wl, mds[a], NULL);
      if (wl != tpm11_sha_size(a)) { printf("FAIL %s size %zu\n", names[a], tpm11_sha_size(a)); return 1; }
      /* split: one part (0), or parts of `split` bytes */
      for (size_t split = 0; split <= (n < 130 ? n : 3); split++) {
        struct tpm11_sha s;
        tpm11_sha_init(&s, a);
        if (split == 0) tpm11_sha_update(&s, msg, n);
        else
          for (size_t off = 0; off < n; off += split) tpm11_sha_update(&s, msg + off, n - off < split ? n - off : split);
        tpm11_sha_final(&s, got);
        if (memcmp(want, got, wl) != 0) { printf("FAIL %s length %zu split %zu\n", names[a], n, split); return 1; }
        checked++;
      }
    }
  }
  printf("sha_test: %d digests equal libcrypto's\n", checked);
  return 0;
}
