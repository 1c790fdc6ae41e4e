/* BlurHash encoder (https://github.com/woltapp/blurhash, Algorithm.md) over RGB8 pixels.
 * Matches the reference TypeScript encoder (npm `blurhash` 2.x) bit for bit on the same pixels;
 * test/blackbox/test_blurhash_vectors.py checks it. */
#ifndef HU_BLURHASH_H
#define HU_BLURHASH_H

#include <stddef.h>
#include <stdint.h>

/* Longest hash: 9 x 9 components (1 + 1 + 4 + 2 * 80 characters). */
#define HU_BLURHASH_MAX_LEN 166

/* Encodes w x h RGB8 pixels (rows packed) with cx x cy components (1..9 each) into out (NUL
 * terminated). Returns the hash length, or -EINVAL (bad components, empty image, out smaller
 * than 4 + 2 * cx * cy bytes). */
int hu_blurhash_encode(const unsigned char *rgb, uint32_t w, uint32_t h, unsigned cx, unsigned cy,
                       char *out, size_t out_size);

#endif
