#include "file_meta.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "url.h"

typedef struct {
    char *out;
    size_t cap, len;
    int err;
} writer;

static void put_raw(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_raw(writer *w, const char *fmt, ...) {
    if (w->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->out + w->len, w->cap - w->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= w->cap - w->len)
        w->err = -ENOSPC;
    else
        w->len += (size_t)n;
}

static void put_text(writer *w, const char *key, const char *value) {
    put_raw(w, "%s=", key);
    if (w->err)
        return;
    long n = hu_pct_encode(HU_CSTR(value), 1, w->out + w->len, w->cap - w->len);
    if (n < 0) {
        w->err = -ENOSPC;
        return;
    }
    w->len += (size_t)n;
    put_raw(w, "\n");
}

long hu_file_meta_format(const hu_file_meta *m, char *out, size_t cap) {
    writer w = {out, cap, 0, 0};
    put_raw(&w, "v=2\n");
    put_text(&w, "path", m->path);
    put_text(&w, "type", m->type);
    put_text(&w, "user", m->user);
    put_text(&w, "sha256", m->sha256);
    put_text(&w, "scheme", m->scheme);
    put_raw(&w, "uploaded=%" PRId64 "\nsize=%" PRIu64 "\nexpires=%" PRId64 "\n", m->uploaded,
            m->size, m->expires);
    if (m->media_type[0]) {
        put_text(&w, "media_type", m->media_type);
        put_raw(&w, "type_ok=%d\nwidth=%" PRIu32 "\nheight=%" PRIu32 "\nthumbnail=%d\n",
                m->type_ok ? 1 : 0, m->width, m->height, m->thumbnail ? 1 : 0);
        put_text(&w, "blurhash", m->blurhash);
    }
    return w.err ? w.err : (long)w.len;
}

/* A value into dst (NUL-terminated): percent-decoded in format 2, as is in format 1. */
static int copy_value(char *dst, size_t cap, hu_slice v, int encoded) {
    if (encoded) {
        long n = hu_pct_decode(v, 0, dst, cap - 1);
        if (n < 0)
            return -EINVAL;
        dst[n] = '\0';
        return 0;
    }
    if (v.len >= cap || memchr(v.ptr, '\0', v.len) != NULL)
        return -EINVAL;
    memcpy(dst, v.ptr, v.len);
    dst[v.len] = '\0';
    return 0;
}

static int copy_int(int64_t *dst, hu_slice v) {
    uint64_t num;
    if (hu_parse_u64(v, &num) < 0 || num > INT64_MAX)
        return -EINVAL;
    *dst = (int64_t)num;
    return 0;
}

static int copy_u32(uint32_t *dst, hu_slice v) {
    uint64_t num;
    if (hu_parse_u64(v, &num) < 0 || num > UINT32_MAX)
        return -EINVAL;
    *dst = (uint32_t)num;
    return 0;
}

static int copy_flag(int *dst, hu_slice v) {
    if (v.len != 1 || (v.ptr[0] != '0' && v.ptr[0] != '1'))
        return -EINVAL;
    *dst = v.ptr[0] == '1';
    return 0;
}

static int key_is(hu_slice k, const char *name) {
    return k.len == strlen(name) && memcmp(k.ptr, name, k.len) == 0;
}

int hu_file_meta_parse(const char *buf, size_t len, hu_file_meta *m) {
    memset(m, 0, sizeof *m);
    int encoded = len >= 4 && memcmp(buf, "v=2\n", 4) == 0;
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *eq = memchr(p, '=', (size_t)(eol - p));
        if (eq == NULL)
            return -EINVAL;
        hu_slice key = {p, (size_t)(eq - p)}, v = {eq + 1, (size_t)(eol - eq - 1)};
        int rc = 0;
        if (key_is(key, "v"))
            rc = encoded ? 0 : -EINVAL; /* a version this reader does not know */
        else if (key_is(key, "path"))
            rc = encoded ? copy_value(m->path, sizeof m->path, v, 1) : -EINVAL;
        else if (key_is(key, "type"))
            rc = copy_value(m->type, sizeof m->type, v, encoded);
        else if (key_is(key, "user"))
            rc = copy_value(m->user, sizeof m->user, v, encoded);
        else if (key_is(key, "sha256"))
            rc = copy_value(m->sha256, sizeof m->sha256, v, encoded);
        else if (key_is(key, "scheme"))
            rc = copy_value(m->scheme, sizeof m->scheme, v, encoded);
        else if (key_is(key, "uploaded"))
            rc = copy_int(&m->uploaded, v);
        else if (key_is(key, "expires"))
            rc = copy_int(&m->expires, v);
        else if (key_is(key, "size"))
            rc = hu_parse_u64(v, &m->size) < 0 ? -EINVAL : 0;
        else if (encoded && key_is(key, "media_type"))
            rc = copy_value(m->media_type, sizeof m->media_type, v, 1);
        else if (encoded && key_is(key, "type_ok"))
            rc = copy_flag(&m->type_ok, v);
        else if (encoded && key_is(key, "width"))
            rc = copy_u32(&m->width, v);
        else if (encoded && key_is(key, "height"))
            rc = copy_u32(&m->height, v);
        else if (encoded && key_is(key, "blurhash"))
            rc = copy_value(m->blurhash, sizeof m->blurhash, v, 1);
        else if (encoded && key_is(key, "thumbnail"))
            rc = copy_flag(&m->thumbnail, v);
        if (rc < 0)
            return rc;
        p = nl ? nl + 1 : end;
    }
    return 0;
}
