#include "upload_media.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "media.h"

/* libmagic handles are not thread-safe, and each holds its own copy of the compiled database
 * (about 9 MiB): one per thread-pool worker made 32 of them, 300 MiB of RSS after a burst of
 * small uploads, each call cache-cold. So a few handles, one per core, lent for the libmagic
 * step alone (a quarter of a millisecond; a JPEG's decode runs without one). */
#define CTX_MAX 16
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ctx_returned = PTHREAD_COND_INITIALIZER;
static hu_media_ctx *ctx_free_list[CTX_MAX];
static int ctx_free_n, ctx_made, ctx_max;

/* A handle (made on first need, up to one per core), or NULL when none can be made. */
static hu_media_ctx *ctx_take(void) {
    pthread_mutex_lock(&ctx_lock);
    if (ctx_max == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        ctx_max = n < 1 ? 1 : n > CTX_MAX ? CTX_MAX : (int)n;
    }
    while (ctx_free_n == 0 && ctx_made >= ctx_max)
        pthread_cond_wait(&ctx_returned, &ctx_lock);
    hu_media_ctx *ctx = NULL;
    if (ctx_free_n > 0) {
        ctx = ctx_free_list[--ctx_free_n];
        pthread_mutex_unlock(&ctx_lock);
        return ctx;
    }
    ctx_made++; /* made outside the lock: loading the database takes milliseconds */
    pthread_mutex_unlock(&ctx_lock);
    if (hu_media_ctx_new(&ctx) == 0)
        return ctx;
    pthread_mutex_lock(&ctx_lock);
    ctx_made--;
    pthread_cond_signal(&ctx_returned);
    pthread_mutex_unlock(&ctx_lock);
    return NULL;
}

static void ctx_give(hu_media_ctx *ctx) {
    pthread_mutex_lock(&ctx_lock);
    ctx_free_list[ctx_free_n++] = ctx;
    pthread_cond_signal(&ctx_returned);
    pthread_mutex_unlock(&ctx_lock);
}

/* Larger images are not decoded (their type is still read): an image worth a thumbnail is
 * far smaller, and mapping one of gigabytes would only cost memory and time. */
#define MEDIA_MAX_BYTES (64u << 20)

void hu_upload_media_probe(const hu_config *cfg, int fd, uint64_t size, hu_file_meta *m,
                           hu_upload_thumb *thumb) {
    thumb->data = NULL;
    thumb->len = 0;
    /* A file signed as application/octet-stream says nothing to verify, and its bytes are
     * mostly ciphertext (OMEMO media sharing uploads with that type; so do clients that do not
     * know the type): libmagic would walk all of its 3,561 patterns to answer "data" (0.25-0.45
     * ms, most of such an upload's CPU), and a file served as octet-stream is opened by no
     * client as an image. It stays untyped (its row says unverified). */
    if (!cfg->media_metadata || size == 0 || hu_media_type_equal(m->type, "application/octet-stream"))
        return;
    /* libmagic reads the first bytes; only an image we decode is mapped whole (a mapping of
     * a small file and its unmapping, with the TLB shootdown it sends to the other threads,
     * cost more than the read) */
    unsigned char head[HU_MEDIA_HEAD_BYTES];
    ssize_t got = pread(fd, head, size < sizeof head ? (size_t)size : sizeof head, 0);
    if (got < 0)
        return;
    hu_media_ctx *ctx = ctx_take();
    if (ctx == NULL)
        return;
    hu_media_info info;
    int rc = hu_media_type(ctx, head, (size_t)got, m->type, &info);
    ctx_give(ctx);
    void *map = rc == 1 && size <= MEDIA_MAX_BYTES
                    ? mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0)
                    : MAP_FAILED;
    if (map != MAP_FAILED) {
        hu_media_limits lim = {.max_pixels = cfg->media_max_pixels,
                               .want_thumbnail = cfg->thumbnails};
        rc = hu_media_describe(map, (size_t)size, &lim, &info);
        munmap(map, (size_t)size);
    } else if (rc >= 0) {
        rc = -ENOTSUP; /* not an image we decode, or too big to map */
    }
    snprintf(m->media_type, sizeof m->media_type, "%s", info.type[0] ? info.type : "application/octet-stream");
    m->type_ok = info.type_matches;
    if (rc == 0 && info.width > 0) {
        m->width = info.width;
        m->height = info.height;
        snprintf(m->blurhash, sizeof m->blurhash, "%s", info.blurhash);
    }
    if (rc == 0 && info.thumb != NULL) { /* taken over: stored once the file is published */
        thumb->data = info.thumb;
        thumb->len = info.thumb_len;
        info.thumb = NULL;
        m->thumbnail = 1;
    }
    if (info.is_image && rc < 0 && rc != -ENOTSUP)
        hu_log(HU_LOG_INFO, "media: %s: no image metadata (%s)", m->path,
               rc == -E2BIG ? "more pixels than media_max_pixels" : "not a decodable image");
    hu_media_info_free(&info);
}
