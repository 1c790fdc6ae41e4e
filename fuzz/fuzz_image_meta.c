/* Fuzzes the image-metadata entry point: libmagic, then whichever decoder the bytes name
 * (libjpeg-turbo, libpng, libwebp, giflib), the BlurHash and the WebP thumbnail. Whatever comes
 * in: no crash, no leak, and a success has the whole of its metadata. Then the same decoder
 * again at a 16 px target, so that small inputs take the shrinking paths too (JPEG at 1/8 and a
 * progressive one's DC scans only, libwebp's scaling, the box filter by large factors). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media.h"
#include "media_decode.h"
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
    hu_decode_opts o = {lim.max_pixels, 16};
    uint32_t w, h;
    hu_image img;
    rc = hu_decode_image(hu_image_format_of(m.type), data, size, &o, &w, &h, &img);
    if (rc == 0 && (img.rgb == NULL || img.w == 0 || img.h == 0 || img.w > 16 || img.h > 16))
        abort();
    hu_image_free(&img);
    hu_media_info_free(&m);
    return 0;
}
