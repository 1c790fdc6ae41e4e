/* WebP thumbnail: WebPEncodeRGB at a fixed quality, copied into a malloc'd buffer so that the
 * caller frees it like any other (libwebp's output must go back to WebPFree). */
#include "thumbnail.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <webp/encode.h>

int hu_thumbnail_webp(const hu_image *img, unsigned max_side, size_t max_bytes,
                      unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (img->rgb == NULL || img->w == 0 || img->h == 0 || max_side == 0 ||
        max_side > WEBP_MAX_DIMENSION)
        return -EINVAL;
    hu_image small;
    int rc = hu_image_fit(img, max_side, &small);
    if (rc < 0)
        return rc;
    uint8_t *webp = NULL;
    size_t n = WebPEncodeRGB(small.rgb, (int)small.w, (int)small.h, (int)small.w * 3,
                             HU_THUMB_QUALITY, &webp);
    hu_image_free(&small);
    if (n == 0)
        rc = -ENOMEM;
    else if (n > max_bytes)
        rc = -E2BIG;
    else if ((*out = malloc(n)) == NULL)
        rc = -ENOMEM;
    else {
        memcpy(*out, webp, n);
        *out_len = n;
    }
    WebPFree(webp);
    return rc;
}
