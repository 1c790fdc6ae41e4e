/* hu_media_probe: magic type, then decode, BlurHash and thumbnail (see media.h). */
#include "media.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <magic.h>

#include "media_decode.h"
#include "thumbnail.h"

/* libmagic sees at most this much of a buffer. On text its regex rules scan what they are
 * given: 1.6 ms for a 64 KiB text upload (80 % of that upload's server CPU in make bench's
 * profile), 0.4-0.5 ms for 1 KiB; every signature of the types we verify (images, PDF,
 * archives) sits in the first bytes, and text is still told as text. */
#define MAGIC_BYTES_MAX HU_MEDIA_HEAD_BYTES
/* Text or not, and which encoding, from the first 256 bytes: on 1 KiB of text libmagic's
 * encoding scan took 460 us a call, on 256 bytes 250 us (the same types on our inputs). */
#define MAGIC_ENCODING_MAX ((size_t)256)

struct hu_media_ctx {
    magic_t magic;
};

int hu_media_ctx_new(hu_media_ctx **out)
{
    hu_media_ctx *ctx = calloc(1, sizeof *ctx);
    *out = NULL;
    if (ctx == NULL)
        return -ENOMEM;
    /* MAGIC_MIME_TYPE: "image/png", without the "; charset=" part. No decompression. */
    ctx->magic = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
    if (ctx->magic == NULL) {
        free(ctx);
        return -ENOMEM;
    }
    size_t bytes_max = MAGIC_BYTES_MAX, encoding_max = MAGIC_ENCODING_MAX;
    if (magic_load(ctx->magic, NULL) != 0 ||
        magic_setparam(ctx->magic, MAGIC_PARAM_BYTES_MAX, &bytes_max) != 0 ||
        magic_setparam(ctx->magic, MAGIC_PARAM_ENCODING_MAX, &encoding_max) != 0) {
        hu_media_ctx_free(ctx);
        return -ENOENT;
    }
    *out = ctx;
    return 0;
}

void hu_media_ctx_free(hu_media_ctx *ctx)
{
    if (ctx == NULL)
        return;
    magic_close(ctx->magic);
    free(ctx);
}

int hu_media_type_equal(const char *ct, const char *type)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n > 0 && n == strlen(type) && strncasecmp(ct, type, n) == 0;
}

/* Pixels to decode to: twice the thumbnail, so that its last shrink averages real pixels. */
static uint32_t work_side(const hu_media_limits *l)
{
    uint32_t t = l->thumb_max_side;
    return 2 * (t > HU_MEDIA_BLURHASH_SIDE ? t : HU_MEDIA_BLURHASH_SIDE);
}

static int limits_of(const hu_media_limits *in, hu_media_limits *l)
{
    static const hu_media_limits none;
    *l = in ? *in : none;
    if (l->max_pixels == 0)
        l->max_pixels = HU_MEDIA_MAX_PIXELS;
    if (l->thumb_max_side == 0)
        l->thumb_max_side = HU_MEDIA_THUMB_SIDE;
    if (l->bh_x == 0 && l->bh_y == 0) {
        l->bh_x = 4;
        l->bh_y = 3;
    }
    if (l->thumb_max_side < 16 || l->thumb_max_side > HU_MEDIA_THUMB_SIDE_MAX || l->bh_x < 1 ||
        l->bh_x > 9 || l->bh_y < 1 || l->bh_y > 9)
        return -EINVAL;
    return 0;
}

static void magic_type(hu_media_ctx *ctx, const void *buf, size_t len, char *type, size_t size)
{
    /* libmagic's text tests look at every byte they are given, whatever BYTES_MAX says */
    const char *t = magic_buffer(ctx->magic, buf, len < MAGIC_BYTES_MAX ? len : MAGIC_BYTES_MAX);
    if (t == NULL) /* a broken database, or out of memory */
        t = "";
    size_t n = strcspn(t, ";");
    if (n >= size)
        n = 0; /* a type this long is no media type */
    for (size_t i = 0; i < n; i++)
        type[i] = (char)tolower((unsigned char)t[i]);
    type[n] = '\0';
}

/* BlurHash and thumbnail of the decoded pixels. */
static int describe(const hu_image *work, const hu_media_limits *l, hu_media_info *out)
{
    hu_image small;
    int rc = hu_image_fit(work, HU_MEDIA_BLURHASH_SIDE, &small);
    if (rc < 0)
        return rc;
    rc = hu_blurhash_encode(small.rgb, small.w, small.h, l->bh_x, l->bh_y, out->blurhash,
                            sizeof out->blurhash);
    hu_image_free(&small);
    if (rc < 0)
        return rc;
    if (!l->want_thumbnail)
        return 0;
    rc = hu_thumbnail_webp(work, l->thumb_max_side, HU_THUMB_MAX_BYTES, &out->thumb,
                           &out->thumb_len);
    if (rc == 0)
        strcpy(out->thumb_type, "image/webp");
    return rc == -E2BIG ? 0 : rc; /* an oversized thumbnail is no thumbnail, not an error */
}

int hu_media_type(hu_media_ctx *ctx, const void *buf, size_t len, const char *declared_type,
                  hu_media_info *out)
{
    memset(out, 0, sizeof *out);
    if (buf == NULL && len > 0)
        return out->error = -EINVAL;
    magic_type(ctx, buf, len, out->type, sizeof out->type);
    out->type_matches = declared_type != NULL && out->type[0] != '\0' &&
                        hu_media_type_equal(declared_type, out->type);
    out->is_image = strncmp(out->type, "image/", 6) == 0;
    return hu_image_format_of(out->type) != HU_IMG_NONE;
}

int hu_media_describe(const void *buf, size_t len, const hu_media_limits *lim,
                      hu_media_info *out)
{
    hu_media_limits l;
    if (limits_of(lim, &l) < 0 || (buf == NULL && len > 0))
        return out->error = -EINVAL;
    hu_decode_opts o = {l.max_pixels, work_side(&l)};
    hu_image work;
    int rc = hu_decode_image(hu_image_format_of(out->type), buf, len, &o, &out->width,
                             &out->height, &work);
    if (rc == 0) {
        rc = describe(&work, &l, out);
        hu_image_free(&work);
    }
    if (rc < 0) {
        free(out->thumb);
        out->thumb = NULL;
        out->thumb_len = 0;
        out->thumb_type[0] = out->blurhash[0] = '\0';
        if (rc != -E2BIG)
            out->width = out->height = 0;
    }
    return out->error = rc;
}

int hu_media_probe(hu_media_ctx *ctx, const void *buf, size_t len, const char *declared_type,
                   const hu_media_limits *lim, hu_media_info *out)
{
    hu_media_limits l;
    memset(out, 0, sizeof *out);
    if (limits_of(lim, &l) < 0 || (buf == NULL && len > 0))
        return -EINVAL;
    int rc = hu_media_type(ctx, buf, len, declared_type, out);
    if (rc < 0)
        return rc;
    return hu_media_describe(buf, len, lim, out);
}

void hu_media_info_free(hu_media_info *info)
{
    free(info->thumb);
    info->thumb = NULL;
    info->thumb_len = 0;
}
