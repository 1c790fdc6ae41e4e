/* Image metadata (c_src/media): sizes of every fixture format, corrupt and truncated files,
 * decompression bombs refused from the header, the magic type against the declared one,
 * non-images, the thumbnail, the BlurHash's shape.
 *
 * Two more modes, for test/blackbox/test_blurhash_vectors.py and for measurements:
 *   test_media --blurhash-vectors   one line per vector: name w h cx cy hash rgb-hex
 *                                   (each fixture's BlurHash pixels, and synthetic ones)
 *   test_media --bench N FILE...    median wall and CPU time of hu_media_probe with a thumbnail
 *                                   (CPU time: the thread's own, steadier on a busy machine) */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <webp/decode.h>

#include "blurhash.h"
#include "check.h"
#include "codec.h"
#include "media.h"
#include "media_decode.h"
#include "thumbnail.h"

static hu_media_ctx *ctx;
static char fixtures[PATH_MAX + 32];

/* test/fixtures/media, from this binary's place (build/<variant>/test/test_media), else from
 * the current directory (test/run runs tests from the checkout). */
static int find_fixtures(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    int up = 0;
    exe[n > 0 ? n : 0] = '\0';
    for (char *slash; up < 4 && (slash = strrchr(exe, '/')) != NULL; up++)
        *slash = '\0';
    snprintf(fixtures, sizeof fixtures, "%s/test/fixtures/media", exe);
    if (up < 4 || access(fixtures, R_OK) != 0)
        snprintf(fixtures, sizeof fixtures, "test/fixtures/media");
    return access(fixtures, R_OK);
}

static unsigned char *slurp(const char *name, size_t *len)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", fixtures, name);
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n)
        *len = (size_t)n;
    else {
        fprintf(stderr, "cannot read %s\n", path);
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    return buf;
}

static double clock_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

static const struct {
    const char *file, *type;
    uint32_t w, h;
} images[] = {
    {"baseline.jpg", "image/jpeg", 320, 240},    {"progressive.jpg", "image/jpeg", 300, 200},
    {"gray.jpg", "image/jpeg", 160, 120},        {"cmyk.jpg", "image/jpeg", 120, 90},
    {"rgba.png", "image/png", 200, 150},         {"palette.png", "image/png", 240, 160},
    {"gray.png", "image/png", 100, 80},          {"rgb16.png", "image/png", 100, 80},
    {"interlaced.png", "image/png", 96, 64},     {"lossy.webp", "image/webp", 320, 240},
    {"lossless.webp", "image/webp", 200, 150},   {"animated.webp", "image/webp", 160, 120},
    {"animated.gif", "image/gif", 160, 120},     {"interlaced.gif", "image/gif", 64, 48},
    {"plain.gif", "image/gif", 64, 48},
};
#define N_IMAGES (sizeof images / sizeof images[0])

static const hu_media_limits defaults = {0, 0, 0, 0, 0};

TEST(size_type_and_blurhash_of_every_format)
{
    for (size_t i = 0; i < N_IMAGES; i++) {
        size_t len;
        unsigned char *buf = slurp(images[i].file, &len);
        CHECK(buf != NULL);
        hu_media_info m;
        int rc = hu_media_probe(ctx, buf, len, images[i].type, &defaults, &m);
        free(buf);
        if (rc != 0)
            fprintf(stderr, "%s\n", images[i].file);
        CHECK_INT(rc, 0);
        CHECK_STR(m.type, images[i].type);
        CHECK_INT(m.type_matches, 1);
        CHECK_INT(m.is_image, 1);
        CHECK_INT(m.width, images[i].w);
        CHECK_INT(m.height, images[i].h);
        CHECK_INT(strlen(m.blurhash), 28); /* 4 x 3 components */
        CHECK(m.thumb == NULL);            /* not asked for */
        hu_media_info_free(&m);
    }
}

/* The pixels behind the hash: the centre is the yellow disc, the top left corner red. In the
 * RGBA picture (alpha 0 at the top, 255 at the bottom) both are composited on white: the corner
 * white, the centre half way to it. The second, green frame of an animation is never seen. */
