/* One client connection: reads bytes, parses request heads, hands bodies to a sink with
 * back-pressure (no reading while a disk write is pending), writes responses and file ranges,
 * keeps the header, idle and lingering timers. conn.c has the life cycle, reading and
 * dispatch; conn_output.c the output; transport.c the bytes on the socket (plain or TLS).
 *
 * The socket is ours (accept4, non-blocking) and watched with a uv_poll_t, not a libuv stream:
 * we do the I/O ourselves so that a download is sendfile() from the page cache (no user-space
 * buffer, so a slow reader costs a few KiB; with TLS, SSL_sendfile through kTLS where the
 * kernel has it, else one 64 KiB window), TLS runs on the socket itself, and a refused upload
 * can be half-closed and drained (a lingering close, as nginx does) so the client still reads
 * the status instead of a reset. Memory per connection is bounded: a read buffer exists only
 * while a request needs it. */
#ifndef HU_CONN_H
#define HU_CONN_H

#include <stdint.h>
#include <uv.h>

#include "http_request.h"
#include "response.h"
#include "server.h"
#include "transport.h"

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
    uv_poll_t poll; /* first: the handle pointer is the connection */
    uv_timer_t timer;
    hu_transport tr;
    int poll_events; /* what the poll handle watches now */
    hu_server *srv;
    hu_conn *prev, *next;
    hu_conn *next_done; /* in the server's queue of deferred work (conn.c) */
    int queued, write_done, read_deferred;
    hu_http_parser parser;
    char *rbuf;     /* unprocessed input is rbuf[roff, rlen) */
    char *inflight; /* a body buffer a disk job still reads from (double buffering) */
    char *spare;    /* the other body buffer, free for reading ahead */
    size_t rlen, roff;
    int reading, busy, closing, keep_alive, in_body;
    int whole_body; /* the sink gets the body in one piece, once all of it is in rbuf */
    int metrics_conn;       /* accepted on metrics_listen: GET /metrics only */
    int lingering;          /* answered and half-closed: discarding input until the peer is done */
    uint64_t linger_bytes;  /* discarded so far */
    uint64_t linger_end_ms; /* the lingering close ends by then whatever happens */
    int handles_open;       /* poll + timer until their close callbacks */
    int pending;            /* thread-pool jobs and queued completions */
    hu_settings *set;       /* settings of the request in progress */
    const hu_body_sink *sink;
    void *sink_state;       /* the handler's state for the request in progress */
    hu_conn_cb cleanup;     /* frees sink_state if the connection dies mid-request */
    const char *upload_key; /* the partial file an upload on this connection works on */
    uint64_t body_left;     /* body bytes the sink has yet to receive */
    int body_unread;        /* the request has a body nobody took: linger and close after */
    /* output: out[] (head, body) first, then out_fd's range [out_off, out_off + out_left) */
    uv_buf_t out[2];
    unsigned nout;
    int out_fd;
    uint64_t out_off, out_left;
    char *file_buf;    /* TLS without kTLS: the file window being encrypted and sent */
    size_t file_buf_len, file_buf_off;
    size_t file_window;  /* its size: one TLS record, growing while the peer keeps up */
    int window_blocked;  /* the peer made us wait during the current window */
    int out_job;       /* a range not in the page cache is sent (or read) on the pool */
    uv_work_t out_work;
    long out_job_rc;   /* bytes that job sent or read, or a negative errno */
    hu_conn_cb after_write;
    hu_response resp;
    char *resp_body; /* owned until written */
    /* for the access log */
    int status;
    uint64_t bytes_out;
    uint64_t start_ns;
    char peer[64];
    char ip_key[HU_RATE_IP_KEY_MAX]; /* the peer for rate_limit_per_ip (IPv6: its /64) */
    char method[12];
    char target[256]; /* path only: the query may hold a token */
    char user[128];
};

/* Accepts the pending connections on a listening socket (metrics: the metrics listener): 0,
 * or a negative errno (-EMFILE, -ENFILE, -ENOBUFS, ...) after which the caller should pause
 * accepting for a moment. */
int hu_conn_accept_all(hu_server *srv, int listen_fd, int metrics);

/* Sends c->resp (filled by the caller with hu_response_*) plus an optional body (ownership of
 * body passes to the connection), then calls after (NULL = the request is done). */
void hu_conn_send(hu_conn *c, char *body, size_t body_len, hu_conn_cb after);

/* Sends c->resp, then len bytes of the file fd from off (sendfile; the connection closes fd),
 * then calls after (NULL = the request is done). */
void hu_conn_send_file(hu_conn *c, int fd, uint64_t off, uint64_t len, hu_conn_cb after);

/* A complete error response; closes the connection afterwards when close_after (after a
 * lingering drain when the request's body is still coming). The _text form says text in the
 * body instead of the reason phrase. */
void hu_conn_send_error(hu_conn *c, int status, int close_after);
void hu_conn_send_error_text(hu_conn *c, int status, int close_after, const char *text);

/* 429 Too Many Requests with Retry-After (a rate limit), counted by what was limited. */
void hu_conn_send_limited(hu_conn *c, hu_metrics_limit_by by, uint32_t retry_after_s);

/* Writes raw bytes that outlive the call (e.g. "100 Continue"), then calls after. */
void hu_conn_write(hu_conn *c, const char *p, size_t n, hu_conn_cb after);

/* The request is answered: log it, release its settings, go on with the next one. */
void hu_conn_request_done(hu_conn *c);

/* Body sink protocol. */
void hu_conn_take_body(hu_conn *c, const hu_body_sink *sink, void *state);
/* 1 when a body of len bytes fits in the read buffer after the request's head; the sink can
 * then take it whole: on_data once, with all len bytes (len > 0), when they have all come. */
int hu_conn_body_fits(const hu_conn *c, uint64_t len);
void hu_conn_take_whole_body(hu_conn *c, const hu_body_sink *sink, void *state);
void hu_conn_body_consumed(hu_conn *c, size_t n);

/* Thread-pool bookkeeping, so a connection is never freed under a running job. */
void hu_conn_job_started(hu_conn *c);
void hu_conn_job_finished(hu_conn *c);

/* Closes the connection (its socket once pending jobs are done). */
void hu_conn_close(hu_conn *c);

/* Resets the idle timer after progress. */
void hu_conn_progress(hu_conn *c);

/* Runs the completions of writes that finished (the server's idle handle calls this). */
void hu_conn_run_completions(hu_server *srv);

#endif
