#include "sha256_md.h"

#include <pthread.h>

static const EVP_MD *fetched;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void fetch(void) { fetched = EVP_MD_fetch(NULL, "SHA256", NULL); }

const EVP_MD *hu_sha256_md(void) {
    pthread_once(&once, fetch);
    return fetched != NULL ? fetched : EVP_sha256();
}