TEST(decoded_pixels_are_the_first_frame_on_white)
{
    static const struct {
        const char *file, *type;
        int centre[3], corner[3];
    } cases[] = {{"baseline.jpg", "image/jpeg", {250, 220, 0}, {220, 40, 40}},
                 {"progressive.jpg", "image/jpeg", {250, 220, 0}, {220, 40, 40}},
                 {"cmyk.jpg", "image/jpeg", {250, 220, 0}, {220, 40, 40}},
                 {"palette.png", "image/png", {250, 220, 0}, {220, 40, 40}},
                 {"interlaced.png", "image/png", {250, 220, 0}, {220, 40, 40}},
                 {"rgba.png", "image/png", {252, 237, 127}, {255, 255, 255}},
                 {"lossless.webp", "image/webp", {252, 237, 127}, {255, 255, 255}},
                 {"lossy.webp", "image/webp", {250, 220, 0}, {220, 40, 40}},
                 {"animated.webp", "image/webp", {250, 220, 0}, {220, 40, 40}},
                 {"animated.gif", "image/gif", {250, 220, 0}, {220, 40, 40}},
                 {"interlaced.gif", "image/gif", {250, 220, 0}, {220, 40, 40}}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        unsigned char *buf = slurp(cases[i].file, &len);
        CHECK(buf != NULL);
        hu_decode_opts o = {HU_MEDIA_MAX_PIXELS, 64};
        uint32_t w, h;
        hu_image img;
        int rc = hu_decode_image(hu_image_format_of(cases[i].type), buf, len, &o, &w, &h, &img);
        free(buf);
        CHECK_INT(rc, 0);
        CHECK(img.w <= 64 && img.h <= 64 && img.w >= 32);
        const unsigned char *c = img.rgb + ((size_t)(img.h / 2) * img.w + img.w / 2) * 3;
        const unsigned char *tl = img.rgb + ((size_t)img.w + 1) * 3; /* (1, 1): off the edge */
        int ok = 1;
        for (int k = 0; k < 3; k++)
            ok &= abs(c[k] - cases[i].centre[k]) < 30 && abs(tl[k] - cases[i].corner[k]) < 30;
        if (!ok)
            fprintf(stderr, "%s: centre %d,%d,%d corner %d,%d,%d\n", cases[i].file, c[0], c[1],
                    c[2], tl[0], tl[1], tl[2]);
        hu_image_free(&img);
        CHECK(ok);
    }
}

/* At 1/8 a progressive JPEG is read up to its DC scans only (the rest is walked, not decoded):
 * the colours are those of the whole decode, and a file cut anywhere after the first scans, or
 * without its EOI, is still refused. A 64 px target takes progressive.jpg (300 x 200) to 1/8. */
TEST(progressive_jpeg_at_one_eighth_reads_the_dc_scans_only)
{
    size_t len;
    unsigned char *buf = slurp("progressive.jpg", &len);
    CHECK(buf != NULL);
    hu_decode_opts o = {HU_MEDIA_MAX_PIXELS, 64};
    uint32_t w, h;
    hu_image dc, full;
    CHECK_INT(hu_decode_image(HU_IMG_JPEG, buf, len, &o, &w, &h, &dc), 0);
    CHECK_INT(dc.w, 38); /* ceil(300 / 8) */
    o.target_side = 1024; /* the whole decode, shrunk by the box filter alone */
    CHECK_INT(hu_decode_image(HU_IMG_JPEG, buf, len, &o, &w, &h, &full), 0);
    CHECK_INT(full.w, 300);
    /* the DC-only pixels against the means of the whole decode's 8 x 8 blocks: the luma is a
     * block's mean in both, the chroma here the mean of a 16 x 16 block (a chroma DC), which
     * smears sharp colour edges by a pixel (WebP's 4:2:0 thumbnail halves the chroma anyway) */
    unsigned long diff = 0, n = 0;
    for (uint32_t y = 0; y + 1 < dc.h; y++)
        for (uint32_t x = 0; x + 1 < dc.w; x++, n += 3)
            for (int c = 0; c < 3; c++) {
                unsigned sum = 0;
                for (uint32_t k = 0; k < 64; k++)
                    sum += full.rgb[((size_t)(y * 8 + k / 8) * full.w + x * 8 + k % 8) * 3 + c];
                diff += (unsigned long)abs((int)(sum + 32) / 64 -
                                           dc.rgb[((size_t)y * dc.w + x) * 3 + c]);
            }
    hu_image_free(&dc);
    hu_image_free(&full);
    fprintf(stderr, "# progressive JPEG, DC scans only: %.1f grey levels off the block means\n",
            (double)diff / (double)n);
    CHECK(diff < 10 * n);
    o.target_side = 64;
    static const double cuts[] = {0.3, 0.6, 0.95};
    for (size_t k = 0; k < 3; k++)
        CHECK_INT(hu_decode_image(HU_IMG_JPEG, buf, (size_t)(len * cuts[k]), &o, &w, &h, &dc),
                  -EINVAL);
    CHECK_INT(hu_decode_image(HU_IMG_JPEG, buf, len - 2, &o, &w, &h, &dc), -EINVAL); /* no EOI */
    free(buf);
}

