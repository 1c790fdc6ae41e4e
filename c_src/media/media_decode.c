/* The four decoders behind hu_decode_image (see media_decode.h). Each reads the header, checks
 * the pixel count, then feeds RGB8 rows to a hu_row_scaler (JPEG and WebP first shrink in the
 * codec itself). Buffers live in a struct owned by the dispatcher, so the libjpeg and libpng
 * longjmp error paths leak nothing and need no volatile locals. */
#include "media_decode.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gif_lib.h>
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

/* A progressive JPEG can hold thousands of tiny scans, each a full pass over the coefficients. */
#define JPEG_MAX_SCANS 100
/* libjpeg's working memory (a progressive image keeps all its coefficients). */
#define JPEG_MAX_MEMORY (256L << 20)

typedef struct {
    hu_row_scaler sc;
    unsigned char *row;  /* one input row */
    unsigned char *full; /* a whole frame, when the format interlaces */
    void *rows;          /* row pointers into full */
} dec_bufs;

typedef struct {
    const hu_decode_opts *o;
    uint32_t *width, *height;
    dec_bufs *b;
} dec_job;

static int too_big(const dec_job *j, uint64_t w, uint64_t h)
{
    *j->width = w > UINT32_MAX ? UINT32_MAX : (uint32_t)w;
    *j->height = h > UINT32_MAX ? UINT32_MAX : (uint32_t)h;
    if (w == 0 || h == 0)
        return -EINVAL;
    return w * h > j->o->max_pixels ? -E2BIG : 0;
}

hu_image_format hu_image_format_of(const char *t)
{
    static const struct {
        const char *type;
        hu_image_format fmt;
    } known[] = {{"image/jpeg", HU_IMG_JPEG}, {"image/png", HU_IMG_PNG},
                 {"image/webp", HU_IMG_WEBP}, {"image/gif", HU_IMG_GIF}};
    for (size_t i = 0; t != NULL && i < sizeof known / sizeof known[0]; i++)
        if (strcasecmp(t, known[i].type) == 0)
            return known[i].fmt;
    return HU_IMG_NONE;
}

/* ---- JPEG ------------------------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int truncated;
} jpeg_err;

static void jpeg_fail(j_common_ptr c)
{
    longjmp(((jpeg_err *)c->err)->jb, 1);
}

/* Warnings are not printed; a truncated file counts as corrupt (libjpeg would pad it grey). */
static void jpeg_warn(j_common_ptr c, int level)
{
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF)
        ((jpeg_err *)c->err)->truncated = 1;
}

static void jpeg_progress(j_common_ptr c)
{
    if (c->is_decompressor && ((j_decompress_ptr)c)->input_scan_number > JPEG_MAX_SCANS)
        c->err->error_exit(c);
}

/* The scans of a JPEG counted from its marker structure, without decoding: marker segments are
 * skipped by their lengths, entropy-coded data up to the next marker (FF 00 is a stuffed byte,
 * FF D0..D7 a restart marker, FF FF a fill byte; stray bytes between markers are skipped, as
 * libjpeg does). Returns the number of SOS markers before EOI, or -1 when the file ends first. */
static int jpeg_scans_to_eoi(const unsigned char *p, size_t len)
{
    int scans = 0;
    for (size_t i = 2; i + 1 < len;) { /* after SOI, which libjpeg has read */
        const unsigned char *ff = memchr(p + i, 0xff, len - i - 1);
        if (ff == NULL)
            return -1;
        i = (size_t)(ff - p);
        unsigned m = p[i + 1];
        if (m == 0xd9)
            return scans;
        if (m == 0xff)
            i++;
        else if (m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd7))
            i += 2; /* no length: a stuffed byte, TEM, RSTn */
        else if (i + 4 > len)
            return -1;
        else {
            scans += m == 0xda;
            i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]);
        }
    }
    return -1;
}

/* Every component's DC coefficients are in, to their last bit or all but it: a first DC scan
 * with successive approximation leaves the last bit to a refinement scan far into the file, and
 * that bit is worth an eighth of the DC quantiser in grey levels (about one at quality 75). */
static int jpeg_dc_ready(j_decompress_ptr ci)
{
    for (int c = 0; c < ci->num_components; c++)
        if (ci->coef_bits[c][0] < 0 || ci->coef_bits[c][0] > 1)
            return 0;
    return 1;
}

/* At 1/8 the IDCT reads the DC coefficient alone, and a progressive JPEG sends the DCs of all
 * components first, in a few percent of the file: in buffered-image mode the input stops after
 * the scan that completes them, and the rest of the file is only walked, for the truncation and
 * scan-count checks a full decode would make. A 12-megapixel progressive photo costs a few ms
 * instead of over 100 (the ACs' entropy decoding). */
