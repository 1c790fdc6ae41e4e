/* One client connection: reads bytes, parses request heads, hands bodies to a sink with
 * back-pressure (no reading while a disk write is pending), writes responses, keeps the
 * header and idle timers. Memory per connection is bounded: a read buffer exists only while
 * it holds unprocessed bytes. */
#ifndef HU_CONN_H
#define HU_CONN_H

#include <stdint.h>
#include <uv.h>

#include "http_request.h"
#include "response.h"
#include "server.h"

#define HU_READ_BUF_SIZE (512 * 1024) /* two of them per uploading connection */

typedef void (*hu_conn_cb)(hu_conn *c);

/* Receives a request body. on_data returns 0 after consuming all n bytes synchronously, or 1
 * when it went asynchronous and will call hu_conn_body_consumed() later. on_end is called
 * once all content_length bytes were consumed; it must answer the request. If the connection
 * dies first, c->cleanup runs instead. */
typedef struct {
    int (*on_data)(hu_conn *c, const char *p, size_t n);
    void (*on_end)(hu_conn *c);
} hu_body_sink;

struct hu_conn {
    uv_tcp_t tcp; /* first: the handle pointer is the connection */
    uv_timer_t timer;
    uv_write_t write_req;
    hu_server *srv;
    hu_conn *prev, *next;
    hu_http_parser parser;
    char *rbuf; /* unprocessed input is rbuf[roff, rlen) */
    char *inflight; /* a body buffer a disk job still reads from (double buffering) */
    char *spare;    /* the other body buffer, free for reading ahead */
    size_t rlen, roff;
    int reading, busy, closing, keep_alive, in_body;
    int handles_open; /* tcp + timer until their close callbacks */
    int pending;      /* thread-pool jobs and writes in flight */
    hu_settings *set; /* settings of the request in progress */
    const hu_body_sink *sink;
    void *sink_state;     /* the handler's state for the request in progress */
    hu_conn_cb cleanup;   /* frees sink_state if the connection dies mid-request */
    const char *upload_key; /* the partial file an upload on this connection works on */
    uint64_t body_left;   /* body bytes the sink has yet to receive */
    int body_unread;      /* the request has a body nobody took: close after answering */
    hu_conn_cb after_write;
    size_t write_len;
    hu_response resp;
    char *resp_body; /* owned until written */
    /* for the access log */
    int status;
    uint64_t bytes_out;
    uint64_t start_ns;
    char peer[64];
    char method[12];
    char target[256]; /* path only: the query may hold a token */
    char user[128];
};

void hu_conn_accept(hu_server *srv);

/* Sends c->resp (filled by the caller with hu_response_*) plus an optional body (ownership of
 * body passes to the connection), then calls after (NULL = the request is done). */
void hu_conn_send(hu_conn *c, char *body, size_t body_len, hu_conn_cb after);

/* A complete error response; closes the connection afterwards when close_after. */
void hu_conn_send_error(hu_conn *c, int status, int close_after);

/* Writes raw bytes (e.g. a file chunk) then calls after. */
void hu_conn_write(hu_conn *c, const char *p, size_t n, hu_conn_cb after);

/* The request is answered: log it, release its settings, go on with the next one. */
void hu_conn_request_done(hu_conn *c);

/* Body sink protocol. */
void hu_conn_take_body(hu_conn *c, const hu_body_sink *sink, void *state);
void hu_conn_body_consumed(hu_conn *c, size_t n);

/* Thread-pool bookkeeping, so a connection is never freed under a running job. */
void hu_conn_job_started(hu_conn *c);
void hu_conn_job_finished(hu_conn *c);

/* Closes the connection (after pending jobs finish). */
void hu_conn_close(hu_conn *c);

/* Resets the idle timer after progress. */
void hu_conn_progress(hu_conn *c);

#endif