/* The box filter against the plain definition: each output pixel the rounded mean of its
 * f x f block (fewer pixels at the right and bottom edges), for factors up to past the 257 rows
 * that fill its 16-bit column sums. */
TEST(row_scaler_is_the_mean_of_each_block)
{
    static const uint32_t cases[][3] = {{7, 5, 7},     {10, 9, 4},  {33, 20, 8},
                                        {5, 700, 2},   {3, 600, 1}, {520, 515, 1}};
    uint32_t seed = 7;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint32_t w = cases[k][0], h = cases[k][1];
        unsigned char *px = malloc((size_t)w * h * 3);
        CHECK(px != NULL);
        for (size_t i = 0; i < (size_t)w * h * 3; i++) {
            seed = seed * 1103515245u + 12345u;
            px[i] = (unsigned char)(seed >> 16);
        }
        hu_row_scaler sc;
        hu_image out;
        CHECK_INT(hu_row_scaler_init(&sc, w, h, cases[k][2]), 0);
        for (uint32_t y = 0; y < h; y++)
            hu_row_scaler_push(&sc, px + (size_t)y * w * 3);
        CHECK_INT(hu_row_scaler_finish(&sc, &out), 0);
        hu_row_scaler_free(&sc);
        uint32_t f = sc.f, bad = 0;
        CHECK(out.w == (w + f - 1) / f && out.h == (h + f - 1) / f);
        for (uint32_t oy = 0; oy < out.h; oy++)
            for (uint32_t ox = 0; ox < out.w; ox++)
                for (int c = 0; c < 3; c++) {
                    uint64_t sum = 0, n = 0;
                    for (uint32_t y = oy * f; y < h && y < oy * f + f; y++)
                        for (uint32_t x = ox * f; x < w && x < ox * f + f; x++, n++)
                            sum += px[((size_t)y * w + x) * 3 + c];
                    bad += out.rgb[((size_t)oy * out.w + ox) * 3 + c] != (sum + n / 2) / n;
                }
        hu_image_free(&out);
        free(px);
        CHECK_INT(bad, 0);
    }
}

TEST(truncated_or_corrupt_images_have_no_metadata)
{
    for (size_t i = 0; i < N_IMAGES; i++) {
        size_t len;
        unsigned char *buf = slurp(images[i].file, &len);
        CHECK(buf != NULL);
        static const double cuts[] = {0.5, 0.9, 0.02};
        for (size_t k = 0; k < 3; k++) {
            hu_media_info m;
            size_t n = (size_t)(len * cuts[k]);
            int rc = hu_media_probe(ctx, buf, n, images[i].type, &defaults, &m);
            hu_media_info_free(&m);
            if (rc != -EINVAL && rc != -ENOTSUP) /* 2% of a file may not even look like one */
                fprintf(stderr, "%s cut to %zu of %zu: %d\n", images[i].file, n, len, rc);
            CHECK(rc == -EINVAL || rc == -ENOTSUP);
            CHECK_INT(m.width, 0);
            CHECK_STR(m.blurhash, "");
            CHECK(m.thumb == NULL);
        }
        /* garbage in the middle: whatever the codec makes of it, no crash and no leak */
        for (size_t at = len / 3; at < len / 3 + 64 && at < len; at++)
            buf[at] ^= 0x5a;
        hu_media_info m;
        hu_media_limits l = {0, 0, 1, 0, 0};
        hu_media_probe(ctx, buf, len, NULL, &l, &m);
        hu_media_info_free(&m);
        free(buf);
    }
}

