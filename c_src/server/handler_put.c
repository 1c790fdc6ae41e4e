/* PUT: authorize before reading the body, stream the body to a partial file on the thread
 * pool (one write in flight per connection, so memory stays bounded), hash it on the way,
 * then publish atomically and answer 201. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "handlers.h"
#include "http_date.h"
#include "http_status.h"
#include "storage.h"
#include "upload_auth.h"
#include "upload_path.h"

typedef struct {
    uv_work_t work;
    hu_conn *conn;
    int fd;
    char key[HU_STORAGE_KEY_LEN + 1];
    hu_upload_grant grant;
    uint64_t received;
    EVP_MD_CTX *sha;
    const char *chunk;
    size_t chunk_len;
    int err;
    int job_running;
    hu_file_meta meta;
} hu_upload;

static const hu_storage *storage_of(const hu_upload *u) { return &u->conn->set->storage; }

static void upload_free(hu_upload *u) {
    EVP_MD_CTX_free(u->sha);
    free(u);
}

/* The connection died mid-upload: drop the partial file, unless a job still uses it (the
 * job's completion sees the closed connection and cleans up then). */
static void upload_cleanup(hu_conn *c) {
    hu_upload *u = c->sink_state;
    if (u == NULL || u->job_running)
        return;
    hu_storage_abort(storage_of(u), u->key, u->fd);
    upload_free(u);
}

static void write_job(uv_work_t *w) {
    hu_upload *u = w->data;
    u->err = hu_storage_write(u->fd, u->chunk, u->chunk_len, u->received);
    if (u->err == 0 && EVP_DigestUpdate(u->sha, u->chunk, u->chunk_len) != 1)
        u->err = -EIO;
}

static void write_done(uv_work_t *w, int status) {
    hu_upload *u = w->data;
    hu_conn *c = u->conn;
    u->job_running = 0;
    if (status < 0 && u->err == 0)
        u->err = status;
    if (c->closing || u->err < 0) {
        int err = u->err;
        hu_storage_abort(storage_of(u), u->key, u->fd);
        c->sink_state = NULL;
        c->cleanup = NULL;
        upload_free(u);
        if (!c->closing)
            hu_conn_send_error(c, hu_status_from_errno(err), 1);
        hu_conn_job_finished(c);
        return;
    }
    u->received += u->chunk_len;
    hu_conn_job_finished(c);
    hu_conn_body_consumed(c, u->chunk_len);
}

static int upload_data(hu_conn *c, const char *p, size_t n) {
    hu_upload *u = c->sink_state;
    u->chunk = p;
    u->chunk_len = n;
    u->job_running = 1;
    hu_conn_job_started(c);
    if (uv_queue_work(c->srv->loop, &u->work, write_job, write_done) < 0) {
        u->job_running = 0;
        hu_conn_job_finished(c);
        hu_conn_close(c);
    }
    return 1;
}

static void publish_job(uv_work_t *w) {
    hu_upload *u = w->data;
    uint8_t md[32];
    unsigned mdlen = 0;
    if (EVP_DigestFinal_ex(u->sha, md, &mdlen) != 1) {
        hu_storage_abort(storage_of(u), u->key, u->fd);
        u->err = -EIO;
        return;
    }
    hu_file_meta *m = &u->meta;
    snprintf(m->type, sizeof m->type, "%s", u->grant.type);
    snprintf(m->user, sizeof m->user, "%s", u->grant.user);
    snprintf(m->scheme, sizeof m->scheme, "%s", u->grant.scheme);
    hu_hex_encode(md, mdlen, m->sha256);
    m->uploaded = (int64_t)time(NULL);
    m->size = u->received;
    u->err = hu_storage_publish(storage_of(u), u->key, u->fd, u->grant.path, m);
    u->fd = -1;
}

/* JSON string body with escapes; returns bytes written. out must hold 6 * strlen(s) + 3. */
static size_t json_string(char *out, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[ch >> 4];
            out[o + 5] = hex[ch & 15];
            o += 6;
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o++] = '"';
    return o;
}