static int jpeg_start_dc_only(j_decompress_ptr ci, const void *buf, size_t len)
{
    int scans = jpeg_scans_to_eoi(buf, len);
    if (scans < 0 || scans > JPEG_MAX_SCANS)
        return -EINVAL;
    ci->buffered_image = TRUE;
    ci->do_block_smoothing = FALSE; /* would guess the missing ACs from the neighbours' DCs */
    jpeg_start_decompress(ci);
    int rc;
    do
        rc = jpeg_consume_input(ci);
    while (rc != JPEG_REACHED_EOI && rc != JPEG_SUSPENDED &&
           !(rc == JPEG_SCAN_COMPLETED && jpeg_dc_ready(ci)));
    jpeg_start_output(ci, ci->input_scan_number);
    return 0;
}

static int decode_jpeg(const void *buf, size_t len, dec_job *j)
{
    struct jpeg_decompress_struct ci;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_progress};
    jpeg_err err;
    ci.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_fail;
    err.pub.emit_message = jpeg_warn;
    err.truncated = 0;
    if (setjmp(err.jb)) {
        jpeg_destroy_decompress(&ci);
        return -EINVAL;
    }
    jpeg_create_decompress(&ci);
    ci.progress = &progress;
    ci.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    jpeg_mem_src(&ci, buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    int rc = too_big(j, ci.image_width, ci.image_height);
    if (rc < 0) {
        jpeg_destroy_decompress(&ci);
        return rc;
    }
    /* The IDCT shrinks by n/8 as it decodes, and a scaled IDCT is itself a low-pass filter: it
     * need only reach half of target_side, which is twice what the box filter after it needs.
     * Only 1/8, 1/4 and 1/2: libjpeg-turbo has SIMD code for those (and 1/8 reads the DC alone);
     * a 12-megapixel photo comes out at 500 x 375, all it takes for a 256 px thumbnail. */
    int cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    uint32_t need = (j->o->target_side + 1) / 2;
    ci.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    ci.scale_denom = 8;
    for (ci.scale_num = 1; ci.scale_num < 8; ci.scale_num *= 2) {
        jpeg_calc_output_dimensions(&ci);
        if (ci.output_width >= need || ci.output_height >= need)
            break;
    }
    int dc_only = ci.progressive_mode && ci.scale_num == 1;
    if (dc_only)
        rc = jpeg_start_dc_only(&ci, buf, len);
    else
        jpeg_start_decompress(&ci);
    uint32_t w = ci.output_width, h = ci.output_height;
    if (rc < 0 || (rc = hu_row_scaler_init(&j->b->sc, w, h, j->o->target_side)) < 0 ||
        (j->b->row = malloc((size_t)w * 4)) == NULL) {
        jpeg_destroy_decompress(&ci);
        return rc < 0 ? rc : -ENOMEM;
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW r = j->b->row;
        jpeg_read_scanlines(&ci, &r, 1);
        if (cmyk) /* Adobe's inverted CMYK, as Photoshop writes it */
            for (uint32_t x = 0; x < w; x++) {
                unsigned k = r[x * 4 + 3];
                for (int c = 0; c < 3; c++)
                    r[x * 3 + c] = (unsigned char)((r[x * 4 + c] * k + 127) / 255);
            }
        hu_row_scaler_push(&j->b->sc, r);
    }
    /* dc_only left the rest of the input unread on purpose */
    if (!err.truncated && !dc_only)
        jpeg_finish_decompress(&ci);
    rc = err.truncated ? -EINVAL : 0;
    jpeg_destroy_decompress(&ci);
    return rc;
}

/* ---- PNG -------------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    size_t left;
} mem_src;

static void png_read_mem(png_structp png, png_bytep dst, size_t n)
{
    mem_src *s = png_get_io_ptr(png);
    if (n > s->left)
        png_error(png, "truncated");
    memcpy(dst, s->p, n);
    s->p += n;
    s->left -= n;
}

static void png_fail(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static int decode_png(const void *buf, size_t len, dec_job *j)
{
    mem_src src = {buf, len};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        return -ENOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return -EINVAL;
    }
    png_set_read_fn(png, &src, png_read_mem);
    /* No chunk CRCs, no zlib Adler-32: a tenth of the decode, and they only catch bytes damaged
     * after the encoder, which a placeholder and a thumbnail need not refuse (a truncated or
     * undecodable stream still is) */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
