/* Pixel buffers and the two ways they shrink: a streaming box filter that decoders feed row by
 * row (so a large image never sits in memory whole), and an area-average resize of a small
 * buffer. Pure arithmetic, no allocation beyond the output and two accumulator rows. */
#ifndef HU_MEDIA_SCALE_H
#define HU_MEDIA_SCALE_H

#include <stdint.h>

/* An RGB8 image, rows packed (stride w*3); rgb is malloc'd. */
typedef struct {
    uint32_t w, h;
    unsigned char *rgb;
} hu_image;

void hu_image_free(hu_image *img);

/* Box filter by an integer factor f = ceil(max(in_w, in_h) / target_side) (1 when the image is
 * no larger than target_side): out is ceil(in_w/f) x ceil(in_h/f), edge blocks average the
 * pixels they have. */
typedef struct {
    uint32_t in_w, in_h, f;
    uint32_t rows_in;   /* input rows pushed so far */
    uint32_t rows_acc;  /* input rows in the accumulator */
    uint32_t rows_col;  /* input rows in col, not yet in acc */
    uint16_t *col;      /* in_w * 3 column sums of up to 257 rows (one add per byte per row) */
    uint64_t *acc;      /* out.w * 3 block sums */
    hu_image out;
} hu_row_scaler;

/* 0, -EINVAL (an empty image), -ENOMEM. */
int hu_row_scaler_init(hu_row_scaler *s, uint32_t in_w, uint32_t in_h, uint32_t target_side);
/* One RGB8 input row of in_w pixels; rows past in_h are ignored. */
void hu_row_scaler_push(hu_row_scaler *s, const unsigned char *rgb);
/* Moves the result to *out once all in_h rows came: 0, or -EINVAL (rows missing). */
int hu_row_scaler_finish(hu_row_scaler *s, hu_image *out);
void hu_row_scaler_free(hu_row_scaler *s);

/* Area-average resize of src to fit in max_side x max_side, aspect kept, never enlarged (a copy
 * when it already fits): 0 or -ENOMEM. */
int hu_image_fit(const hu_image *src, uint32_t max_side, hu_image *out);

/* Composites n RGBA8 pixels on white into RGB8 (rgb may equal rgba: it runs forward). */
void hu_rgba_on_white(const unsigned char *rgba, unsigned char *rgb, uint32_t n);

#endif
