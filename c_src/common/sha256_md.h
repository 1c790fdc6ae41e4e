/* SHA-256 as an OpenSSL 3 digest fetched once. EVP_sha256() is a legacy handle that every
 * EVP_DigestInit_ex or HMAC_Init_ex looks up again in the provider store (a lock taken by
 * every pool thread at once): 2.3 % of a 64 KiB upload's CPU went there (perf), for the
 * token's HMAC and the body's digest. (One-shot HMAC() looks its digest up by name whatever
 * it is given: the JWT check keeps EVP_sha256().) */
#ifndef HU_SHA256_MD_H
#define HU_SHA256_MD_H

#include <openssl/evp.h>

/* The fetched digest, or EVP_sha256() when the fetch failed; kept for the process's life. */
const EVP_MD *hu_sha256_md(void);

#endif
