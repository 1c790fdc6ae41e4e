#include "token.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "sha256_md.h"

/* HMAC-SHA256 over parts joined by sep (a NUL byte or a space), streamed: no buffer to size. */
static int hmac_join(hu_slice secret, const hu_slice *parts, size_t n, char sep,
                     uint8_t mac[HU_MAC_LEN])
{
    int rc = -EIO;
    unsigned int maclen = 0;
    HMAC_CTX *ctx = NULL;
    /* HMAC_CTX is deprecated in OpenSSL 3 but is the fastest streaming HMAC there, which matters
     * for slot minting rate; the EVP_MAC replacement costs a fetch per call. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    ctx = HMAC_CTX_new();
    if (!ctx || !HMAC_Init_ex(ctx, secret.ptr, (int)secret.len, hu_sha256_md(), NULL)) goto out;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && !HMAC_Update(ctx, (const unsigned char *)&sep, 1)) goto out;
        if (parts[i].len && !HMAC_Update(ctx, (const unsigned char *)parts[i].ptr, parts[i].len))
            goto out;
    }
    if (!HMAC_Final(ctx, mac, &maclen) || maclen != HU_MAC_LEN) goto out;
    rc = 0;
out:
    HMAC_CTX_free(ctx);
#pragma GCC diagnostic pop
    return rc;
}

int hu_parse_u64(hu_slice s, uint64_t *out)
{
    if (s.len == 0 || s.len > 20 || !s.ptr) return -EINVAL;
    if (s.len > 1 && s.ptr[0] == '0') return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned char)s.ptr[i] - '0';
        if (d > 9) return -EINVAL;
        if (v > (UINT64_MAX - d) / 10) return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int hu_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

static int secret_ok(hu_slice secret)
{
    return secret.ptr && secret.len > 0 && secret.len <= HU_MAX_SECRET_LEN;
}

static int bearer_fields_ok(const hu_bearer_fields *f)
{
    return f->user.ptr && f->user.len > 0 && f->user.len <= HU_MAX_USER_LEN && f->path.ptr &&
           f->path.len > 0 && f->path.len <= HU_MAX_PATH_LEN && f->type.ptr &&
           f->type.len > 0 && f->type.len <= HU_MAX_TYPE_LEN && f->expires >= 0 &&
           !memchr(f->user.ptr, 0, f->user.len) && !memchr(f->path.ptr, 0, f->path.len) &&
           !memchr(f->type.ptr, 0, f->type.len);
}

static int bearer_mac(hu_slice secret, const hu_bearer_fields *f, uint8_t mac[HU_MAC_LEN])
{
    char size[21], expires[21];
    int sl = snprintf(size, sizeof size, "%llu", (unsigned long long)f->size);
    int el = snprintf(expires, sizeof expires, "%lld", (long long)f->expires);
    hu_slice parts[] = {HU_SLICE("bearer"), f->user, f->path, {size, (size_t)sl}, f->type,
                        {expires, (size_t)el}};
    return hmac_join(secret, parts, sizeof parts / sizeof parts[0], '\0', mac);
}

int hu_bearer_mint(hu_slice secret, const hu_bearer_fields *f, char out[HU_BEARER_TOKEN_LEN + 1])
{
    uint8_t mac[HU_MAC_LEN];
    if (!secret_ok(secret) || !bearer_fields_ok(f)) return -EINVAL;
    int rc = bearer_mac(secret, f, mac);
    if (rc) return rc;
    hu_b64url_encode(mac, sizeof mac, out);
    return 0;
}

int hu_bearer_verify(hu_slice secret, const hu_bearer_fields *f, hu_slice token, int64_t now)
{
    uint8_t want[HU_MAC_LEN], got[HU_MAC_LEN];
    /* Length cap before decoding, as nginx secure_link does. */
    if (!secret_ok(secret) || !bearer_fields_ok(f) || token.len != HU_BEARER_TOKEN_LEN)
        return -EINVAL;
    if (hu_b64url_decode(token.ptr, token.len, got, sizeof got) != HU_MAC_LEN) return -EINVAL;
    int rc = bearer_mac(secret, f, want);
    if (rc) return rc;
    if (!hu_ct_equal(want, got, HU_MAC_LEN)) return -EACCES;
    if (now > f->expires) return -ETIME;
    return 0;
}

int hu_legacy_verify(hu_slice secret, hu_legacy_scheme scheme, hu_slice path, uint64_t size,
                     hu_slice type, hu_slice token)
{
    uint8_t want[HU_MAC_LEN], got[HU_MAC_LEN];
    char sz[21];
    if (!secret_ok(secret) || !path.ptr || path.len == 0 || path.len > HU_MAX_PATH_LEN ||
        type.len > HU_MAX_TYPE_LEN || token.len != HU_LEGACY_TOKEN_LEN)
        return -EINVAL;
    if (hu_hex_decode(token.ptr, token.len, got, sizeof got)) return -EINVAL;
    int sl = snprintf(sz, sizeof sz, "%llu", (unsigned long long)size);
    hu_slice s = {sz, (size_t)sl};
    int rc;
    switch (scheme) {
    case HU_LEGACY_V1: {
        hu_slice parts[] = {path, s};
        rc = hmac_join(secret, parts, 2, ' ', want);
        break;
    }
    case HU_LEGACY_V2:
    case HU_LEGACY_TOKEN: {
        hu_slice parts[] = {path, s, type.ptr ? type : HU_SLICE("")};
        rc = hmac_join(secret, parts, 3, '\0', want);
        break;
    }
    default:
        return -EINVAL;
    }
    if (rc) return rc;
    return hu_ct_equal(want, got, HU_MAC_LEN) ? 0 : -EACCES;
}
