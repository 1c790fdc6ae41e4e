/* BlurHash: a DCT of the image in linear light, 83-ary encoded. Written from Algorithm.md; the
 * order of every floating-point operation follows the npm reference encoder so that both round
 * the same way (the hash quantises, so one ulp can flip a digit):
 *  - each factor sums over x outer, y inner, basis = norm * cos(pi*i*x/w) * cos(pi*j*y/h);
 *  - the AC scale is the largest signed AC value (the reference C encoder takes the largest
 *    absolute value; the npm encoder, which clients run, does not). */
#include "blurhash.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static const char b83[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

static char *put83(char *p, unsigned long value, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = b83[value % 83];
        value /= 83;
    }
    return p + digits;
}

static double srgb_to_linear(unsigned v8)
{
    double v = v8 / 255.0;
    return v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4);
}

static unsigned linear_to_srgb(double value)
{
    double v = value < 0 ? 0 : value > 1 ? 1 : value;
    if (v <= 0.0031308)
        return (unsigned)(v * 12.92 * 255 + 0.5);
    return (unsigned)((1.055 * pow(v, 1 / 2.4) - 0.055) * 255 + 0.5);
}

static double sign_sqrt(double v)
{
    return (v < 0 ? -1 : 1) * pow(fabs(v), 0.5);
}

static unsigned quant_ac(double v, double max)
{
    double q = floor(sign_sqrt(v / max) * 9 + 9.5);
    return q < 0 ? 0 : q > 18 ? 18 : (unsigned)q;
}

int hu_blurhash_encode(const unsigned char *rgb, uint32_t w, uint32_t h, unsigned cx, unsigned cy,
                       char *out, size_t out_size)
{
    if (cx < 1 || cx > 9 || cy < 1 || cy > 9 || w == 0 || h == 0 || out_size < 5 + 2 * cx * cy)
        return -EINVAL;
    double lin[256], factors[81][3];
    for (unsigned i = 0; i < 256; i++)
        lin[i] = srgb_to_linear(i);
    /* cos tables per component: the same products the reference computes per pixel */
    double *cosx = malloc(sizeof(double) * w), *cosy = malloc(sizeof(double) * h);
    if (cosx == NULL || cosy == NULL) {
        free(cosx);
        free(cosy);
        return -ENOMEM;
    }
    for (unsigned j = 0; j < cy; j++) {
        for (uint32_t y = 0; y < h; y++)
            cosy[y] = cos(M_PI * j * y / h);
        for (unsigned i = 0; i < cx; i++) {
            double norm = (i == 0 && j == 0) ? 1 : 2;
            for (uint32_t x = 0; x < w; x++)
                cosx[x] = cos(M_PI * i * x / w);
            double r = 0, g = 0, b = 0;
            for (uint32_t x = 0; x < w; x++) {
                for (uint32_t y = 0; y < h; y++) {
                    double basis = norm * cosx[x] * cosy[y];
                    const unsigned char *p = rgb + ((size_t)y * w + x) * 3;
                    r += basis * lin[p[0]];
                    g += basis * lin[p[1]];
                    b += basis * lin[p[2]];
                }
            }
            double scale = 1 / ((double)w * h);
            double *f = factors[j * cx + i];
            f[0] = r * scale;
            f[1] = g * scale;
            f[2] = b * scale;
        }
    }
    free(cosx);
    free(cosy);

    char *p = out;
    p = put83(p, (cx - 1) + (cy - 1) * 9, 1);
    double max = 1;
    if (cx * cy > 1) {
        double actual = factors[1][0];
        for (unsigned k = 1; k < cx * cy; k++)
            for (int c = 0; c < 3; c++)
                if (factors[k][c] > actual)
                    actual = factors[k][c];
        double q = floor(actual * 166 - 0.5);
        unsigned qmax = q < 0 ? 0 : q > 82 ? 82 : (unsigned)q;
        max = (qmax + 1) / 166.0;
        p = put83(p, qmax, 1);
    } else {
        p = put83(p, 0, 1);
    }
    p = put83(p, ((unsigned long)linear_to_srgb(factors[0][0]) << 16) +
                     ((unsigned long)linear_to_srgb(factors[0][1]) << 8) +
                     linear_to_srgb(factors[0][2]), 4);
    for (unsigned k = 1; k < cx * cy; k++)
        p = put83(p, quant_ac(factors[k][0], max) * 19 * 19 + quant_ac(factors[k][1], max) * 19 +
                         quant_ac(factors[k][2], max), 2);
    *p = '\0';
    return (int)(p - out);
}
