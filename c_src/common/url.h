/* Percent-encoding and query strings (RFC 3986). No allocation, no I/O. */
#ifndef HU_URL_H
#define HU_URL_H

#include "token.h"

/* Decodes %XX escapes (and '+' as space when plus_is_space, for query values).
 * Returns the decoded length, or -EINVAL for a bad escape, a decoded NUL byte, or output
 * longer than outcap. out is not NUL-terminated. */
long hu_pct_decode(hu_slice in, int plus_is_space, char *out, size_t outcap);

/* Encodes every byte outside RFC 3986 "unreserved" (ALPHA DIGIT - . _ ~) as %XX (uppercase).
 * When keep_slash, '/' is kept as is (for paths). Returns the length written (a NUL follows),
 * or -ENOSPC when outcap (which must leave room for the NUL) is too small. */
long hu_pct_encode(hu_slice in, int keep_slash, char *out, size_t outcap);

/* The query parameters the upload server understands, as raw (still encoded) slices.
 * A missing parameter has ptr == NULL. */
typedef struct {
    hu_slice user, type, expires, token, v, v2;
} hu_query;

/* Splits "a=b&c=d" (no leading '?'). Unknown parameters are ignored; a known one given twice
 * is -EINVAL (no confusion about which value was signed). */
int hu_query_parse(hu_slice query, hu_query *out);

#endif
