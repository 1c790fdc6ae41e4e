/* Image metadata of an uploaded file, computed from its bytes alone: the type from its magic
 * bytes (libmagic), and for JPEG, PNG, WebP and GIF (first frame) the size, a BlurHash and a
 * small WebP thumbnail from a downscaled decode. Pure: input is a memory buffer (the caller
 * mmaps the file), output a struct; no I/O, no libuv.
 *
 * Threads: a hu_media_ctx owns a libmagic handle, which is not thread-safe. Give each thread
 * (each thread-pool worker) its own ctx; the rest is reentrant. */
#ifndef HU_MEDIA_H
#define HU_MEDIA_H

#include <stddef.h>
#include <stdint.h>

#include "blurhash.h"

#define HU_MEDIA_MAX_PIXELS 40000000ULL
#define HU_MEDIA_THUMB_SIDE 256
#define HU_MEDIA_THUMB_SIDE_MAX 1024
/* The BlurHash is computed on the decoded image shrunk to fit this square (it only keeps the
 * lowest frequencies; 64 px is plenty and costs a few hundred microseconds). */
#define HU_MEDIA_BLURHASH_SIDE 64

typedef struct hu_media_ctx hu_media_ctx;

/* Opens libmagic and loads its default database once. 0, -ENOMEM or -ENOENT (no database). */
int hu_media_ctx_new(hu_media_ctx **ctx);
void hu_media_ctx_free(hu_media_ctx *ctx);

/* A zero field means its default. */
typedef struct {
    uint64_t max_pixels;     /* width * height above this: not decoded (HU_MEDIA_MAX_PIXELS) */
    unsigned thumb_max_side; /* the thumbnail's longer side, 16..1024 (HU_MEDIA_THUMB_SIDE) */
    int want_thumbnail;
    unsigned bh_x, bh_y;     /* BlurHash components, 1..9 each (4, 3) */
} hu_media_limits;

typedef struct {
    char type[64];    /* from the magic bytes, e.g. "image/jpeg"; "" when libmagic failed */
    int type_matches; /* the declared media type (parameters ignored, any case) equals type */
    int is_image;     /* type is image/... (decoded or not) */
    uint32_t width, height; /* 0 unless decoded; on -E2BIG what the header claims */
    char blurhash[HU_BLURHASH_MAX_LEN + 1]; /* "" when none */
    unsigned char *thumb;   /* malloc'd, NULL when not wanted or over HU_THUMB_MAX_BYTES */
    size_t thumb_len;
    char thumb_type[16];    /* "image/webp" when thumb is set */
    int error; /* 0; -EINVAL corrupt or truncated; -E2BIG over max_pixels; -ENOTSUP not an
                  image we decode; -ENOMEM */
} hu_media_info;

/* libmagic sees a file's first this many bytes (media.c says why). */
#define HU_MEDIA_HEAD_BYTES 1024

/* The first step of hu_media_probe, alone: fills out's type fields from the first bytes of
 * a file (buf, len: at least its first HU_MEDIA_HEAD_BYTES, or all of it), the rest zero.
 * Returns 1 when the type is an image format hu_media_describe decodes, 0 when not,
 * -EINVAL. A caller can then map the whole file only for the images. */
int hu_media_type(hu_media_ctx *ctx, const void *buf, size_t len, const char *declared_type,
                  hu_media_info *out);
/* The second step: decodes the whole file (len bytes at buf) as the type hu_media_type put
 * in out, and fills its size, BlurHash and thumbnail. Returns out->error. */
int hu_media_describe(const void *buf, size_t len, const hu_media_limits *lim,
                      hu_media_info *out);

/* Both steps: fills *out from len bytes at buf; declared_type is the client's Content-Type (may be NULL).
 * Returns out->error, or -EINVAL for bad limits (out is then empty). Free with
 * hu_media_info_free whatever it returned. */
int hu_media_probe(hu_media_ctx *ctx, const void *buf, size_t len, const char *declared_type,
                   const hu_media_limits *lim, hu_media_info *out);
void hu_media_info_free(hu_media_info *info);

/* The media type of a Content-Type value equals type: "Image/PNG; x=y" matches "image/png". */
int hu_media_type_equal(const char *content_type, const char *type);

#endif
