/* What the server remembers about a stored file besides its bytes: the upload path it was
 * published under (the proof that the file is ours and which URL it answers), the signed
 * content type, the uploader, the digest. storage_meta.h says where the record is kept.
 *
 * Record format 2, one "key=value" line each, every value percent-encoded (RFC 3986, '/' kept)
 * so a file name may hold any byte but NUL:
 *   v=2 path=<P> type=<T> user=<U> sha256=<hex> scheme=<s> uploaded=<unix> size=<n> expires=<unix>
 * and, for a probed file: media_type=<T> type_ok=0|1 width=<n> height=<n> blurhash=<b> thumbnail=0|1
 * Format 1 (storage layout 1, before the path was recorded) has no "v" line and raw values; it
 * is still parsed, for the migration. Unknown keys are ignored, so later fields (media metadata)
 * do not break older readers. */
#ifndef HU_FILE_META_H
#define HU_FILE_META_H

#include <stddef.h>
#include <stdint.h>

#include "token.h"

/* Enough for the longest path and user, percent-encoded. */
#define HU_META_MAX_BYTES 16384

typedef struct {
    char path[HU_MAX_PATH_LEN + 1]; /* P; "" in a format-1 record */
    char type[HU_MAX_TYPE_LEN + 1];
    char user[HU_MAX_USER_LEN + 1]; /* "" for legacy uploads */
    char sha256[65];
    char scheme[8];
    int64_t uploaded; /* Unix seconds */
    uint64_t size;    /* a resumable partial upload: the signed size S */
    int64_t expires;  /* a partial upload: the token's expiry; a published file: its own expiry
                         (0 = none) */
    /* Media metadata, computed from the bytes at upload (c_src/media); written only when the
     * file was probed (media_type set). */
    char media_type[64]; /* the type the bytes say (libmagic); "" = not probed */
    int type_ok;         /* media_type is the signed type's media type */
    uint32_t width, height; /* an image's, 0 when not an image we decode */
    char blurhash[168];  /* "" when none */
    int thumbnail;       /* a thumbnail is stored beside the file's state */
} hu_file_meta;

/* Writes a format-2 record. Returns its length, or -ENOSPC when cap is too small. */
long hu_file_meta_format(const hu_file_meta *m, char *out, size_t cap);

/* Parses a format-2 or format-1 record; a malformed line or value is -EINVAL. */
int hu_file_meta_parse(const char *buf, size_t len, hu_file_meta *out);

#endif
