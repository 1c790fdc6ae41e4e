/* GET and HEAD: a published file with its signed content type, validators, ranges, and the
 * headers that keep a browser from running what someone uploaded. The body is streamed in
 * chunks read on the thread pool, one chunk in flight per connection. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handlers.h"
#include "http_conditional.h"
#include "http_date.h"
#include "http_range.h"
#include "http_status.h"
#include "mime.h"
#include "storage.h"
#include "upload_auth.h"
#include "upload_path.h"
#include "url.h"

#define DOWNLOAD_CHUNK (256 * 1024)

/* Nothing in an upload may load or run anything; media still play inline. */
#define CSP "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; " \
            "frame-ancestors 'none'; sandbox"

/* A download reads the file on the thread pool into one buffer while the other is being
 * written to the socket (double buffering: disk and network overlap; two buffers a GET). */
enum { BUF_FREE, BUF_READING, BUF_READY, BUF_WRITING };

typedef struct {
    uv_fs_t req;
    hu_conn *conn;
    int fd;
    int job_running;  /* a read is in flight */
    uint64_t off;     /* file offset of the next read */
    uint64_t to_read; /* bytes not yet read */
    uint64_t to_send; /* bytes not yet written */
    int state[2];
    size_t len[2];
    int reading;      /* which buffer the read in flight fills */
    char buf[2][DOWNLOAD_CHUNK];
} hu_download;

static void download_free(hu_download *d) {
    if (d->fd >= 0)
        close(d->fd);
    free(d);
}

static void download_cleanup(hu_conn *c) {
    hu_download *d = c->sink_state;
    if (d != NULL && !d->job_running)
        download_free(d);
}

static void download_pump(hu_conn *c);

static void download_end(hu_conn *c, hu_download *d, int ok) {
    c->sink_state = NULL;
    c->cleanup = NULL;
    download_free(d);
    if (ok)
        hu_conn_request_done(c);
    else if (!c->closing)
        hu_conn_close(c); /* headers are out: a short file can only end the connection */
}

static void read_done(uv_fs_t *req) {
    hu_download *d = req->data;
    hu_conn *c = d->conn;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    d->job_running = 0;
    if (c->closing) {
        download_free(d); /* the connection's cleanup left it to us */
        hu_conn_job_finished(c); /* last: this may free the connection */
        return;
    }
    hu_conn_job_finished(c);
    if (n <= 0) {
        download_end(c, d, 0);
        return;
    }
    d->state[d->reading] = BUF_READY;
    d->len[d->reading] = (size_t)n;
    d->off += (uint64_t)n;
    d->to_read -= (uint64_t)n;
    download_pump(c);
}

static void write_done(hu_conn *c) {
    hu_download *d = c->sink_state;
    for (int i = 0; i < 2; i++)
        if (d->state[i] == BUF_WRITING) {
            d->state[i] = BUF_FREE;
            d->to_send -= d->len[i];
        }
    download_pump(c);
}

/* Starts whatever can start: a write of a ready buffer (when none is being written) and a
 * read into a free buffer (when none is in flight); ends the request when all is sent. */
static void download_pump(hu_conn *c) {
    hu_download *d = c->sink_state;
    int writing = d->state[0] == BUF_WRITING || d->state[1] == BUF_WRITING;
    if (d->to_send == 0 && !writing) {
        download_end(c, d, 1);
        return;
    }
    if (!d->job_running && d->to_read > 0) {
        int i = d->state[0] == BUF_FREE ? 0 : d->state[1] == BUF_FREE ? 1 : -1;
        if (i >= 0) {
            size_t want = d->to_read < DOWNLOAD_CHUNK ? (size_t)d->to_read : DOWNLOAD_CHUNK;
            uv_buf_t buf = uv_buf_init(d->buf[i], (unsigned)want);
            d->req.data = d;
            d->reading = i;
            d->state[i] = BUF_READING;
            d->job_running = 1;
            hu_conn_job_started(c);
            if (uv_fs_read(c->srv->loop, &d->req, d->fd, &buf, 1, (int64_t)d->off, read_done) < 0) {
                d->job_running = 0;
                hu_conn_job_finished(c);
                hu_conn_close(c);
                return;
            }
        }
    }
    if (!writing) {
        /* the ready buffer that was read first: the one not being read into now */
        int i = d->state[0] == BUF_READY && d->state[1] == BUF_READY ? (d->reading ^ 1)
                : d->state[0] == BUF_READY ? 0 : d->state[1] == BUF_READY ? 1 : -1;
        if (i >= 0) {
            d->state[i] = BUF_WRITING;
            hu_conn_write(c, d->buf[i], d->len[i], write_done);
        }
    }
}

/* "download" audit rows are written on the thread pool: a GET never waits for SQLite. */
typedef struct {
    uv_work_t work;
    hu_settings *set;
    uint64_t size;
    char path[HU_MAX_PATH_LEN + 1];
} audit_job;

static void audit_work(uv_work_t *w) {
    audit_job *j = (audit_job *)w;
    hu_server_ledger_audit(&j->set->ledger, "download", NULL, j->path, j->size, NULL);
}

static void audit_done(uv_work_t *w, int status) {
    (void)status;
    audit_job *j = (audit_job *)w;
    hu_settings_release(j->set);
    free(j);
}

static void audit_download(hu_conn *c, const char *path, uint64_t size) {
    if (c->set->ledger.ledger == NULL)
        return;
    audit_job *j = malloc(sizeof *j);
    if (j == NULL)
        return;
    j->set = hu_settings_acquire(c->set);
    j->size = size;
    snprintf(j->path, sizeof j->path, "%s", path);
    if (uv_queue_work(c->srv->loop, &j->work, audit_work, audit_done) < 0)
        audit_done(&j->work, 0);
}

