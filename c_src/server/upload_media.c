#include "upload_media.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>

#include "log.h"
#include "media.h"

/* libmagic handles are not thread-safe: one per thread-pool worker, made on first use and
 * freed when the thread ends. */
static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *ctx) { hu_media_ctx_free(ctx); }
static void ctx_key_init(void) { pthread_key_create(&ctx_key, ctx_free); }

static hu_media_ctx *thread_ctx(void) {
    pthread_once(&ctx_once, ctx_key_init);
    hu_media_ctx *ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL && hu_media_ctx_new(&ctx) == 0 && pthread_setspecific(ctx_key, ctx) != 0) {
        hu_media_ctx_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* Larger files are not probed: an image worth a thumbnail is far smaller, and mapping (and
 * libmagic's look at) a video of gigabytes would only cost memory and time. */
#define MEDIA_MAX_BYTES (64u << 20)

void hu_upload_media_probe(const hu_config *cfg, int fd, uint64_t size, hu_file_meta *m,
                           hu_upload_thumb *thumb) {
    thumb->data = NULL;
    thumb->len = 0;
    if (!cfg->media_metadata || size == 0 || size > MEDIA_MAX_BYTES)
        return;
    hu_media_ctx *ctx = thread_ctx();
    if (ctx == NULL)
        return;
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return;
    hu_media_limits lim = {.max_pixels = cfg->media_max_pixels, .want_thumbnail = cfg->thumbnails};
    hu_media_info info;
    int rc = hu_media_probe(ctx, map, (size_t)size, m->type, &lim, &info);
    munmap(map, (size_t)size);
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