/* A header claiming a huge picture is refused before a pixel is allocated: microseconds. */
TEST(decompression_bombs_are_refused_from_the_header)
{
    size_t len;
    unsigned char *png = slurp("bomb.png", &len), *jpg;
    CHECK(png != NULL);
    hu_media_info m;
    double t0 = now_ms();
    int rc = hu_media_probe(ctx, png, len, "image/png", &defaults, &m);
    double png_ms = now_ms() - t0;
    free(png);
    CHECK_INT(rc, -E2BIG);
    CHECK_INT(m.width, 60000);
    CHECK_INT(m.height, 60000);
    CHECK_STR(m.blurhash, "");
    /* a GIF screen of 65535 x 65535 with one image as large and a few bytes of LZW */
    unsigned char gif[] = {'G', 'I', 'F', '8', '9', 'a', 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0,
                           0, 0, 0, 255, 255, 255, 0x2c, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
                           0, 2, 2, 0x44, 0x01, 0, 0x3b};
    t0 = now_ms();
    rc = hu_media_probe(ctx, gif, sizeof gif, "image/gif", &defaults, &m);
    double gif_ms = now_ms() - t0;
    CHECK_INT(rc, -E2BIG);
    CHECK_INT(m.width, 65535);
    /* the baseline JPEG with its SOF0 saying 65000 x 65000 */
    CHECK((jpg = slurp("baseline.jpg", &len)) != NULL);
    unsigned char *sof = NULL;
    for (size_t i = 0; i + 9 < len && sof == NULL; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0)
            sof = jpg + i;
    if (sof) {
        sof[5] = sof[7] = 0xfd;
        sof[6] = sof[8] = 0xe8;
    }
    t0 = now_ms();
    rc = hu_media_probe(ctx, jpg, len, "image/jpeg", &defaults, &m);
    double jpg_ms = now_ms() - t0;
    free(jpg);
    CHECK(sof != NULL);
    CHECK_INT(rc, -E2BIG);
    CHECK_INT(m.width, 65000);
    fprintf(stderr, "# bombs refused in %.2f ms (PNG), %.2f ms (GIF), %.2f ms (JPEG)\n", png_ms,
            gif_ms, jpg_ms);
    /* libmagic's look at the bytes included; generous for a loaded machine under ASan */
    CHECK(png_ms < 50 && gif_ms < 50 && jpg_ms < 50);
}

TEST(max_pixels_applies_to_every_format)
{
    hu_media_limits l = {1000, 0, 1, 0, 0};
    for (size_t i = 0; i < N_IMAGES; i++) {
        size_t len;
        unsigned char *buf = slurp(images[i].file, &len);
        CHECK(buf != NULL);
        hu_media_info m;
        int rc = hu_media_probe(ctx, buf, len, images[i].type, &l, &m);
        free(buf);
        CHECK_INT(rc, -E2BIG);
        CHECK_INT(m.width, images[i].w);
        CHECK(m.thumb == NULL);
        hu_media_info_free(&m);
    }
}

TEST(type_comes_from_the_bytes_not_the_client)
{
    size_t len;
    unsigned char *buf = slurp("rgba.png", &len);
    CHECK(buf != NULL);
    hu_media_info m;
    int rc = hu_media_probe(ctx, buf, len, "image/jpeg", &defaults, &m);
    CHECK_INT(rc, 0);
    CHECK_STR(m.type, "image/png");
    CHECK_INT(m.type_matches, 0);
    CHECK_INT(m.width, 200); /* decoded as what it is */
    hu_media_probe(ctx, buf, len, " IMAGE/PNG ; charset=binary", &defaults, &m);
    CHECK_INT(m.type_matches, 1);
    hu_media_probe(ctx, buf, len, NULL, &defaults, &m);
    CHECK_INT(m.type_matches, 0);
    free(buf);
    CHECK(hu_media_type_equal("image/png", "image/png"));
    CHECK(!hu_media_type_equal("image/pngx", "image/png"));
    CHECK(!hu_media_type_equal("", "image/png"));
    CHECK(!hu_media_type_equal("image/pn", "image/png"));
}

TEST(non_images_are_typed_not_decoded)
{
    static const struct {
        const char *file, *type;
    } cases[] = {{"document.pdf", "application/pdf"}, {"notes.txt", "text/plain"}};
    for (size_t i = 0; i < 2; i++) {
        size_t len;
        unsigned char *buf = slurp(cases[i].file, &len);
        CHECK(buf != NULL);
        hu_media_info m;
        int rc = hu_media_probe(ctx, buf, len, "image/png", &defaults, &m);
        free(buf);
        CHECK_INT(rc, -ENOTSUP);
        CHECK_STR(m.type, cases[i].type);
        CHECK_INT(m.type_matches, 0);
        CHECK_INT(m.is_image, 0);
        CHECK_INT(m.width, 0);
        CHECK_STR(m.blurhash, "");
    }
    hu_media_info m;
    CHECK_INT(hu_media_probe(ctx, "", 0, NULL, &defaults, &m), -ENOTSUP);
    CHECK_INT(m.is_image, 0);
}

