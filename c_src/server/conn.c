#include "conn.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "access_log.h"
#include "handlers.h"
#include "http_status.h"

#define CONN_OF(ptr, field) ((hu_conn *)((char *)(ptr) - offsetof(hu_conn, field)))

static void conn_process(hu_conn *c);

static const hu_config *live_cfg(const hu_conn *c) {
    return c->set ? &c->set->cfg : &c->srv->settings->cfg;
}

static void free_if_done(hu_conn *c) {
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
    if (c->set)
        hu_settings_release(c->set);
    hu_http_parser_free(&c->parser);
    free(c->rbuf);
    free(c->spare);
    free(c->inflight);
    free(c->resp_body);
    free(c);
    hu_server_conn_gone(srv);
}

static void on_handle_closed(uv_handle_t *h) {
    hu_conn *c = h->data;
    c->handles_open--;
    free_if_done(c);
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
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void hu_conn_job_started(hu_conn *c) { c->pending++; }

void hu_conn_job_finished(hu_conn *c) {
    c->pending--;
    free_if_done(c);
}

/* Timers. While a head is awaited the header timer runs from the moment we started waiting
 * and is not reset by trickling bytes (slow-loris); once a request is being served the idle
 * timer is reset by every bit of progress. */
static void on_timeout(uv_timer_t *t) {
    hu_conn *c = t->data;
    if (!c->busy && hu_http_parser_mid_head(&c->parser)) {
        hu_conn_send_error(c, 408, 1);
        return;
    }
    hu_conn_close(c);
}

static void start_timer(hu_conn *c, uint32_t secs) {
    if (!c->closing)
        uv_timer_start(&c->timer, on_timeout, (uint64_t)secs * 1000, 0);
}

void hu_conn_progress(hu_conn *c) { start_timer(c, live_cfg(c)->idle_timeout); }

/* Reading: only when every byte already read has been processed, so the buffer can be
 * reused from its start and back-pressure is automatic. In a body, reads append to the
 * buffer until it is full or holds the rest of the body: the sink then gets big pieces (one
 * disk job per 256 KiB, not per TCP segment train). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    hu_conn *c = h->data;
    if (c->rbuf == NULL)
        c->rbuf = malloc(HU_READ_BUF_SIZE);
    buf->base = c->rbuf ? c->rbuf + c->rlen : NULL;
    buf->len = c->rbuf ? HU_READ_BUF_SIZE - c->rlen : 0;
}

static void stop_reading(hu_conn *c) {
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    (void)buf;
    hu_conn *c = s->data;
    if (n == 0)
        return;
    if (n < 0) {
        stop_reading(c);
        /* A client that half-closes after a complete request still gets its answer. */
        if (c->busy && !c->in_body) {
            c->keep_alive = 0;
            return;
        }
        hu_conn_close(c);
        return;
    }
    c->rlen += (size_t)n;
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

static void start_reading(hu_conn *c) {
    if (c->reading || c->closing)
        return;
    if (!c->in_body) { /* between requests nothing needs the buffers: keep idle memory low */
        free(c->rbuf);
        free(c->spare);
        c->rbuf = c->spare = NULL;
    }
    c->rlen = c->roff = 0;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    else
        hu_conn_close(c);
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
                c->in_body = 0;
                c->busy = 1;
                c->sink->on_end(c);
                break;
            }
            if (avail == 0)
                break;
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

void hu_conn_take_body(hu_conn *c, const hu_body_sink *sink, void *state) {
    c->sink = sink;
    c->sink_state = state;
    c->body_left = c->parser.head->content_length;
    c->body_unread = 0;
    c->in_body = 1;
    c->busy = 0;
    conn_process(c);
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
        return; /* the read-ahead buffer is still filling: on_read goes on */
    conn_process(c);
}

static void on_write(uv_write_t *req, int status) {
    hu_conn *c = CONN_OF(req, write_req);
    c->pending--;
    free(c->resp_body);
    c->resp_body = NULL;
    if (status < 0 || c->closing) {
        hu_conn_close(c);
        free_if_done(c);
        return;
    }
    c->bytes_out += c->write_len;
    hu_conn_progress(c);
    hu_conn_cb after = c->after_write;
    c->after_write = NULL;
    if (after)
        after(c);
    else
        hu_conn_request_done(c);
}

static void write_bufs(hu_conn *c, uv_buf_t *bufs, unsigned n, hu_conn_cb after) {
    c->after_write = after;
    c->write_len = 0;
    for (unsigned i = 0; i < n; i++)
        c->write_len += bufs[i].len;
    c->pending++;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, n, on_write) < 0) {
        c->pending--;
        hu_conn_close(c);
    }
}

void hu_conn_send(hu_conn *c, char *body, size_t body_len, hu_conn_cb after) {
    if (c->closing) {
        free(body);
        return;
    }
    if (c->resp.overflow) {
        free(body);
        hu_conn_send_error(c, 500, 1);
        return;
    }
    if (c->status == 0 || c->status == 100)
        c->status = atoi(c->resp.buf + 9);
    c->resp_body = body;
    uv_buf_t bufs[2] = {uv_buf_init(c->resp.buf, (unsigned)c->resp.len),
                        uv_buf_init(body, (unsigned)body_len)};
    write_bufs(c, bufs, body && body_len ? 2 : 1, after);
}

void hu_conn_send_error(hu_conn *c, int status, int close_after) {
    if (close_after || c->body_unread)
        c->keep_alive = 0;
    c->status = status;
    hu_response_error(&c->resp, status, live_cfg(c), c->parser.head, c->keep_alive);
    hu_conn_send(c, NULL, 0, NULL);
}

void hu_conn_write(hu_conn *c, const char *p, size_t n, hu_conn_cb after) {
    uv_buf_t buf = uv_buf_init((char *)p, (unsigned)n);
    write_bufs(c, &buf, 1, after);
}

void hu_conn_request_done(hu_conn *c) {
    hu_server *srv = c->srv;
    if (srv->access_log)
        hu_access_log_write(srv->access_log, c->peer, c->user, c->method, c->target, c->status,
                            c->bytes_out, uv_hrtime() - c->start_ns);
    if (c->set) {
        hu_settings_release(c->set);
        c->set = NULL;
    }
    c->sink = NULL;
    c->cleanup = NULL;
    c->in_body = 0;
    if (!c->keep_alive || c->body_unread || srv->draining) {
        hu_conn_close(c);
        return;
    }
    hu_http_parser_next(&c->parser);
    c->busy = 0;
    start_timer(c, live_cfg(c)->header_timeout);
    conn_process(c);
}

void hu_conn_accept(hu_server *srv) {
    hu_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    hu_http_parser_init(&c->parser);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&c->tcp) < 0) {
        hu_conn_close(c);
        return;
    }
    if (srv->n_conns > srv->settings->cfg.max_connections) {
        /* Over the cap: a best-effort 503 (no buffer, no state kept), then the door. */
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                   "Retry-After: 1\r\nConnection: close\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)busy, sizeof busy - 1);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        hu_conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        uv_ip_name((struct sockaddr *)&ss, c->peer, sizeof c->peer);
    uv_tcp_nodelay(&c->tcp, 1);
    start_timer(c, srv->settings->cfg.header_timeout);
    start_reading(c);
}
