#include "url.h"

#include <errno.h>
#include <string.h>

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long hu_pct_decode(hu_slice in, int plus_is_space, char *out, size_t outcap)
{
    size_t o = 0;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.ptr[i];
        if (c == '%') {
            if (in.len - i < 3) return -EINVAL;
            int hi = hex_digit(in.ptr[i + 1]), lo = hex_digit(in.ptr[i + 2]);
            if (hi < 0 || lo < 0) return -EINVAL;
            c = (char)(hi << 4 | lo);
            if (c == '\0') return -EINVAL; /* %00 would cut C strings short downstream */
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        } else if (c == '\0') {
            return -EINVAL;
        }
        if (o >= outcap) return -EINVAL;
        out[o++] = c;
    }
    return (long)o;
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

long hu_pct_encode(hu_slice in, int keep_slash, char *out, size_t outcap)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < in.len; i++) {
        unsigned char c = (unsigned char)in.ptr[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            if (o + 1 >= outcap) return -ENOSPC;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= outcap) return -ENOSPC;
            out[o++] = '%';
            out[o++] = digits[c >> 4];
            out[o++] = digits[c & 15];
        }
    }
    if (o >= outcap) return -ENOSPC;
    out[o] = '\0';
    return (long)o;
}

static int set_once(hu_slice *field, hu_slice value)
{
    if (field->ptr) return -EINVAL;
    *field = value;
    return 0;
}

int hu_query_parse(hu_slice query, hu_query *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < query.len) {
        const char *start = query.ptr + i;
        const char *amp = memchr(start, '&', query.len - i);
        size_t plen = amp ? (size_t)(amp - start) : query.len - i;
        i += plen + 1;
        if (plen == 0) continue;
        const char *eq = memchr(start, '=', plen);
        size_t klen = eq ? (size_t)(eq - start) : plen;
        hu_slice value = eq ? (hu_slice){eq + 1, plen - klen - 1} : (hu_slice){start + plen, 0};
        hu_slice *field = NULL;
#define KEY(name)                                                                            \
    if (klen == sizeof #name - 1 && memcmp(start, #name, klen) == 0) field = &out->name;
        KEY(user) KEY(type) KEY(expires) KEY(token) KEY(v) KEY(v2)
#undef KEY
        if (field && set_once(field, value)) return -EINVAL;
    }
    return 0;
}
