#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access_log.h"
#include "conn_internal.h"
#include "handlers.h"
#include "http_status.h"

/* Lingering close after a refused request whose body is still coming (nginx: lingering_time
 * 30 s, lingering_timeout 5 s). */
#define LINGER_TOTAL_MS 30000
#define LINGER_IDLE_MS 5000
#define LINGER_MAX_BYTES (128u << 20)

static void conn_process(hu_conn *c);
static void do_read(hu_conn *c);
static void start_reading(hu_conn *c);

static const hu_config *live_cfg(const hu_conn *c) {
    return c->set ? &c->set->cfg : &c->srv->settings->cfg;
}

void hu_conn_free_if_done(hu_conn *c) {
    if (c->handles_open > 0 || c->pending > 0)
        return;
    hu_server *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    hu_metrics_connection_closed(srv->metrics);
    if (c->set)
        hu_settings_release(c->set);
    if (c->out_fd >= 0)
        close(c->out_fd);
    hu_transport_free(&c->tr);
    close(c->tr.fd); /* only now: the poll handle is closed and no job uses the socket */
    hu_http_parser_free(&c->parser);
    free(c->rbuf);
    free(c->spare);
    free(c->inflight);
    free(c->resp_body);
    free(c->file_buf);
    free(c);
    hu_server_conn_gone(srv);
}

static void on_handle_closed(uv_handle_t *h) {
    hu_conn *c = h->data;
    c->handles_open--;
    hu_conn_free_if_done(c);
}

