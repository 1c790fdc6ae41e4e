/* The upload engine shared by PUT (a whole file) and tus PATCH (a piece of one): streams the
 * body into the partial file on the thread pool, one write in flight per connection, then
 * publishes atomically once the signed size is reached, and has the group commit record it.
 * A small PUT is taken whole first and then begun, written and published by one job. A cut
 * Bearer upload keeps its bytes (and its resumption state) for a tus resume until the token
 * expires. */
#ifndef HU_UPLOAD_H
#define HU_UPLOAD_H

#include "conn.h"
#include "upload_auth.h"

#define HU_TUS_VERSION "1.0.0"

typedef enum {
    HU_UPLOAD_PUT,   /* whole body, from offset 0, hashed on the way */
    HU_UPLOAD_PATCH, /* tus: body appended at the current offset, file hashed at the end */
} hu_upload_kind;

/* Starts receiving the request body for grant g (already authorized). For PUT, refuses a
 * used slot (409; a small body's after it came) and starts over any partial bytes; for
 * PATCH, expect_offset must equal the partial file's length (409 otherwise). Answers the
 * request itself in every case. */
void hu_upload_start(hu_conn *c, const hu_http_head *h, const hu_upload_grant *g,
                     hu_upload_kind kind, uint64_t expect_offset);

/* 1 when a request on some connection is working on the partial file of key. */
int hu_upload_key_busy(hu_server *srv, const char *key);

#endif