/* The server types a file from its first KiB and maps only the images it decodes: the first
 * step alone must name the same type as the whole file, and say which files to decode. */
TEST(type_from_the_first_kib_then_describe)
{
    static const struct {
        const char *file, *type;
        int decodable;
    } cases[] = {{"baseline.jpg", "image/jpeg", 1}, {"progressive.jpg", "image/jpeg", 1},
                 {"rgba.png", "image/png", 1},      {"lossless.webp", "image/webp", 1},
                 {"animated.gif", "image/gif", 1},  {"document.pdf", "application/pdf", 0},
                 {"notes.txt", "text/plain", 0}};
    int cuts = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        unsigned char *buf = slurp(cases[i].file, &len);
        CHECK(buf != NULL);
        size_t cut = len < HU_MEDIA_HEAD_BYTES ? len : HU_MEDIA_HEAD_BYTES;
        cuts += cut < len;
        hu_media_info whole, head;
        hu_media_probe(ctx, buf, len, cases[i].type, &defaults, &whole);
        CHECK_INT(hu_media_type(ctx, buf, cut, cases[i].type, &head),
                  cases[i].decodable);
        CHECK_STR(head.type, cases[i].type);
        CHECK_STR(head.type, whole.type);
        CHECK_INT(head.type_matches, 1);
        CHECK_INT(head.width, 0); /* nothing decoded yet */
        if (cases[i].decodable) {
            CHECK_INT(hu_media_describe(buf, len, &defaults, &head), 0);
            CHECK_INT(head.width, whole.width);
            CHECK_INT(head.height, whole.height);
            CHECK_STR(head.blurhash, whole.blurhash);
        }
        hu_media_info_free(&whole);
        hu_media_info_free(&head);
        free(buf);
    }
    CHECK(cuts >= 4); /* the JPEGs, the PNG and the GIF are longer than the head */
}

TEST(thumbnail_is_a_bounded_webp_of_the_right_size)
{
    static const struct {
        const char *file;
        unsigned side;
        int w, h;
    } cases[] = {{"baseline.jpg", 128, 128, 96}, {"progressive.jpg", 256, 256, 171},
                 {"rgba.png", 64, 64, 48},       {"animated.gif", 16, 16, 12},
                 {"plain.gif", 256, 64, 48} /* never enlarged */};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        unsigned char *buf = slurp(cases[i].file, &len);
        CHECK(buf != NULL);
        hu_media_limits l = {0, cases[i].side, 1, 0, 0};
        hu_media_info m;
        int rc = hu_media_probe(ctx, buf, len, NULL, &l, &m);
        free(buf);
        CHECK_INT(rc, 0);
        CHECK(m.thumb != NULL);
        CHECK_STR(m.thumb_type, "image/webp");
        CHECK(m.thumb_len > 0 && m.thumb_len <= HU_THUMB_MAX_BYTES);
        int w = 0, h = 0;
        int ok = WebPGetInfo(m.thumb, m.thumb_len, &w, &h);
        unsigned char *rgb = WebPDecodeRGB(m.thumb, m.thumb_len, &w, &h);
        hu_media_info_free(&m);
        CHECK(ok && rgb != NULL);
        WebPFree(rgb);
        CHECK_INT(w, cases[i].w);
        CHECK_INT(h, cases[i].h);
    }
}

TEST(limits_are_checked)
{
    hu_media_info m;
    hu_media_limits l = {0, 0, 0, 10, 3};
    CHECK_INT(hu_media_probe(ctx, "x", 1, NULL, &l, &m), -EINVAL);
    l = (hu_media_limits){0, 4096, 1, 0, 0};
    CHECK_INT(hu_media_probe(ctx, "x", 1, NULL, &l, &m), -EINVAL);
    CHECK_INT(hu_media_probe(ctx, "x", 1, NULL, NULL, &m), -ENOTSUP); /* NULL: all defaults */
}

