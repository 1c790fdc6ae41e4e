/* Streaming box filter and area-average resize (see media_scale.h). */
#include "media_scale.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void hu_image_free(hu_image *img)
{
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

int hu_row_scaler_init(hu_row_scaler *s, uint32_t in_w, uint32_t in_h, uint32_t target_side)
{
    memset(s, 0, sizeof *s);
    if (in_w == 0 || in_h == 0 || target_side == 0)
        return -EINVAL;
    uint32_t side = in_w > in_h ? in_w : in_h;
    s->in_w = in_w;
    s->in_h = in_h;
    s->f = side <= target_side ? 1 : (uint32_t)(((uint64_t)side + target_side - 1) / target_side);
    s->out.w = (uint32_t)(((uint64_t)in_w + s->f - 1) / s->f);
    s->out.h = (uint32_t)(((uint64_t)in_h + s->f - 1) / s->f);
    s->acc = calloc((size_t)s->out.w * 3, sizeof *s->acc);
    s->col = s->f > 1 ? calloc((size_t)in_w * 3, sizeof *s->col) : NULL;
    s->out.rgb = malloc((size_t)s->out.w * s->out.h * 3);
    if (s->acc == NULL || (s->f > 1 && s->col == NULL) || s->out.rgb == NULL) {
        hu_row_scaler_free(s);
        return -ENOMEM;
    }
    return 0;
}

/* 257 rows of 255 fill a 16-bit column sum */
#define COL_ROWS_MAX (UINT16_MAX / 255)

/* Adds the column sums to their blocks' sums, f columns each, and clears them. */
static void fold(hu_row_scaler *s)
{
    const uint16_t *p = s->col;
    for (uint32_t ox = 0, x = 0; ox < s->out.w; ox++) {
        uint32_t end = x + s->f < s->in_w ? x + s->f : s->in_w;
        uint64_t r = 0, g = 0, b = 0;
        for (; x < end; x++, p += 3) {
            r += p[0];
            g += p[1];
            b += p[2];
        }
        s->acc[ox * 3] += r;
        s->acc[ox * 3 + 1] += g;
        s->acc[ox * 3 + 2] += b;
    }
    memset(s->col, 0, (size_t)s->in_w * 3 * sizeof *s->col);
    s->rows_col = 0;
}

/* col[i] += row[i], in blocks of 16 that the compiler turns into vector adds at -O2 (restrict:
 * no overlap to check; a fixed count: no remainder to handle). */
static void add_row(uint16_t *restrict col, const unsigned char *restrict row, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t k = 0; k < 16; k++)
            col[i + k] = (uint16_t)(col[i + k] + row[i + k]);
    for (; i < n; i++)
        col[i] = (uint16_t)(col[i] + row[i]);
}

/* Writes the accumulated block row as output row (rows_in - 1) / f. */
static void emit(hu_row_scaler *s)
{
    uint32_t y = (s->rows_in - 1) / s->f;
    unsigned char *dst = s->out.rgb + (size_t)y * s->out.w * 3;
    for (uint32_t x = 0; x < s->out.w; x++) {
        uint32_t cols = s->f;
        if ((uint64_t)(x + 1) * s->f > s->in_w)
            cols = s->in_w - x * s->f;
        uint64_t n = (uint64_t)cols * s->rows_acc;
        for (int c = 0; c < 3; c++) {
            dst[x * 3 + c] = (unsigned char)((s->acc[x * 3 + c] + n / 2) / n);
            s->acc[x * 3 + c] = 0;
        }
    }
    s->rows_acc = 0;
}

void hu_row_scaler_push(hu_row_scaler *s, const unsigned char *rgb)
{
    if (s->rows_in >= s->in_h)
        return;
    if (s->f == 1) {
        memcpy(s->out.rgb + (size_t)s->rows_in * s->in_w * 3, rgb, (size_t)s->in_w * 3);
        s->rows_in++;
        return;
    }
    /* rows add up column by column; every f rows, or before a 16-bit sum could overflow, the
     * columns add up f by f into the output pixels' sums */
    add_row(s->col, rgb, (size_t)s->in_w * 3);
    s->rows_in++;
    s->rows_acc++;
    int last = s->rows_acc == s->f || s->rows_in == s->in_h;
    if (++s->rows_col == COL_ROWS_MAX || last)
        fold(s);
    if (last)
        emit(s);
}

int hu_row_scaler_finish(hu_row_scaler *s, hu_image *out)
{
    if (s->out.rgb == NULL || s->rows_in < s->in_h)
        return -EINVAL;
    *out = s->out;
    s->out.rgb = NULL;
    return 0;
}

void hu_row_scaler_free(hu_row_scaler *s)
{
    free(s->acc);
    free(s->col);
    s->acc = NULL;
    s->col = NULL;
    hu_image_free(&s->out);
}

int hu_image_fit(const hu_image *src, uint32_t max_side, hu_image *out)
{
    uint32_t w = src->w, h = src->h;
    if (max_side == 0)
        max_side = 1;
    if (w > max_side || h > max_side) {
        /* the longer side becomes max_side; the other keeps the ratio, at least 1 px */
        if (w >= h) {
            h = (uint32_t)(((uint64_t)h * max_side + w / 2) / w);
            w = max_side;
        } else {
            w = (uint32_t)(((uint64_t)w * max_side + h / 2) / h);
            h = max_side;
        }
        w += w == 0;
        h += h == 0;
    }
    out->rgb = malloc((size_t)w * h * 3);
    if (out->rgb == NULL)
        return -ENOMEM;
    out->w = w;
    out->h = h;
    /* destination pixel (x, y) averages the source rectangle [x*sw/w, (x+1)*sw/w) x ... */
    for (uint32_t y = 0; y < h; y++) {
        uint32_t y0 = (uint32_t)((uint64_t)y * src->h / h);
        uint32_t y1 = (uint32_t)((uint64_t)(y + 1) * src->h / h);
        for (uint32_t x = 0; x < w; x++) {
            uint32_t x0 = (uint32_t)((uint64_t)x * src->w / w);
            uint32_t x1 = (uint32_t)((uint64_t)(x + 1) * src->w / w);
            uint64_t sum[3] = {0, 0, 0};
            for (uint32_t sy = y0; sy < y1; sy++) {
                const unsigned char *p = src->rgb + ((size_t)sy * src->w + x0) * 3;
                for (uint32_t sx = x0; sx < x1; sx++, p += 3) {
                    sum[0] += p[0];
                    sum[1] += p[1];
                    sum[2] += p[2];
                }
            }
            uint64_t n = (uint64_t)(x1 - x0) * (y1 - y0);
            unsigned char *d = out->rgb + ((size_t)y * w + x) * 3;
            for (int c = 0; c < 3; c++)
                d[c] = (unsigned char)((sum[c] + n / 2) / n);
        }
    }
    return 0;
}

void hu_rgba_on_white(const unsigned char *rgba, unsigned char *rgb, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        unsigned a = rgba[i * 4 + 3];
        for (int c = 0; c < 3; c++)
            rgb[i * 3 + c] = (unsigned char)((rgba[i * 4 + c] * a + 255 * (255 - a) + 127) / 255);
    }
}
