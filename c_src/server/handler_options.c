/* OPTIONS: CORS preflight for browser clients (Converse.js) and plain capability discovery. */
#include "handlers.h"
#include "upload.h"

void hu_handle_options(hu_conn *c, const hu_http_head *h) {
    hu_response *r = &c->resp;
    char origin_buf[512];
    hu_response_start(r, 204, &c->set->cfg, h);
    hu_response_header(r, "Allow", "GET, HEAD, PUT, PATCH, OPTIONS");
    /* tus discovery: resumption of a cut upload with HEAD + PATCH (handler_tus.c) */
    hu_response_header(r, "Tus-Resumable", HU_TUS_VERSION);
    hu_response_header(r, "Tus-Version", HU_TUS_VERSION);
    if (c->set->cfg.max_size != UINT64_MAX)
        hu_response_header(r, "Tus-Max-Size", "%llu", (unsigned long long)c->set->cfg.max_size);
    if (hu_cors_origin(&c->set->cfg, h, origin_buf, sizeof origin_buf) != NULL) {
        hu_response_header(r, "Access-Control-Allow-Methods", "GET, HEAD, PUT, PATCH, OPTIONS");
        hu_response_header(r, "Access-Control-Allow-Headers",
                           "Authorization, Content-Type, Content-Length, Upload-Offset, "
                           "Upload-Length, Tus-Resumable, Upload-Metadata, X-Requested-With");
        hu_response_header(r, "Access-Control-Max-Age", "86400");
    }
    hu_response_end(r, c->keep_alive);
    hu_conn_send(c, NULL, 0, NULL);
}
