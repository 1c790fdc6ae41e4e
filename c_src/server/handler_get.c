/* GET and HEAD: a published file with its signed content type, validators, ranges, and the
 * headers that keep a browser from running what someone uploaded. Only a file an upload
 * published, with the record naming this very path, is ever answered (storage.h). The body
 * goes out with sendfile() from the page cache (conn.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* Nothing in an upload may load or run anything; media still play inline. */
#define CSP "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; " \
            "frame-ancestors 'none'; sandbox"

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
    char enc[3 * HU_MAX_NAME_LEN + 1];
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
    hu_file_meta meta;
    int rc = n < 0 ? (int)n
                   : hu_storage_open_file(&c->set->storage, path, (size_t)n, &fd, &st, &meta);
    /* Past its expiry a file is gone, whenever the sweep gets to it: an ephemeral upload must
     * never be served after its expire-before (XEP-0363 1.2). */
    time_t now = time(NULL);
    if (rc == 0 && meta.expires > 0 && meta.expires <= now) {
        close(fd);
        rc = -ENOENT;
    }
    /* <file URL>?thumbnail: the image's thumbnail, served while (and only while) the file
     * itself would be, under the same headers */
    int thumbnail = h->query.len == 9 && memcmp(h->query.ptr, "thumbnail", 9) == 0;
    if (rc == 0 && thumbnail) {
        char key[HU_STORAGE_KEY_LEN + 1];
        close(fd);
        hu_storage_key(path, (size_t)n, key);
        rc = meta.thumbnail ? hu_storage_open_thumbnail(&c->set->storage, key, &fd, &st) : -ENOENT;
    }
    if (rc < 0) {
        hu_conn_send_error(c, hu_status_from_errno(rc), 0);
        return;
    }
    const char *type = thumbnail ? "image/webp" : meta.type;
    if (hu_content_type_check(HU_CSTR(type)) < 0) /* a record from before the check existed */
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
    /* a cache may keep it for a year, or until it expires */
    int64_t max_age = meta.expires > 0 && meta.expires - now < 31536000 ? meta.expires - now
                                                                         : 31536000;
    hu_response_header(r, "Cache-Control", "public, max-age=%lld, immutable", (long long)max_age);
    if (status != 304) {
        hu_response_header(r, "Content-Type", "%s", type);
        hu_response_header(r, "Content-Length", "%llu", (unsigned long long)length);
        hu_response_header(r, "Accept-Ranges", "bytes");
        if (status == 206)
            hu_response_header(r, "Content-Range", "bytes %llu-%llu/%llu",
                               (unsigned long long)range.first, (unsigned long long)range.last,
                               (unsigned long long)size);
    }
    /* what the upload's bytes showed (upload_media.h): a placeholder before the download */
    if (!thumbnail && meta.blurhash[0])
        hu_response_header(r, "Blurhash", "%s", meta.blurhash);
    if (!thumbnail && meta.width > 0)
        hu_response_header(r, "X-Image-Dimensions", "%ux%u", meta.width, meta.height);
    hu_response_header(r, "X-Content-Type-Options", "nosniff");
    hu_response_header(r, "Content-Security-Policy", CSP);
    hu_response_header(r, "Referrer-Policy", "no-referrer");
    if (!thumbnail && hu_mime_is_active(HU_CSTR(type)))
        add_disposition(r, path);
    hu_response_end(r, c->keep_alive);

    if (h->method == HU_METHOD_HEAD || status == 304 || length == 0) {
        close(fd);
        hu_conn_send(c, NULL, 0, NULL);
        return;
    }
    audit_download(c, path, length);
    hu_conn_send_file(c, fd, range.first, length, NULL);
}
