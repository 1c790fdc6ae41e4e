/* A small WebP thumbnail of already-decoded pixels. */
#ifndef HU_THUMBNAIL_H
#define HU_THUMBNAIL_H

#include <stddef.h>

#include "media_scale.h"

#define HU_THUMB_QUALITY 70
#define HU_THUMB_MAX_BYTES (64 * 1024)

/* Shrinks img to fit max_side x max_side (never enlarges) and encodes it as lossy WebP.
 * *out is malloc'd. Returns 0, -E2BIG (the encoding exceeds max_bytes), -ENOMEM, -EINVAL. */
int hu_thumbnail_webp(const hu_image *img, unsigned max_side, size_t max_bytes,
                      unsigned char **out, size_t *out_len);

#endif