TEST(blurhash_shape_and_refusals)
{
    unsigned char px[4 * 3 * 3];
    memset(px, 0, sizeof px);
    char out[HU_BLURHASH_MAX_LEN + 1];
    CHECK_INT(hu_blurhash_encode(px, 4, 3, 1, 1, out, sizeof out), 6);
    CHECK_STR(out, "000000"); /* black: flag 0, max 0, DC 0 */
    memset(px, 255, sizeof px);
    CHECK_INT(hu_blurhash_encode(px, 4, 3, 1, 1, out, sizeof out), 6);
    CHECK_STR(out, "00TSUA"); /* white: DC 0xFFFFFF = 29,28,30,10 in base 83 */
    CHECK_INT(hu_blurhash_encode(px, 4, 3, 9, 9, out, sizeof out), HU_BLURHASH_MAX_LEN);
    CHECK_INT(out[0], '|'); /* size flag 8 + 8 * 9 = 80 */
    CHECK_INT(hu_blurhash_encode(px, 4, 3, 0, 3, out, sizeof out), -EINVAL);
    CHECK_INT(hu_blurhash_encode(px, 4, 3, 4, 10, out, sizeof out), -EINVAL);
    CHECK_INT(hu_blurhash_encode(px, 0, 3, 4, 3, out, sizeof out), -EINVAL);
    CHECK_INT(hu_blurhash_encode(px, 4, 3, 4, 3, out, 28), -EINVAL); /* 28 chars need 29 */
    CHECK_INT(hu_blurhash_encode(px, 4, 3, 4, 3, out, 29), 28);
}

/* probe's hash is the encoder's on the pixels --blurhash-vectors dumps: the same pipeline. */
static int blurhash_pixels(const char *file, const char *type, hu_image *small)
{
    size_t len;
    unsigned char *buf = slurp(file, &len);
    if (buf == NULL)
        return -ENOENT;
    hu_decode_opts o = {HU_MEDIA_MAX_PIXELS, 2 * HU_MEDIA_THUMB_SIDE};
    uint32_t w, h;
    hu_image work;
    int rc = hu_decode_image(hu_image_format_of(type), buf, len, &o, &w, &h, &work);
    free(buf);
    if (rc == 0) {
        rc = hu_image_fit(&work, HU_MEDIA_BLURHASH_SIDE, small);
        hu_image_free(&work);
    }
    return rc;
}

TEST(probe_hashes_the_dumped_pixels)
{
    for (size_t i = 0; i < N_IMAGES; i++) {
        hu_image small;
        CHECK_INT(blurhash_pixels(images[i].file, images[i].type, &small), 0);
        char want[HU_BLURHASH_MAX_LEN + 1];
        int rc = hu_blurhash_encode(small.rgb, small.w, small.h, 4, 3, want, sizeof want);
        hu_image_free(&small);
        CHECK_INT(rc, 28);
        size_t len;
        unsigned char *buf = slurp(images[i].file, &len);
        hu_media_info m;
        hu_media_probe(ctx, buf, len, NULL, NULL, &m);
        free(buf);
        CHECK_STR(m.blurhash, want);
    }
}

static void print_vector(const char *name, const unsigned char *rgb, uint32_t w, uint32_t h,
                         unsigned cx, unsigned cy)
{
    char hash[HU_BLURHASH_MAX_LEN + 1];
    char *hex = malloc((size_t)w * h * 6 + 1);
    if (hex == NULL || hu_blurhash_encode(rgb, w, h, cx, cy, hash, sizeof hash) < 0) {
        printf("%s error\n", name);
        free(hex);
        return;
    }
    hu_hex_encode(rgb, (size_t)w * h * 3, hex);
    printf("%s %u %u %u %u %s %s\n", name, w, h, cx, cy, hash, hex);
    free(hex);
}

