/* Fuzzes token parsing and verification: Bearer tokens with attacker-chosen fields, legacy
 * hex tokens, and the query-string splitter they arrive in. Input: a query string. Checks the
 * invariant that a verified Bearer token re-mints to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "token.h"
#include "url.h"

#define SECRET HU_SLICE("fuzzing-secret-0123456789")

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hu_query q;
    hu_slice in = {(const char *)data, size};
    if (hu_query_parse(in, &q) < 0) return 0;
    char user[HU_MAX_USER_LEN], type[HU_MAX_TYPE_LEN];
    long ul = q.user.ptr ? hu_pct_decode(q.user, 1, user, sizeof user) : -1;
    long tl = q.type.ptr ? hu_pct_decode(q.type, 1, type, sizeof type) : -1;
    uint64_t expires = 0, sz = 0;
    if (q.expires.ptr) hu_parse_u64(q.expires, &expires);
    if (q.v.ptr) hu_parse_u64(q.v, &sz);
    hu_bearer_fields f = {{user, ul > 0 ? (size_t)ul : 0}, HU_SLICE("slot/file.jpg"), sz,
                          {type, tl > 0 ? (size_t)tl : 0}, (int64_t)(expires >> 1)};
    if (q.token.ptr && ul > 0 && tl > 0) {
        if (hu_bearer_verify(SECRET, &f, q.token, 0) == 0) {
            char again[HU_BEARER_TOKEN_LEN + 1];
            if (hu_bearer_mint(SECRET, &f, again) != 0 || memcmp(again, q.token.ptr, q.token.len))
                abort();
        }
    }
    if (q.v2.ptr) {
        hu_legacy_verify(SECRET, HU_LEGACY_V1, HU_SLICE("slot/file.jpg"), sz, f.type, q.v2);
        hu_legacy_verify(SECRET, HU_LEGACY_V2, HU_SLICE("slot/file.jpg"), sz, f.type, q.v2);
    }
    uint8_t buf[64];
    if (q.token.ptr) hu_b64url_decode(q.token.ptr, q.token.len, buf, sizeof buf);
    return 0;
}