static char *created_body(const hu_upload *u, size_t *len) {
    hu_slice name = hu_upload_path_basename((hu_slice){u->grant.path, u->grant.path_len});
    size_t ulen = strlen(u->grant.user);
    char *body = malloc(160 + 6 * (name.len + ulen));
    if (body == NULL)
        return NULL;
    char when[24];
    hu_rfc3339_format(u->meta.uploaded, when);
    size_t o = (size_t)sprintf(body, "{\"success\":true,\"filename\":");
    o += json_string(body + o, name.ptr, name.len);
    o += (size_t)sprintf(body + o, ",\"size\":%llu,\"user\":", (unsigned long long)u->received);
    if (ulen)
        o += json_string(body + o, u->grant.user, ulen);
    else
        o += (size_t)sprintf(body + o, "null");
    o += (size_t)sprintf(body + o, ",\"uploaded_at\":\"%s\"}\n", when);
    *len = o;
    return body;
}

static void publish_done(uv_work_t *w, int status) {
    hu_upload *u = w->data;
    hu_conn *c = u->conn;
    u->job_running = 0;
    c->sink_state = NULL;
    c->cleanup = NULL;
    if (status < 0 && u->err == 0)
        u->err = status;
    if (!c->closing) {
        if (u->err < 0) {
            hu_conn_send_error(c, hu_status_from_errno(u->err), 0);
        } else {
            size_t len = 0;
            char *body = created_body(u, &len);
            hu_response *r = &c->resp;
            hu_response_start(r, 201, &c->set->cfg, c->parser.head);
            hu_response_header(r, "Content-Type", "application/json");
            hu_response_header(r, "Content-Length", "%zu", body ? len : 0);
            hu_response_end(r, c->keep_alive);
            hu_conn_send(c, body, body ? len : 0, NULL);
        }
    }
    upload_free(u);
    hu_conn_job_finished(c);
}

static void upload_end(hu_conn *c) {
    hu_upload *u = c->sink_state;
    u->job_running = 1;
    hu_conn_job_started(c);
    if (uv_queue_work(c->srv->loop, &u->work, publish_job, publish_done) < 0) {
        u->job_running = 0;
        hu_conn_job_finished(c);
        hu_conn_close(c);
    }
}

static const hu_body_sink upload_sink = {upload_data, upload_end};

static void start_body(hu_conn *c) {
    hu_conn_take_body(c, &upload_sink, c->sink_state);
}

void hu_handle_put(hu_conn *c, const hu_http_head *h) {
    hu_upload *u = calloc(1, sizeof *u);
    if (u == NULL) {
        hu_conn_send_error(c, 500, 1);
        return;
    }
    u->conn = c;
    u->fd = -1;
    u->work.data = u;
    int rc = hu_upload_authorize(&c->set->cfg, h, (int64_t)time(NULL), &u->grant);
    if (rc == 0) {
        snprintf(c->user, sizeof c->user, "%.127s", u->grant.user); /* log only */
        int exists = hu_storage_exists(&c->set->storage, u->grant.path);
        rc = exists == 1 ? -EEXIST : exists;
    }
    if (rc == 0) {
        hu_storage_key(u->grant.path, u->grant.path_len, u->key);
        rc = hu_storage_begin(&c->set->storage, u->key, &u->fd);
    }
    if (rc == 0 && (u->sha = EVP_MD_CTX_new()) == NULL)
        rc = -ENOMEM;
    if (rc == 0 && EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL) != 1)
        rc = -EIO;
    if (rc < 0) {
        if (u->fd >= 0)
            hu_storage_abort(&c->set->storage, u->key, u->fd);
        upload_free(u);
        /* The body may already be on its way: answer and close rather than read it. */
        hu_conn_send_error(c, hu_status_from_errno(rc), 1);
        return;
    }
    c->sink_state = u;
    c->cleanup = upload_cleanup;
    if (h->expect_continue)
        hu_conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, start_body);
    else
        start_body(c);
}
