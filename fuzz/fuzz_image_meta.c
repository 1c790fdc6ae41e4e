/* Fuzzes the image-metadata entry point: libmagic, then whichever decoder the bytes name
 * (libjpeg-turbo, libpng, libwebp, giflib), the BlurHash and the WebP thumbnail. Whatever comes
 * in: no crash, no leak, and a success has the whole of its metadata. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media.h"
#include "thumbnail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static hu_media_ctx *ctx;
    if (ctx == NULL && hu_media_ctx_new(&ctx) != 0)
        abort(); /* no libmagic database: nothing to fuzz */
    /* a smaller pixel limit than the default keeps each run fast; the bounds are the same code */
    hu_media_limits lim = {4000000, 64, 1, 4, 3};
    hu_media_info m;
    int rc = hu_media_probe(ctx, data, size, "image/png", &lim, &m);
    if (rc != m.error)
        abort();
    if (rc == 0 && (m.width == 0 || m.height == 0 || strlen(m.blurhash) != 28 ||
                    m.thumb_len > HU_THUMB_MAX_BYTES || (m.thumb == NULL) != (m.thumb_len == 0)))
        abort();
    if (rc != 0 && (m.blurhash[0] != '\0' || m.thumb != NULL))
        abort();
    hu_media_info_free(&m);
    return 0;
}
