/* Downscaled decode of JPEG, PNG, WebP and GIF (first frame) to RGB8 with Debian's libjpeg-turbo,
 * libpng, libwebp and giflib, from a memory buffer. The size in the header is checked against
 * max_pixels before any pixel memory is allocated, so a decompression bomb costs microseconds.
 * Transparent pixels are composited on white. Reentrant: no global state. */
#ifndef HU_MEDIA_DECODE_H
#define HU_MEDIA_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "media_scale.h"

typedef enum { HU_IMG_NONE, HU_IMG_JPEG, HU_IMG_PNG, HU_IMG_WEBP, HU_IMG_GIF } hu_image_format;

typedef struct {
    uint64_t max_pixels;  /* header width * height above this: -E2BIG, nothing decoded */
    uint32_t target_side; /* the result's longer side is at most this (and near it) */
} hu_decode_opts;

/* The format we decode for a media type ("image/jpeg" ...), HU_IMG_NONE for any other. */
hu_image_format hu_image_format_of(const char *media_type);

/* Decodes buf as fmt. *width and *height get the header's size as soon as it is read (0 when
 * unreadable); *out gets the downscaled pixels on success. Returns 0, -EINVAL (corrupt or
 * truncated), -E2BIG (over max_pixels; width and height set), -ENOTSUP (format), -ENOMEM. */
int hu_decode_image(hu_image_format fmt, const void *buf, size_t len, const hu_decode_opts *o,
                    uint32_t *width, uint32_t *height, hu_image *out);

#endif
