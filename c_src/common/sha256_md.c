#include "sha256_md.h"

#include <openssl/opensslv.h>
#include <pthread.h>

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static const EVP_MD *fetched;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void fetch(void) { fetched = EVP_MD_fetch(NULL, "SHA256", NULL); }

const EVP_MD *hu_sha256_md(void) {
    pthread_once(&once, fetch);
    return fetched != NULL ? fetched : EVP_sha256();
}
#else
/* before OpenSSL 3, EVP_sha256() is the digest itself: nothing to look up */
const EVP_MD *hu_sha256_md(void) { return EVP_sha256(); }
#endif
