/* Fuzzes request-head parsing and the PUT authorization that runs on every parsed head:
 * the first byte picks how the input is split across reads (as TCP would), the rest is the
 * byte stream of one connection, pipelined requests included. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_request.h"
#include "upload_auth.h"

static hu_config fuzz_config(void) {
    static char secret[] = "fuzzing-secret-0123456789";
    static char *exts[] = {".jpg", ".png"};
    hu_config c;
    memset(&c, 0, sizeof c);
    c.url_prefix = "/upload";
    c.secrets[0] = secret;
    c.secret_lens[0] = sizeof secret - 1;
    c.n_secrets = 1;
    c.max_size = 1 << 20;
    c.legacy_protocols = HU_LEGACY_V1 | HU_LEGACY_V2 | HU_LEGACY_TOKEN;
    c.allowed_extensions = exts;
    c.n_allowed_extensions = 2;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 64 + 1;
    const char *p = (const char *)data + 1;
    size_t left = size - 1;
    hu_config cfg = fuzz_config();
    hu_http_parser parser;
    hu_http_parser_init(&parser);
    while (left > 0) {
        size_t n = left < step ? left : step;
        int done = 0;
        long used = hu_http_parser_feed(&parser, p, n, &done);
        if (used < 0)
            break;
        if ((size_t)used > n)
            abort();
        p += used;
        left -= (size_t)used;
        if (done) {
            hu_upload_grant g;
            const hu_http_head *h = parser.head;
            if (hu_upload_authorize(&cfg, h, 1700000000, &g) == 0 && g.path_len == 0)
                abort(); /* a granted upload always has a path */
            /* Skip the body as the server would, then go on with the next request. */
            uint64_t body = h->content_length < left ? h->content_length : left;
            p += body;
            left -= (size_t)body;
            hu_http_parser_next(&parser);
        } else if (used == 0) {
            break;
        }
    }
    hu_http_parser_free(&parser);
    return 0;
}