#ifdef PNG_IGNORE_ADLER32
    png_set_option(png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int rc = too_big(j, w, h);
    if (rc < 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }
    /* every colour type and depth becomes RGB8, or RGBA8 composited on white when the image
     * has transparency (an alpha channel or a tRNS chunk) */
    int alpha = (png_get_color_type(png, info) & PNG_COLOR_MASK_ALPHA) ||
                png_get_valid(png, info, PNG_INFO_tRNS);
    size_t px = alpha ? 4 : 3;
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_gray_to_rgb(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * px)
        png_error(png, "unexpected row size");
    if ((rc = hu_row_scaler_init(&j->b->sc, w, h, j->o->target_side)) < 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }
    if (passes == 1) { /* row by row: only one input row in memory */
        if ((j->b->row = malloc((size_t)w * px)) == NULL)
            png_error(png, "out of memory");
        for (uint32_t y = 0; y < h; y++) {
            png_read_row(png, j->b->row, NULL);
            if (alpha)
                hu_rgba_on_white(j->b->row, j->b->row, w);
            hu_row_scaler_push(&j->b->sc, j->b->row);
        }
    } else { /* Adam7 fills rows over seven passes: the whole image, bounded by max_pixels */
        png_bytep *rows = j->b->rows = malloc(sizeof(png_bytep) * h);
        if (rows == NULL || (j->b->full = malloc((size_t)w * h * px)) == NULL)
            png_error(png, "out of memory");
        for (uint32_t y = 0; y < h; y++)
            rows[y] = j->b->full + (size_t)y * w * px;
        png_read_image(png, rows);
        for (uint32_t y = 0; y < h; y++) {
            if (alpha)
                hu_rgba_on_white(rows[y], rows[y], w);
            hu_row_scaler_push(&j->b->sc, rows[y]);
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

/* ---- WebP ------------------------------------------------------------------------------- */

static int decode_webp(const void *buf, size_t len, dec_job *j)
{
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg) || WebPGetFeatures(buf, len, &cfg.input) != VP8_STATUS_OK)
        return -EINVAL;
    int rc = too_big(j, (uint32_t)cfg.input.width, (uint32_t)cfg.input.height);
    if (rc < 0)
        return rc;
    const uint8_t *data = buf;
    size_t size = len;
    WebPDemuxer *demux = NULL;
    if (cfg.input.has_animation) { /* the first frame's own bitstream */
        WebPData whole = {buf, len};
        WebPIterator it;
        if ((demux = WebPDemux(&whole)) == NULL || !WebPDemuxGetFrame(demux, 1, &it)) {
            WebPDemuxDelete(demux);
            return -EINVAL;
        }
        data = it.fragment.bytes;
        size = it.fragment.size;
        WebPDemuxReleaseIterator(&it);
        if (WebPGetFeatures(data, size, &cfg.input) != VP8_STATUS_OK) {
            WebPDemuxDelete(demux);
            return -EINVAL;
        }
    }
    /* libwebp scales while it decodes: straight to the target size */
    uint32_t w = (uint32_t)cfg.input.width, h = (uint32_t)cfg.input.height, t = j->o->target_side;
    if (w > t || h > t) {
        cfg.options.use_scaling = 1;
        cfg.options.scaled_width = (int)(w >= h ? t : (uint32_t)(((uint64_t)w * t + h / 2) / h));
        cfg.options.scaled_height = (int)(h > w ? t : (uint32_t)(((uint64_t)h * t + w / 2) / w));
        cfg.options.scaled_width += cfg.options.scaled_width == 0;
        cfg.options.scaled_height += cfg.options.scaled_height == 0;
    }
    int alpha = cfg.input.has_alpha;
    cfg.output.colorspace = alpha ? MODE_RGBA : MODE_RGB;
    if (WebPDecode(data, size, &cfg) != VP8_STATUS_OK) {
        rc = -EINVAL;
    } else {
        const WebPRGBABuffer *o = &cfg.output.u.RGBA;
        uint32_t ow = (uint32_t)cfg.output.width, oh = (uint32_t)cfg.output.height;
        if ((rc = hu_row_scaler_init(&j->b->sc, ow, oh, t)) == 0 &&
            (j->b->row = malloc((size_t)ow * 4)) == NULL)
            rc = -ENOMEM;
        for (uint32_t y = 0; rc == 0 && y < oh; y++) {
            const uint8_t *row = o->rgba + (size_t)y * (size_t)o->stride;
            if (alpha)
                hu_rgba_on_white(row, j->b->row, ow);
            hu_row_scaler_push(&j->b->sc, alpha ? j->b->row : row);
        }
    }
    WebPFreeDecBuffer(&cfg.output);
    WebPDemuxDelete(demux);
    return rc;
}

/* ---- GIF -------------------------------------------------------------------------------- */

static int gif_read_mem(GifFileType *g, GifByteType *dst, int n)
{
    mem_src *s = g->UserData;
    size_t k = n < 0 ? 0 : (size_t)n;
    if (k > s->left)
        k = s->left;
    memcpy(dst, s->p, k);
    s->p += k;
    s->left -= k;
    return (int)k;
}

/* Reads the first frame's indices into b->full; composes it on a white canvas row by row. */
static int gif_first_frame(GifFileType *g, int transparent, dec_job *j)
{
    const GifImageDesc *d = &g->Image;
    const ColorMapObject *cmap = d->ColorMap ? d->ColorMap : g->SColorMap;
    uint32_t fw = (uint32_t)d->Width, fh = (uint32_t)d->Height, w = (uint32_t)g->SWidth;
    if (cmap == NULL || d->Width <= 0 || d->Height <= 0 || d->Left < 0 || d->Top < 0)
        return -EINVAL;
    if ((uint64_t)fw * fh > j->o->max_pixels)
        return -E2BIG;
    unsigned char *idx = j->b->full = malloc((size_t)fw * fh);
    int rc = hu_row_scaler_init(&j->b->sc, w, (uint32_t)g->SHeight, j->o->target_side);
    if (rc < 0 || idx == NULL || (j->b->row = malloc((size_t)w * 3)) == NULL)
        return rc < 0 ? rc : -ENOMEM;
    static const uint32_t start[] = {0, 4, 2, 1}, step[] = {8, 8, 4, 2};
    for (int pass = d->Interlace ? 0 : 3; pass < 4; pass++)
        for (uint32_t y = d->Interlace ? start[pass] : 0; y < fh; y += d->Interlace ? step[pass] : 1)
            if (DGifGetLine(g, idx + (size_t)y * fw, (int)fw) == GIF_ERROR)
                return -EINVAL;
    for (uint32_t y = 0; y < (uint32_t)g->SHeight; y++) {
        unsigned char *row = j->b->row;
        memset(row, 255, (size_t)w * 3);
        if (y >= (uint32_t)d->Top && y - (uint32_t)d->Top < fh)
            for (uint32_t x = (uint32_t)d->Left; x < w && x - (uint32_t)d->Left < fw; x++) {
                int i = idx[(size_t)(y - (uint32_t)d->Top) * fw + (x - (uint32_t)d->Left)];
                if (i == transparent || i >= cmap->ColorCount)
                    continue;
                row[x * 3] = cmap->Colors[i].Red;
                row[x * 3 + 1] = cmap->Colors[i].Green;
                row[x * 3 + 2] = cmap->Colors[i].Blue;
            }
        hu_row_scaler_push(&j->b->sc, row);
    }
    return 0;
}

static int decode_gif(const void *buf, size_t len, dec_job *j)
{
    mem_src src = {buf, len};
    int err = 0, transparent = NO_TRANSPARENT_COLOR, rc = -EINVAL;
    GifFileType *g = DGifOpen(&src, gif_read_mem, &err);
    if (g == NULL)
        return err == D_GIF_ERR_NOT_ENOUGH_MEM ? -ENOMEM : -EINVAL;
    if ((rc = too_big(j, (uint32_t)g->SWidth, (uint32_t)g->SHeight)) < 0)
        goto out;
    rc = -EINVAL;
    for (;;) {
        GifRecordType type;
        if (DGifGetRecordType(g, &type) == GIF_ERROR)
            break;
        if (type == IMAGE_DESC_RECORD_TYPE) {
            if (DGifGetImageDesc(g) != GIF_ERROR)
                rc = gif_first_frame(g, transparent, j);
            break;
        }
        if (type == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR)
                break;
            GraphicsControlBlock gcb;
            if (code == GRAPHICS_EXT_FUNC_CODE && ext != NULL && ext[0] >= 4 &&
                DGifExtensionToGCB(ext[0], ext + 1, &gcb) == GIF_OK)
                transparent = gcb.TransparentColor;
            while (ext != NULL)
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR)
                    goto out;
            continue;
        }
        break; /* the terminator before any image, or garbage */
    }
out:
    DGifCloseFile(g, &err);
    return rc;
}

/* ---- dispatch --------------------------------------------------------------------------- */

int hu_decode_image(hu_image_format fmt, const void *buf, size_t len, const hu_decode_opts *o,
                    uint32_t *width, uint32_t *height, hu_image *out)
{
    dec_bufs b;
    dec_job j = {o, width, height, &b};
    int rc;
    memset(&b, 0, sizeof b);
    memset(out, 0, sizeof *out);
    *width = *height = 0;
    switch (fmt) {
    case HU_IMG_JPEG: rc = decode_jpeg(buf, len, &j); break;
    case HU_IMG_PNG: rc = decode_png(buf, len, &j); break;
    case HU_IMG_WEBP: rc = decode_webp(buf, len, &j); break;
    case HU_IMG_GIF: rc = decode_gif(buf, len, &j); break;
    default: rc = -ENOTSUP; break;
    }
    if (rc == 0)
        rc = hu_row_scaler_finish(&b.sc, out);
    hu_row_scaler_free(&b.sc);
    free(b.row);
    free(b.full);
    free(b.rows);
    return rc;
}