static hu_cond_headers cond_headers(const hu_http_head *h) {
    hu_cond_headers ch = {
        .if_none_match = hu_http_header(h, "If-None-Match"),
        .if_modified_since = hu_http_header(h, "If-Modified-Since"),
        .if_match = hu_http_header(h, "If-Match"),
        .if_unmodified_since = hu_http_header(h, "If-Unmodified-Since"),
        .if_range = hu_http_header(h, "If-Range"),
    };
    return ch;
}

/* Content-Disposition for types a browser would run: attachment, with the name encoded per
 * RFC 6266 / 8187. */
static void add_disposition(hu_response *r, const char *path) {
    hu_slice name = hu_upload_path_basename(HU_CSTR(path));
    char enc[3 * HU_MAX_SEGMENT_LEN + 1];
    if (hu_pct_encode(name, 0, enc, sizeof enc) < 0)
        enc[0] = '\0';
    hu_response_header(r, "Content-Disposition", "attachment; filename*=UTF-8''%s", enc);
}

void hu_handle_get(hu_conn *c, const hu_http_head *h) {
    const hu_config *cfg = &c->set->cfg;
    char path[HU_MAX_PATH_LEN + 1];
    long n = hu_request_path(cfg, h, path, sizeof path);
    int fd = -1;
    struct stat st;
    int rc = n < 0 ? (int)n : hu_storage_open_file(&c->set->storage, path, &fd, &st);
    if (rc < 0) {
        hu_conn_send_error(c, hu_status_from_errno(rc), 0);
        return;
    }

    hu_file_meta meta;
    const char *type = meta.type;
    if (hu_storage_read_meta(&c->set->storage, path, &meta) < 0 || meta.type[0] == '\0' ||
        hu_content_type_check(HU_CSTR(meta.type)) < 0)
        type = hu_mime_from_filename(hu_upload_path_basename(HU_CSTR(path)));

    char etag[48], modified[32];
    int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    size_t etag_len = hu_etag_format((uint64_t)st.st_size, mtime_ns, etag);
    hu_http_date_format(st.st_mtim.tv_sec, modified);
    hu_slice etag_s = {etag, etag_len};
    uint64_t size = (uint64_t)st.st_size;

    hu_cond_headers ch = cond_headers(h);
    int status = hu_conditional_eval(&ch, etag_s, st.st_mtim.tv_sec, 1);
    hu_range range = {0, size ? size - 1 : 0};
    hu_slice range_hdr = hu_http_header(h, "Range");
    if (status == 200 && range_hdr.ptr != NULL &&
        (ch.if_range.ptr == NULL || hu_if_range_allows(ch.if_range, etag_s, st.st_mtim.tv_sec))) {
        int pr = hu_range_parse(range_hdr, size, &range);
        if (pr == 1)
            status = 206;
        else if (pr == -ERANGE)
            status = 416;
        else
            range = (hu_range){0, size ? size - 1 : 0};
    }
    if (status == 412 || status == 416) {
        close(fd);
        if (status == 416) {
            hu_response *r = &c->resp;
            hu_response_start(r, 416, cfg, h);
            hu_response_header(r, "Content-Range", "bytes */%llu", (unsigned long long)size);
            hu_response_header(r, "Content-Length", "0");
            hu_response_end(r, c->keep_alive);
            hu_conn_send(c, NULL, 0, NULL);
        } else {
            hu_conn_send_error(c, 412, 0);
        }
        return;
    }

    uint64_t length = status == 206 ? range.last - range.first + 1 : status == 304 ? 0 : size;
    hu_response *r = &c->resp;
    hu_response_start(r, status, cfg, h);
    hu_response_header(r, "ETag", "%s", etag);
    hu_response_header(r, "Last-Modified", "%s", modified);
    hu_response_header(r, "Cache-Control", "public, max-age=31536000, immutable");
    if (status != 304) {
        hu_response_header(r, "Content-Type", "%s", type);
        hu_response_header(r, "Content-Length", "%llu", (unsigned long long)length);
        hu_response_header(r, "Accept-Ranges", "bytes");
        if (status == 206)
            hu_response_header(r, "Content-Range", "bytes %llu-%llu/%llu",
                               (unsigned long long)range.first, (unsigned long long)range.last,
                               (unsigned long long)size);
    }
    hu_response_header(r, "X-Content-Type-Options", "nosniff");
    hu_response_header(r, "Content-Security-Policy", CSP);
    hu_response_header(r, "Referrer-Policy", "no-referrer");
    if (hu_mime_is_active(HU_CSTR(type)))
        add_disposition(r, path);
    hu_response_end(r, c->keep_alive);

    if (h->method == HU_METHOD_HEAD || status == 304 || length == 0) {
        close(fd);
        hu_conn_send(c, NULL, 0, NULL);
        return;
    }
    audit_download(c, path, length);
    hu_download *d = malloc(sizeof *d);
    if (d == NULL) {
        close(fd);
        hu_conn_send_error(c, 500, 1);
        return;
    }
    d->conn = c;
    d->fd = fd;
    d->job_running = 0;
    d->off = range.first;
    d->to_read = d->to_send = length;
    d->state[0] = d->state[1] = BUF_FREE;
    d->reading = 1;
    c->sink_state = d;
    c->cleanup = download_cleanup;
    hu_conn_send(c, NULL, 0, download_pump);
}