static int blurhash_vectors(void)
{
    for (size_t i = 0; i < N_IMAGES; i++) {
        hu_image small;
        if (blurhash_pixels(images[i].file, images[i].type, &small) < 0)
            return 1;
        print_vector(images[i].file, small.rgb, small.w, small.h, 4, 3);
        print_vector(images[i].file, small.rgb, small.w, small.h, 9, 9);
        print_vector(images[i].file, small.rgb, small.w, small.h, 1, 1);
        hu_image_free(&small);
    }
    /* synthetic: noise, smooth gradients (all-negative AC terms), flat colours, odd sizes */
    static const uint32_t sizes[][2] = {{1, 1}, {2, 1}, {7, 5}, {32, 17}, {64, 48}, {13, 64}};
    uint32_t seed = 12345;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint32_t w = sizes[s][0], h = sizes[s][1];
        unsigned char *px = malloc((size_t)w * h * 3);
        if (px == NULL)
            return 1;
        for (int kind = 0; kind < 3; kind++) {
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++)
                    for (int c = 0; c < 3; c++) {
                        seed = seed * 1103515245u + 12345u;
                        unsigned char v = kind == 0   ? (unsigned char)(seed >> 16)
                                          : kind == 1 ? (unsigned char)(255 - (x * 255 / w + c * 40) % 256)
                                                      : (unsigned char)(60 + 70 * c);
                        px[((size_t)y * w + x) * 3 + c] = v;
                    }
            char name[64];
            snprintf(name, sizeof name, "synthetic-%ux%u-%s", w, h,
                     kind == 0 ? "noise" : kind == 1 ? "gradient" : "flat");
            for (unsigned cx = 1; cx <= 9; cx += 4)
                for (unsigned cy = 1; cy <= 9; cy += 2)
                    print_vector(name, px, w, h, cx, cy);
        }
        free(px);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench(int runs, char **files, int n)
{
    hu_media_limits l = {0, 0, 1, 0, 0};
    if (runs < 1)
        return 2;
    for (int f = 0; f < n; f++) {
        FILE *fp = fopen(files[f], "rb");
        if (fp == NULL)
            return 1;
        fseek(fp, 0, SEEK_END);
        long len = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        unsigned char *buf = malloc((size_t)len);
        if (buf == NULL || fread(buf, 1, (size_t)len, fp) != (size_t)len)
            return 1;
        fclose(fp);
        double *t = calloc(2 * (size_t)runs, sizeof *t), *cpu = t + runs;
        if (t == NULL)
            return 1;
        hu_media_info m;
        for (int r = 0; r < runs; r++) {
            double t0 = now_ms(), c0 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
            hu_media_probe(ctx, buf, (size_t)len, NULL, &l, &m);
            cpu[r] = clock_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
            t[r] = now_ms() - t0;
            if (r + 1 < runs)
                hu_media_info_free(&m);
        }
        qsort(t, (size_t)runs, sizeof *t, cmp_double);
        qsort(cpu, (size_t)runs, sizeof *cpu, cmp_double);
        printf("%s: %ld bytes, %s %ux%u, error %d, blurhash %s, thumbnail %zu bytes; median %.1f ms"
               " (min %.1f, max %.1f), CPU %.1f ms, over %d runs\n", files[f], len, m.type,
               m.width, m.height, m.error, m.blurhash, m.thumb_len, t[runs / 2], t[0],
               t[runs - 1], cpu[runs / 2], runs);
        hu_media_info_free(&m);
        free(t);
        free(buf);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int failures_ = 0;
    if (find_fixtures() < 0 || hu_media_ctx_new(&ctx) < 0) {
        printf("not ok - test_media setup (fixtures or libmagic database)\n");
        return 1;
    }
    if (argc > 1) {
        int rc = strcmp(argv[1], "--blurhash-vectors") == 0 ? blurhash_vectors()
                 : strcmp(argv[1], "--bench") == 0 && argc > 3
                     ? bench(atoi(argv[2]), argv + 3, argc - 3)
                     : 2;
        hu_media_ctx_free(ctx);
        return rc;
    }
    RUN(size_type_and_blurhash_of_every_format);
    RUN(decoded_pixels_are_the_first_frame_on_white);
    RUN(row_scaler_is_the_mean_of_each_block);
    RUN(progressive_jpeg_at_one_eighth_reads_the_dc_scans_only);
    RUN(truncated_or_corrupt_images_have_no_metadata);
    RUN(decompression_bombs_are_refused_from_the_header);
    RUN(max_pixels_applies_to_every_format);
    RUN(type_comes_from_the_bytes_not_the_client);
    RUN(non_images_are_typed_not_decoded);
    RUN(type_from_the_first_kib_then_describe);
    RUN(thumbnail_is_a_bounded_webp_of_the_right_size);
    RUN(limits_are_checked);
    RUN(blurhash_shape_and_refusals);
    RUN(probe_hashes_the_dumped_pixels);
    hu_media_ctx_free(ctx);
    return failures_ ? 1 : 0;
}
