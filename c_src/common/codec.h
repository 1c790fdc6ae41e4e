/* Byte encodings used on the wire: base64url (no padding) and lowercase hex. */
#ifndef HU_CODEC_H
#define HU_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Output length of base64url without padding for n input bytes. */
#define HU_B64URL_LEN(n) (((n) * 4 + 2) / 3)

/* Encodes n bytes; writes HU_B64URL_LEN(n) chars and a NUL. Returns chars written. */
size_t hu_b64url_encode(const uint8_t *in, size_t n, char *out);

/* Decodes unpadded base64url. Returns bytes written, or -EINVAL on any invalid character,
 * an impossible length, non-zero trailing bits, or more than outcap bytes. */
long hu_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outcap);

/* Lowercase hex; writes 2n chars and a NUL. */
void hu_hex_encode(const uint8_t *in, size_t n, char *out);

/* Decodes exactly 2*outlen hex digits (either case). 0 or -EINVAL. */
int hu_hex_decode(const char *in, size_t n, uint8_t *out, size_t outlen);

#endif