void hu_conn_close(hu_conn *c) {
    if (c->closing)
        return;
    c->closing = 1;
    if (c->cleanup) {
        hu_conn_cb cleanup = c->cleanup;
        c->cleanup = NULL;
        cleanup(c);
    }
    c->sink = NULL;
    uv_close((uv_handle_t *)&c->poll, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void hu_conn_job_started(hu_conn *c) { c->pending++; }

void hu_conn_job_finished(hu_conn *c) {
    c->pending--;
    hu_conn_free_if_done(c);
}

/* ---- deferred work ------------------------------------------------------------------------
 * A write that finished at once, or a read of bytes TLS already holds, runs in a later turn of
 * the loop (as uv_write callbacks do): a response that fit in the socket must not recurse into
 * the next pipelined request from inside the handler that sent it. */

static void on_queue_idle(uv_idle_t *h) { hu_conn_run_completions(h->data); }

void hu_conn_queue(hu_conn *c) {
    hu_server *srv = c->srv;
    if (c->queued)
        return;
    c->queued = 1;
    c->pending++;
    c->next_done = NULL;
    if (srv->done_tail)
        srv->done_tail->next_done = c;
    else
        srv->done_head = c;
    srv->done_tail = c;
    if (!uv_is_active((uv_handle_t *)&srv->done_idle))
        uv_idle_start(&srv->done_idle, on_queue_idle);
}

void hu_conn_run_completions(hu_server *srv) {
    hu_conn *c = srv->done_head;
    srv->done_head = srv->done_tail = NULL;
    while (c != NULL) {
        hu_conn *next = c->next_done;
        c->queued = 0;
        c->pending--;
        if (!c->closing && c->write_done) {
            c->write_done = 0;
            hu_conn_write_finished(c);
        }
        if (!c->closing && c->read_deferred) {
            c->read_deferred = 0;
            if (c->reading)
                do_read(c);
        }
        hu_conn_free_if_done(c);
        c = next;
    }
    if (srv->done_head == NULL)
        uv_idle_stop(&srv->done_idle);
}

/* ---- polling and timers ---------------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events);

void hu_conn_update_poll(hu_conn *c) {
    if (c->closing)
        return;
    const hu_transport *t = &c->tr;
    int want = 0;
    if (t->handshaking)
        want = t->want_write ? t->want_write : UV_READABLE;
    else {
        if (c->reading)
            want |= t->want_read ? t->want_read : UV_READABLE;
        if (hu_conn_output_pending(c))
            want |= t->want_write ? t->want_write : UV_WRITABLE;
    }
    if (want == c->poll_events)
        return;
    c->poll_events = want;
    if (want)
        uv_poll_start(&c->poll, want, on_poll);
    else
        uv_poll_stop(&c->poll);
}

/* While a head is awaited the header timer runs from the moment we started waiting and is not
 * reset by trickling bytes (slow-loris), nor by a slow TLS handshake; once a request is being
 * served the idle timer is reset by every bit of progress; a lingering close has its own two
 * limits. */
static void on_timeout(uv_timer_t *t) {
    hu_conn *c = t->data;
    if (!c->lingering && !c->busy && !c->tr.handshaking && hu_http_parser_mid_head(&c->parser)) {
        hu_conn_send_error(c, 408, 1);
        return;
    }
    hu_conn_close(c);
}

static void start_timer_ms(hu_conn *c, uint64_t ms) {
    if (!c->closing)
        uv_timer_start(&c->timer, on_timeout, ms, 0);
}

void hu_conn_progress(hu_conn *c) {
    start_timer_ms(c, (uint64_t)live_cfg(c)->idle_timeout * 1000);
}

/* ---- lingering close ------------------------------------------------------------------- */

static void linger_timer(hu_conn *c) {
    uint64_t now = uv_now(c->srv->loop);
    uint64_t left = c->linger_end_ms > now ? c->linger_end_ms - now : 0;
    start_timer_ms(c, left < LINGER_IDLE_MS ? left : LINGER_IDLE_MS);
}

/* The answer is out; the client may still be sending the body we refused. Closing now would
 * make the kernel reset the connection, and a client that reads only after sending would lose
 * the answer: half-close, then read and discard until it closes too (bounded). */
static void start_linger(hu_conn *c) {
    hu_transport_shutdown(&c->tr);
    c->lingering = 1;
    c->busy = 1;
    c->linger_end_ms = uv_now(c->srv->loop) + LINGER_TOTAL_MS;
    free(c->rbuf);
    free(c->spare);
    c->rbuf = c->spare = NULL;
    c->tr.want_read = 0; /* raw bytes from now on: TLS is not asked for them */
    c->reading = 1;
    hu_conn_update_poll(c);
    linger_timer(c);
}

static void linger_read(hu_conn *c) {
    for (int i = 0; i < 16; i++) {
        ssize_t n = hu_transport_discard(&c->tr, c->srv->scratch, sizeof c->srv->scratch);
        if (n == -EAGAIN)
            break;
        if (n <= 0 || (c->linger_bytes += (uint64_t)n) > LINGER_MAX_BYTES) {
            hu_conn_close(c);
            return;
        }
    }
    linger_timer(c);
}

/* ---- reading ---------------------------------------------------------------------------
 * Only when every byte already read has been processed, so the buffer can be reused from its
 * start and back-pressure is automatic. In a body, reads append to the buffer until it is
 * full or holds the rest of the body: the sink then gets big pieces (one disk job per 512 KiB,
 * not per TCP segment train). */

static void stop_reading(hu_conn *c) {
    if (c->reading) {
        c->reading = 0;
        hu_conn_update_poll(c);
    }
}

static void on_input(hu_conn *c, size_t n) {
    if (n == 0) {
        stop_reading(c);
        /* A client that half-closes after a complete request still gets its answer. */
        if (c->busy && !c->in_body) {
            c->keep_alive = 0;
            return;
        }
        hu_conn_close(c);
        return;
    }
    c->rlen += n;
    if (c->busy || c->in_body)
        hu_conn_progress(c);
    if (c->inflight != NULL) {
        /* reading ahead while the disk has the other buffer: stop when this one is full or
         * holds the rest of the body; it is processed when the disk is done */
        if (c->rlen >= HU_READ_BUF_SIZE || c->rlen >= c->body_left)
            stop_reading(c);
        return;
    }
    /* keep filling while the body goes on and the buffer has room */
    if (c->in_body && !c->busy && c->rlen < HU_READ_BUF_SIZE && c->rlen - c->roff < c->body_left)
        return;
    stop_reading(c);
    conn_process(c);
}

/* Plain: one recv per wake-up. TLS: records until the socket has no more or the buffer is
 * full (what TLS already decrypted is not announced by the socket again). */
static void do_read(hu_conn *c) {
    if (c->lingering) {
        linger_read(c);
        return;
    }
    if (c->rbuf == NULL && (c->rbuf = malloc(HU_READ_BUF_SIZE)) == NULL) {
        hu_conn_close(c);
        return;
    }
    size_t got = 0;
    ssize_t n;
    do {
        n = hu_transport_recv(&c->tr, c->rbuf + c->rlen + got, HU_READ_BUF_SIZE - c->rlen - got);
        if (n > 0)
            got += (size_t)n;
    } while (n > 0 && c->tr.ssl != NULL && c->rlen + got < HU_READ_BUF_SIZE);
    if (n == -EAGAIN || (n > 0 && got > 0)) {
        if (got > 0)
            on_input(c, got);
        else
            hu_conn_update_poll(c); /* TLS may now wait for the other direction */
        return;
    }
    if (got > 0 && n == 0) {
        on_input(c, got); /* the last bytes, then the end */
        if (c->closing || !c->reading)
            return;
    }
    if (n == 0)
        on_input(c, 0);
    else
        hu_conn_close(c);
}

static void do_handshake(hu_conn *c) {
    int rc = hu_transport_handshake(&c->tr);
    if (rc == 1) {
        start_reading(c); /* the first request may already be in TLS's buffer: it checks */
    } else if (rc == -EAGAIN) {
        hu_conn_update_poll(c);
    } else {
        hu_conn_close(c); /* no TLS, or no common ground: nothing to answer in */
    }
}

static void on_poll(uv_poll_t *h, int status, int events) {
    hu_conn *c = h->data;
    (void)events; /* level-triggered: each step below tries and says what it waits for */
    if (status < 0) {
        hu_conn_close(c);
        return;
    }
    if (c->tr.handshaking) {
        do_handshake(c);
        return;
    }
    if (hu_conn_output_pending(c))
        hu_conn_flush_output(c);
    if (c->reading && !c->closing)
        do_read(c);
}

static void start_reading(hu_conn *c) {
    if (c->reading || c->closing)
        return;
    if (!c->in_body) { /* between requests nothing needs the buffers: keep idle memory low */
        free(c->rbuf);
        free(c->spare);
        c->rbuf = c->spare = NULL;
    }
    c->rlen = c->roff = 0;
    c->reading = 1;
    hu_conn_update_poll(c);
    if (hu_transport_pending(&c->tr)) { /* TLS holds bytes the socket will not announce */
        c->read_deferred = 1;
        hu_conn_queue(c);
    }
}

/* Reads on into the buffer after the bytes it holds (a body taken whole). */
static void resume_reading(hu_conn *c) {
    if (c->reading || c->closing)
        return;
    c->reading = 1;
    hu_conn_update_poll(c);
    if (hu_transport_pending(&c->tr)) { /* TLS holds bytes the socket will not announce */
        c->read_deferred = 1;
        hu_conn_queue(c);
    }
}

static void copy_for_log(char *dst, size_t cap, hu_slice s) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static void dispatch(hu_conn *c) {
    hu_http_head *h = c->parser.head;
    hu_server *srv = c->srv;
    c->start_ns = uv_hrtime();
    c->status = 0;
    c->bytes_out = 0;
    c->user[0] = '\0';
    copy_for_log(c->method, sizeof c->method, HU_CSTR(h->method_name));
    copy_for_log(c->target, sizeof c->target, h->path);
    c->keep_alive = h->keep_alive && !srv->draining;
    c->body_unread = h->chunked || h->content_length > 0;
    c->set = hu_settings_acquire(srv->settings);
    c->busy = 1;
    hu_conn_progress(c);
    if (c->metrics_conn) {
        hu_handle_metrics(c, h);
        return;
    }
    uint32_t retry;
    if (!hu_rate_take(srv->limits.ip, c->ip_key, uv_now(srv->loop), &retry)) {
        hu_conn_send_limited(c, HU_METRICS_BY_IP, retry);
        return;
    }
    switch (h->method) {
    case HU_METHOD_PUT:
        hu_handle_put(c, h);
        break;
    case HU_METHOD_HEAD:
        /* a tus client asks for the offset of an upload; anyone else for the file */
        if (hu_http_header(h, "Tus-Resumable").ptr != NULL)
            hu_handle_tus_head(c, h);
        else
            hu_handle_get(c, h);
        break;
    case HU_METHOD_GET:
        hu_handle_get(c, h);
        break;
    case HU_METHOD_PATCH:
        hu_handle_patch(c, h);
        break;
    case HU_METHOD_OPTIONS:
        hu_handle_options(c, h);
        break;
    default:
        hu_conn_send_error(c, 405, 0);
        break;
    }
}

static void conn_process(hu_conn *c) {
    while (!c->busy && !c->closing) {
        size_t avail = c->rlen - c->roff;
        if (c->in_body) {
            if (c->body_left == 0) {
                c->in_body = c->whole_body = 0;
                c->busy = 1;
                c->sink->on_end(c);
                break;
            }
            if (avail == 0 || (c->whole_body && avail < c->body_left)) {
                if (c->whole_body) /* the rest comes into this buffer, after what is here */
                    resume_reading(c);
                break;
            }
            size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
            if (c->sink->on_data(c, c->rbuf + c->roff, n)) {
                /* The sink's job owns these n bytes now. When they were all the buffer held,
                 * the next ones are read into the other buffer meanwhile (double buffering:
                 * network and disk overlap; memory stays at two buffers). */
                c->busy = 1;
                c->roff += n;
                c->body_left -= n;
                if (c->roff == c->rlen && c->body_left > 0) {
                    c->inflight = c->rbuf;
                    c->rbuf = c->spare;
                    c->spare = NULL;
                    start_reading(c);
                }
                return;
            }
            c->roff += n;
            c->body_left -= n;
            continue;
        }
        if (avail == 0)
            break;
        int done;
        long n = hu_http_parser_feed(&c->parser, c->rbuf + c->roff, avail, &done);
        if (n < 0) {
            c->busy = 1;
            c->keep_alive = 0;
            copy_for_log(c->method, sizeof c->method, HU_CSTR("-"));
            c->start_ns = uv_hrtime();
            hu_conn_send_error(c, hu_status_from_errno((int)n), 1);
            return;
        }
        c->roff += (size_t)n;
        if (done)
            dispatch(c);
    }
    if (!c->busy && !c->closing && c->roff == c->rlen)
        start_reading(c);
}

static void take_body(hu_conn *c, const hu_body_sink *sink, void *state, int whole) {
    c->sink = sink;
    c->sink_state = state;
    c->body_left = c->parser.head->content_length;
    c->body_unread = 0;
    c->in_body = 1;
    c->whole_body = whole;
    c->busy = 0;
    conn_process(c);
}

void hu_conn_take_body(hu_conn *c, const hu_body_sink *sink, void *state) {
    take_body(c, sink, state, 0);
}

int hu_conn_body_fits(const hu_conn *c, uint64_t len) {
    return len <= HU_READ_BUF_SIZE - c->roff;
}

void hu_conn_take_whole_body(hu_conn *c, const hu_body_sink *sink, void *state) {
    take_body(c, sink, state, 1);
}

void hu_conn_body_consumed(hu_conn *c, size_t n) {
    (void)n; /* accounted when handed over (conn_process) */
    if (c->inflight != NULL) {
        c->spare = c->inflight;
        c->inflight = NULL;
    }
    c->busy = 0;
    hu_conn_progress(c);
    if (c->reading)
        return; /* the read-ahead buffer is still filling: input goes on */
    conn_process(c);
}

void hu_conn_send_error_text(hu_conn *c, int status, int close_after, const char *text) {
    if (c->in_body && c->body_left > 0)
        c->body_unread = 1; /* failed mid-body (a full disk): the rest is still coming */
    if (close_after || c->body_unread)
        c->keep_alive = 0;
    c->status = status;
    /* 503 is always passing (the ledger is busy or being reconnected): say when to retry */
    hu_response_error(&c->resp, status, live_cfg(c), c->parser.head, c->keep_alive,
                      status == 503 ? 1 : 0, text);
    hu_conn_send(c, NULL, 0, NULL);
}

void hu_conn_send_error(hu_conn *c, int status, int close_after) {
    hu_conn_send_error_text(c, status, close_after, NULL);
}

void hu_conn_send_limited(hu_conn *c, hu_metrics_limit_by by, uint32_t retry_after_s) {
    hu_metrics_rate_limited(c->srv->metrics, by);
    if (c->body_unread)
        c->keep_alive = 0;
    c->status = 429;
    hu_response_error(&c->resp, 429, live_cfg(c), c->parser.head, c->keep_alive, retry_after_s,
                      by == HU_METRICS_BY_USER ? "Too many uploads: retry later"
                                               : "Too many requests: retry later");
    hu_conn_send(c, NULL, 0, NULL);
}

void hu_conn_request_done(hu_conn *c) {
    hu_server *srv = c->srv;
    if (c->parser.head != NULL)
        hu_metrics_request(srv->metrics, c->parser.head->method, c->status,
                           uv_hrtime() - c->start_ns);
    if (srv->access_log)
        hu_access_log_write(srv->access_log, c->peer, c->user, c->method, c->target, c->status,
                            c->bytes_out, uv_hrtime() - c->start_ns);
    if (c->set) {
        hu_settings_release(c->set);
        c->set = NULL;
    }
    c->sink = NULL;
    c->cleanup = NULL;
    c->in_body = c->whole_body = 0;
    if (c->body_unread) {
        start_linger(c);
        return;
    }
    if (!c->keep_alive || srv->draining) {
        hu_conn_close(c);
        return;
    }
    hu_http_parser_next(&c->parser);
    c->busy = 0;
    start_timer_ms(c, (uint64_t)live_cfg(c)->header_timeout * 1000);
    conn_process(c);
}

/* ---- accepting ------------------------------------------------------------------------- */

static void accept_one(hu_server *srv, int fd, const struct sockaddr_storage *ss, int metrics) {
    hu_conn *c = calloc(1, sizeof *c);
    if (c == NULL || uv_poll_init(srv->loop, &c->poll, fd) < 0) {
        free(c);
        close(fd);
        return;
    }
    hu_tls *tls = metrics ? NULL : srv->settings->tls;
    hu_transport_init(&c->tr, fd, tls ? hu_tls_accept(tls, fd) : NULL);
    c->metrics_conn = metrics;
    c->out_fd = -1;
    c->srv = srv;
    uv_timer_init(srv->loop, &c->timer);
    c->poll.data = c->timer.data = c;
    c->handles_open = 2;
    hu_http_parser_init(&c->parser);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    hu_metrics_connection_opened(srv->metrics);
    if (srv->n_conns > srv->settings->cfg.max_connections || (tls && c->tr.ssl == NULL)) {
        /* Over the cap: a best-effort 503 (no buffer, no state kept), then the door. Over
         * TLS there is no way to say it before a handshake: just the door. */
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                   "Retry-After: 1\r\nConnection: close\r\n\r\n";
        if (!tls && send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            (void)0; /* nothing more to do for it */
        hu_conn_close(c);
        return;
    }
    uv_ip_name((const struct sockaddr *)ss, c->peer, sizeof c->peer);
    hu_rate_ip_key((const struct sockaddr *)ss, c->ip_key);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    start_timer_ms(c, (uint64_t)srv->settings->cfg.header_timeout * 1000);
    if (c->tr.handshaking)
        hu_conn_update_poll(c);
    else
        start_reading(c);
}

int hu_conn_accept_all(hu_server *srv, int listen_fd, int metrics) {
    for (int i = 0; i < 256 && !srv->draining; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(listen_fd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        }
        accept_one(srv, fd, &ss, metrics);
    }
    return 0;
}
