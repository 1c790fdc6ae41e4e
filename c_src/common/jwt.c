#include "jwt.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "codec.h"

static int b64url_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

int hu_jwt_looks_like(hu_slice t) {
    int dots = 0;
    size_t part = 0;
    for (size_t i = 0; i < t.len; i++) {
        if (t.ptr[i] == '.') {
            if (part == 0)
                return 0;
            dots++;
            part = 0;
        } else if (b64url_char(t.ptr[i])) {
            part++;
        } else {
            return 0;
        }
    }
    return dots == 2 && part > 0;
}

/* A base64url part decoded into a NUL-terminated buffer. */
static long decode_part(hu_slice part, char *out, size_t cap) {
    long n = hu_b64url_decode(part.ptr, part.len, (uint8_t *)out, cap - 1);
    if (n >= 0)
        out[n] = '\0';
    return n;
}

static int get_string(json_t *obj, const char *key, char *out, size_t cap, int required) {
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return required ? -EINVAL : 0;
    if (!json_is_string(v) || json_string_length(v) >= cap ||
        memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
        return -EINVAL;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* A JSON number that is a whole number of seconds or bytes (an integer, or a real with no
 * fraction: Lua's JSON writer may give either), within 0..2^53. */
static int get_whole(json_t *obj, const char *key, int64_t *out, int required) {
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return required ? -EINVAL : 0;
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v))
        d = json_real_value(v);
    else
        return -EINVAL;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
        return -EINVAL;
    *out = (int64_t)d;
    return 0;
}

int hu_jwt_parse_claims(const char *text, size_t len, hu_jwt_claims *c) {
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    int64_t size = 0;
    int rc = root != NULL && json_is_object(root) ? 0 : -EINVAL;
    if (rc == 0)
        rc = get_whole(root, "exp", &c->exp, 1);
    if (rc == 0)
        rc = get_whole(root, "iat", &c->iat, 0);
    if (rc == 0)
        rc = get_whole(root, "expires", &c->expires, 0);
    if (rc == 0)
        rc = get_whole(root, "filesize", &size, 1);
    if (rc == 0)
        rc = get_string(root, "slot", c->slot, sizeof c->slot, 1);
    if (rc == 0)
        rc = get_string(root, "filename", c->filename, sizeof c->filename, 1);
    if (rc == 0)
        rc = get_string(root, "sub", c->sub, sizeof c->sub, 0);
    if (rc == 0)
        rc = get_string(root, "filetype", c->filetype, sizeof c->filetype, 0);
    c->filesize = (uint64_t)size;
    json_decref(root);
    return rc;
}

/* {"alg":"HS256", ...}: exactly HS256, typ JWT when given, and no critical extension we
 * would have to understand. */
static int check_header(const char *text, size_t len) {
    json_error_t jerr;
    json_t *h = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = -EINVAL;
    if (h != NULL && json_is_object(h)) {
        json_t *alg = json_object_get(h, "alg"), *typ = json_object_get(h, "typ");
        if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0 ||
            json_object_get(h, "crit") != NULL)
            rc = -EACCES;
        else if (typ != NULL && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0))
            rc = -EINVAL;
        else
            rc = 0;
    }
    json_decref(h);
    return rc;
}

int hu_jwt_verify(hu_slice secret, hu_slice token, int64_t now, hu_jwt_claims *out) {
    if (token.len > HU_JWT_MAX_LEN || !hu_jwt_looks_like(token) || secret.len == 0)
        return -EINVAL;
    const char *dot1 = memchr(token.ptr, '.', token.len);
    const char *dot2 = memchr(dot1 + 1, '.', token.len - (size_t)(dot1 + 1 - token.ptr));
    hu_slice head = {token.ptr, (size_t)(dot1 - token.ptr)};
    hu_slice body = {dot1 + 1, (size_t)(dot2 - dot1 - 1)};
    hu_slice sig = {dot2 + 1, token.len - (size_t)(dot2 + 1 - token.ptr)};
    char buf[HU_JWT_MAX_LEN]; /* a decoded part: 3/4 of the token at most */
    long n = decode_part(head, buf, sizeof buf);
    int rc = n < 0 ? -EINVAL : check_header(buf, (size_t)n);
    if (rc < 0)
        return rc;
    uint8_t mac[EVP_MAX_MD_SIZE], given[HU_MAC_LEN];
    unsigned mac_len = 0;
    if (hu_b64url_decode(sig.ptr, sig.len, given, sizeof given) != HU_MAC_LEN)
        return -EACCES;
    if (HMAC(EVP_sha256(), secret.ptr, (int)secret.len, (const uint8_t *)token.ptr,
             (size_t)(dot2 - token.ptr), mac, &mac_len) == NULL || mac_len != HU_MAC_LEN)
        return -EIO;
    if (CRYPTO_memcmp(mac, given, HU_MAC_LEN) != 0)
        return -EACCES;
    if ((n = decode_part(body, buf, sizeof buf)) < 0 || hu_jwt_parse_claims(buf, (size_t)n, out) < 0)
        return -EINVAL;
    return out->exp < now ? -ETIME : 0;
}
