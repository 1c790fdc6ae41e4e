#include "upload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "http_date.h"
#include "http_status.h"
#include "storage.h"
#include "upload_hash.h"
#include "upload_media.h"
#include "upload_path.h"

/* Bearer uploads at least this large save their resumption state up front, so even a kill
 * of the server mid-upload leaves them resumable; smaller ones save it only when cut. */
#define HU_RESUME_STATE_EARLY (1u << 20)

/* How far (in body bytes written) the hash may be behind before the body stops being read:
 * enough pieces to ride out the jitter between the two, few enough to be still in the page
 * cache when they are read back. */
#define HU_HASH_LAG (16u << 20)

typedef struct hu_upload {
    uv_work_t work; /* first: the request is the job */
    hu_conn *conn;
    hu_upload_kind kind;
    int fd;
    char key[HU_STORAGE_KEY_LEN + 1];
    hu_upload_grant grant;
    uint64_t base;      /* partial file length when this request started */
    uint64_t received;  /* body bytes of this request written so far */
    hu_upload_hash sha; /* PUT only (sha.ctx set): the digest, computed as the bytes pass */
    const char *chunk;  /* the piece the connection handed over (until given back) */
    size_t chunk_len;
    int piece_out;  /* the piece's buffer is not given back yet */
    int piece_held; /* the last piece waits for the hash job before its job is queued */
    int err;
    int job_running; /* the job of work (the hash job runs beside it: sha.running) */
    int named;       /* the upload file has its .partial/<key> name (else O_TMPFILE) */
    int state_saved;
    int published;
    int last_piece; /* the piece in flight completes the file: its job publishes too */
    int hash_inline; /* the piece in flight is hashed by its own job (hash_with_write) */
    int streaming;   /* counted in the server's streaming_uploads */
    int whole;      /* a small PUT: its body taken whole, then begun, written and published
                       by one job (whole_job) */
    int claim_with_completion; /* whole: the slot is claimed in the completion's transaction */
    int finished;   /* published (or failed publishing): upload_end only answers */
    uint64_t expect_offset; /* PATCH: the offset the client says it resumes at */
    uint64_t piece_len;     /* PATCH: this request's Content-Length */
    int expect_continue;
    hu_retention retention; /* the grant's, from its reservation (begin_job) */
    hu_file_meta meta;
    /* the group commit of the published file (record_then): its completion, what goes on
     * when it is recorded, with the status of the job that published */
    hu_server_record record;
    void (*after_record)(struct hu_upload *u, int status);
    int job_status;
    uint64_t record_start;
} hu_upload;

static const hu_storage *storage_of(const hu_upload *u) { return &u->conn->set->storage; }

int hu_upload_key_busy(hu_server *srv, const char *key) {
    for (hu_conn *c = srv->conns; c != NULL; c = c->next)
        if (c->upload_key != NULL && strcmp(c->upload_key, key) == 0)
            return 1;
    return 0;
}

static void resume_meta(const hu_upload *u, hu_file_meta *m) {
    memset(m, 0, sizeof *m);
    memcpy(m->path, u->grant.path, u->grant.path_len + 1);
    snprintf(m->type, sizeof m->type, "%s", u->grant.type);
    snprintf(m->user, sizeof m->user, "%s", u->grant.user);
    snprintf(m->scheme, sizeof m->scheme, "%s", u->grant.scheme);
    m->size = u->grant.size;
    m->expires = u->grant.expires;
    m->uploaded = (int64_t)time(NULL);
}

static int resumable(const hu_upload *u) { return u->grant.expires > 0; }

static void upload_free(hu_upload *u) {
    hu_conn *c = u->conn;
    if (c->sink_state == u) {
        c->sink_state = NULL;
        c->cleanup = NULL;
    }
    c->upload_key = NULL;
    if (u->streaming)
        c->srv->streaming_uploads--;
    hu_upload_hash_free(&u->sha);
    free(u);
}

/* Keeps the received bytes for a tus resume (Bearer uploads, until the token expires), or
 * drops them (legacy uploads cannot resume: no expiry bounds how long they would be kept). */
static void keep_or_drop(hu_upload *u) {
    if (resumable(u) && !u->named && u->fd >= 0)
        u->named = hu_storage_name_partial(storage_of(u), u->key, u->fd) == 0;
    if (u->fd >= 0)
        close(u->fd);
    u->fd = -1;
    if (!resumable(u) || !u->named) {
        if (u->named)
            hu_storage_abort(storage_of(u), u->key, -1);
        return;
    }
    if (!u->state_saved) {
        hu_file_meta m;
        resume_meta(u, &m);
        if (hu_storage_save_resume(storage_of(u), u->key, -1, &m) < 0)
            hu_storage_abort(storage_of(u), u->key, -1);
        else
            u->state_saved = 1;
    }
}

static int busy(const hu_upload *u) { return u->job_running || u->sha.running; }

/* The connection died mid-body; a running job cleans up when it completes instead. */
static void upload_cleanup(hu_conn *c) {
    hu_upload *u = c->sink_state;
    if (u == NULL || busy(u))
        return;
    keep_or_drop(u);
    upload_free(u);
}

/* A piece written on its own: its hash is the hash job's, from the file, unless the job
 * hashes it from memory right after writing it (hash_with_write). */
static void write_job(uv_work_t *w) {
    hu_upload *u = (hu_upload *)w;
    u->err = hu_storage_write(u->fd, u->chunk, u->chunk_len, u->base + u->received);
    if (u->err == 0 && u->hash_inline)
        hu_upload_hash_piece(&u->sha, u->chunk, u->chunk_len);
}

static void publish_job(uv_work_t *w);

/* The piece that completes the file: write, hash what is left (read back what the hash job
 * did not get to, then this piece from memory), publish, all in one thread-pool trip (for a
 * small upload that is the whole body: one job instead of two). Never while a hash job runs. */
static void write_publish_job(uv_work_t *w) {
    hu_upload *u = (hu_upload *)w;
    write_job(w);
    if (u->err < 0)
        return;
    if (u->sha.ctx != NULL) {
        hu_upload_hash_file(&u->sha, u->received);
        hu_upload_hash_piece(&u->sha, u->chunk, u->chunk_len);
    }
    u->received += u->chunk_len;
    publish_job(w);
    u->received -= u->chunk_len; /* write_done adds it, as for any piece */
}

static int queue_piece(hu_upload *u);
static void hash_done(hu_upload_hash *h);
static void whole_job(uv_work_t *w);

/* What comes next once a job of the upload has ended (on the loop thread): failing or
 * dropping the upload once no job uses it any more, the held piece's job (it waited for the
 * hash job), more hashing, and giving the piece's buffer back (reading on) unless the hash is
 * more than HU_HASH_LAG behind. Accounts for the job that ended (hu_conn_job_finished). */
static void settle(hu_upload *u) {
    hu_conn *c = u->conn;
    if ((u->err < 0 && !u->finished) || c->closing) {
        if (busy(u)) { /* the other job settles it */
            hu_conn_job_finished(c);
            return;
        }
        int err = u->err;
        if (err < 0 && !u->finished) {
            /* A full disk or an I/O error: nothing of this upload is worth keeping. */
            hu_storage_abort(storage_of(u), u->key, u->fd);
            u->fd = -1;
        } else if (!u->finished) {
            keep_or_drop(u);
        }
        upload_free(u);
        if (err < 0 && !c->closing)
            hu_conn_send_error(c, hu_status_from_errno(err), 1);
        hu_conn_job_finished(c);
        return;
    }
    hu_upload_hash *h = &u->sha;
    if (u->piece_held && !h->running) {
        u->piece_held = 0;
        if (queue_piece(u) < 0) { /* the connection is closed: u is gone */
            hu_conn_job_finished(c);
            return;
        }
    }
    int last_queued = u->job_running && u->last_piece;
    if (h->ctx != NULL && !h->running && h->err == 0 && !last_queued && !u->finished &&
        h->done < u->received) {
        hu_conn_job_started(c);
        if (hu_upload_hash_start(h, c->srv->loop, u->received, hash_done) < 0)
            hu_conn_job_finished(c); /* h->err fails the upload at its end */
    }
    int give_back = u->piece_out && !u->job_running && !u->piece_held &&
                    (!h->running || u->received - h->known <= HU_HASH_LAG);
    hu_conn_job_finished(c);
    if (give_back) {
        u->piece_out = 0;
        hu_conn_body_consumed(c, u->chunk_len);
    }
}

static void record_then(hu_upload *u, int status, void (*then)(hu_upload *u, int status));

static void write_ended(hu_upload *u, int status) {
    u->job_running = 0;
    if (u->hash_inline) {
        u->hash_inline = 0;
        u->sha.known = u->sha.done;
    }
    if (status < 0 && u->err == 0)
        u->err = status;
    /* After a publishing job (fd closed by it), success or failure is upload_end's to answer. */
    if (u->last_piece && (u->err == 0 || u->fd < 0))
        u->finished = 1;
    if (u->err == 0 || u->finished)
        u->received += u->chunk_len;
    settle(u);
}

static void write_done(uv_work_t *w, int status) {
    record_then((hu_upload *)w, status, write_ended);
}

static void hash_done(hu_upload_hash *h) { settle(h->data); }

/* 0, or a negative errno with the connection closed (and u freed unless the hash job runs:
 * its settle drops it). */
static int queue_piece(hu_upload *u) {
    hu_conn *c = u->conn;
    u->job_running = 1;
    hu_conn_job_started(c);
    int rc = uv_queue_work(c->srv->loop, &u->work,
                           u->whole ? whole_job : u->last_piece ? write_publish_job : write_job,
                           write_done);
    if (rc < 0) {
        u->job_running = 0;
        hu_conn_job_finished(c);
        hu_conn_close(c);
    }
    return rc;
}

/* Whether a piece's own job hashes it, from memory, after writing it, instead of the hash
 * job reading it back from the page cache on another core: when the hash has caught up and
 * at least as many uploads stream as there are cores. Those keep every core busy, so the
 * read-back buys no parallelism and its copy (7 % of the server's CPU with 64 uploads of
 * 1 MiB) is pure cost. An upload alone keeps the read-back: its hash then runs beside its
 * writes, on the other core. */
static int hash_with_write(const hu_upload *u) {
    const hu_upload_hash *h = &u->sha;
    const hu_server *srv = u->conn->srv;
    return h->ctx != NULL && !h->running && h->err == 0 && h->done == u->received &&
           srv->streaming_uploads >= srv->cores;
}

/* Each piece is written by a job of its own and its buffer given back as soon as that is
 * done: the connection reads the next piece into it while the hash job reads back, on
 * another core, what was written (or the piece's job hashes it: hash_with_write). The last
 * piece waits for the hash job: its own job finishes the hash and publishes. (A PUT's body
 * is exactly its signed size, so its last piece is the one that completes the file: no hash
 * job outlives the body.) */
static int upload_data(hu_conn *c, const char *p, size_t n) {
    hu_upload *u = c->sink_state;
    hu_metrics_upload_bytes(c->srv->metrics, n);
    u->chunk = p;
    u->chunk_len = n;
    u->piece_out = 1;
    u->last_piece = u->base + u->received + n == u->grant.size;
    if (u->last_piece && u->sha.running) {
        u->piece_held = 1; /* queued by settle when the hash job is done */
    } else {
        u->hash_inline = !u->last_piece && hash_with_write(u);
        queue_piece(u);
    }
    return 1;
}

static void recorded(void *arg, int rc) {
    hu_upload *u = arg;
    if (u->conn->set->ledger.ledger != NULL)
        hu_metrics_ledger_commit(u->conn->srv->metrics, uv_hrtime() - u->record_start);
    if (rc < 0) { /* taken back by the group commit */
        u->err = rc;
        u->published = 0;
    }
    u->after_record(u, u->job_status);
}

/* After a job (on the loop thread): when it published the file (durable, with its name), the
 * stored-file row recorded by the next group commit, shared with the uploads completing at
 * the same time, before anything goes on; then (or at once, for any other job)
 * then(u, status). The job counts as running until then: nothing frees u meanwhile. */
static void record_then(hu_upload *u, int status, void (*then)(hu_upload *u, int status)) {
    if (!u->published || u->record.cb != NULL) {
        then(u, status);
        return;
    }
    const hu_file_meta *m = &u->meta;
    hu_settings *set = u->conn->set;
    u->after_record = then;
    u->job_status = status;
    u->record = (hu_server_record){
        .key = u->key,
        .c = {.file = hu_server_ledger_row(m, u->grant.path, u->grant.user, m->size,
                                           u->conn->peer),
              .claim = u->claim_with_completion,
              .claim_until = u->grant.expires,
              .default_quota = set->cfg.quota_per_user,
              .retention = u->retention},
        .cb = recorded,
        .arg = u,
    };
    u->record_start = uv_hrtime();
    hu_server_ledger_record(&set->ledger, u->conn->srv->loop, storage_of(u), &u->record);
}

static void publish_job(uv_work_t *w) {
    hu_upload *u = (hu_upload *)w;
    hu_file_meta *m = &u->meta;
    const hu_config *cfg = &u->conn->set->cfg;
    resume_meta(u, m);
    /* the file's expiry: the retention its slot was granted with (its purpose), or max_days,
     * and never after what the token itself demands (a JWT's "expires") */
    hu_retention keep = u->retention;
    if (u->grant.file_expires > 0 &&
        (keep.expire_before == 0 || u->grant.file_expires < keep.expire_before))
        keep.expire_before = u->grant.file_expires;
    m->expires = hu_retention_expires(&keep, m->uploaded, cfg->max_days);
    m->size = u->base + u->received;
    if (u->sha.ctx != NULL) {
        hu_upload_hash_file(&u->sha, u->received); /* an empty body; else nothing left */
        u->err = hu_upload_hash_final(&u->sha, m->sha256);
    } else {
        /* the bytes came in several requests, maybe across restarts: read them back */
        u->err = hu_storage_hash_partial(storage_of(u), u->key, m->sha256);
    }
    if (u->err < 0) {
        hu_storage_abort(storage_of(u), u->key, u->fd);
    } else {
        hu_upload_thumb thumb;
        hu_upload_media_probe(cfg, u->fd, m->size, m, &thumb);
        uint64_t t0 = uv_hrtime();
        u->err = hu_storage_publish(storage_of(u), u->key, u->fd, u->named, m);
        if (storage_of(u)->do_fsync)
            hu_metrics_fsync(u->conn->srv->metrics, uv_hrtime() - t0);
        u->published = u->err == 0;
        /* a failed store only loses the thumbnail (a 404 at ?thumbnail, as after a crash);
         * the ledger row then says there is none */
        if (u->published && thumb.data != NULL &&
            hu_storage_put_thumbnail(storage_of(u), u->key, thumb.data, thumb.len) < 0)
            m->thumbnail = 0;
        free(thumb.data);
    }
    u->fd = -1; /* the group commit records it next (record_then) */
}

/* JSON string with escapes; returns bytes written. out must hold 6 * n + 2 bytes. */
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
    char when[HU_RFC3339_LEN + 1];
    hu_rfc3339_format(u->meta.uploaded, when);
    size_t o = (size_t)sprintf(body, "{\"success\":true,\"filename\":");
    o += json_string(body + o, name.ptr, name.len);
    o += (size_t)sprintf(body + o, ",\"size\":%llu,\"user\":", (unsigned long long)u->meta.size);
    if (ulen)
        o += json_string(body + o, u->grant.user, ulen);
    else
        o += (size_t)sprintf(body + o, "null");
    o += (size_t)sprintf(body + o, ",\"uploaded_at\":\"%s\"}\n", when);
    *len = o;
    return body;
}

/* tus answers a PATCH with 204 and the new offset. */
static void send_patch_done(hu_conn *c, uint64_t offset) {
    hu_response *r = &c->resp;
    hu_response_start(r, 204, &c->set->cfg, c->parser.head);
    hu_response_header(r, "Tus-Resumable", HU_TUS_VERSION);
    hu_response_header(r, "Upload-Offset", "%llu", (unsigned long long)offset);
    hu_response_end(r, c->keep_alive);
    hu_conn_send(c, NULL, 0, NULL);
}

/* What a refusal says instead of its reason phrase (NULL: the phrase). */
static const char *refusal_text(int err) { return err == -EDQUOT ? "Upload quota exceeded" : NULL; }

/* The answer once the upload is published (or failed to be). */
static void answer(hu_upload *u) {
    hu_conn *c = u->conn;
    if (!c->closing) {
        if (u->err < 0) {
            hu_conn_send_error_text(c, hu_status_from_errno(u->err), 0, refusal_text(u->err));
        } else if (u->kind == HU_UPLOAD_PATCH) {
            send_patch_done(c, u->meta.size);
        } else {
            hu_metrics_upload(c->srv->metrics, u->grant.scheme, u->meta.size);
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
}

static void publish_ended(hu_upload *u, int status) {
    hu_conn *c = u->conn;
    u->job_running = 0;
    if (status < 0 && u->err == 0)
        u->err = status;
    answer(u);
    upload_free(u);
    hu_conn_job_finished(c);
}

static void publish_done(uv_work_t *w, int status) {
    record_then((hu_upload *)w, status, publish_ended);
}

static void upload_end(hu_conn *c) {
    hu_upload *u = c->sink_state;
    if (u->finished) { /* the last piece was written and published in one job */
        answer(u);
        upload_free(u);
        return;
    }
    if (u->base + u->received < u->grant.size) {
        /* a tus PATCH that carried one piece: keep it and report the offset */
        uint64_t offset = u->base + u->received;
        keep_or_drop(u);
        upload_free(u);
        send_patch_done(c, offset);
        return;
    }
    u->job_running = 1;
    hu_conn_job_started(c);
    if (uv_queue_work(c->srv->loop, &u->work, publish_job, publish_done) < 0) {
        u->job_running = 0;
        hu_conn_job_finished(c);
        hu_conn_close(c);
    }
}

static const hu_body_sink upload_sink = {upload_data, upload_end};

static void start_body(hu_conn *c) { hu_conn_take_body(c, &upload_sink, c->sink_state); }

/* The start of an upload, on the thread pool (it touches the ledger and the disk): the slot's
 * reservation claimed (a slot granted by our module: the quota is settled the moment bytes
 * start to come, race-free, whatever became of a reservation that lapsed meanwhile), the slot
 * checked, the file opened; large resumable uploads record their resumption state up front.
 * Without claim_now (a body taken whole, so nothing is written before the completion), the
 * claim is made by the completion's transaction instead, and only the retention it will
 * find is read here. */
static int begin(hu_upload *u, int claim_now) {
    const hu_storage *st = storage_of(u);
    const hu_config *cfg = &u->conn->set->cfg;
    const hu_upload_grant *g = &u->grant;
    hu_server_ledger *sl = &u->conn->set->ledger;
    int put = u->kind == HU_UPLOAD_PUT;
    int exists = hu_storage_exists(st, u->key);
    int rc = exists == 1 ? -EEXIST : exists;
    /* a PATCH claims too: the bytes stay held, and it learns the retention it publishes with */
    u->retention = HU_RETENTION_DEFAULT;
    if (rc == 0 && strcmp(g->scheme, "bearer") == 0 && g->user[0]) {
        if (claim_now) {
            rc = hu_server_ledger_claim(sl, g->path, g->user, g->size, g->expires,
                                        cfg->quota_per_user, &u->retention);
        } else {
            rc = hu_server_ledger_retention(sl, g->path, g->user, g->size, &u->retention);
            u->claim_with_completion = 1;
        }
    }
    if (rc == 0)
        rc = hu_storage_begin(st, u->key, put, &u->fd, &u->base, &u->named);
    if (rc == 0 && !put) {
        if (u->base != u->expect_offset)
            rc = -EEXIST; /* 409: the client's idea of the offset is stale */
        else if (u->base + u->piece_len > g->size)
            rc = -EFBIG;
    }
    if (rc == 0 && put)
        rc = hu_upload_hash_init(&u->sha, u->fd, u->base, u);
    if (rc == 0 && put && resumable(u) && g->size >= HU_RESUME_STATE_EARLY) {
        hu_file_meta m;
        resume_meta(u, &m);
        if (!u->named && (rc = hu_storage_name_partial(st, u->key, u->fd)) == 0)
            u->named = 1;
        if (rc == 0)
            rc = hu_storage_save_resume(st, u->key, u->fd, &m);
        u->state_saved = rc == 0;
    }
    if (rc < 0 && u->fd >= 0) {
        /* PUT: nothing was received, drop it all; PATCH: the earlier bytes stay. */
        if (put)
            hu_storage_abort(st, u->key, u->fd);
        else
            close(u->fd);
        u->fd = -1;
    }
    return rc;
}

static void begin_job(uv_work_t *w) {
    hu_upload *u = (hu_upload *)w;
    u->err = begin(u, 1);
}

/* A small PUT whose whole body is here: begun, written, hashed and published in one
 * thread-pool trip (two with a body taken as it comes), then recorded, with its slot's claim,
 * by the next group commit. */
static void whole_job(uv_work_t *w) {
    hu_upload *u = (hu_upload *)w;
    u->err = begin(u, 0);
    if (u->err == 0)
        write_publish_job(w);
}

static void begin_done(uv_work_t *w, int status) {
    hu_upload *u = (hu_upload *)w;
    hu_conn *c = u->conn;
    u->job_running = 0;
    if (status < 0 && u->err == 0)
        u->err = status;
    if (u->err < 0 || c->closing) {
        int err = u->err;
        if (u->fd >= 0) { /* the connection went away while the job ran */
            if (u->kind == HU_UPLOAD_PUT)
                hu_storage_abort(storage_of(u), u->key, u->fd);
            else
                close(u->fd);
            u->fd = -1;
        }
        upload_free(u);
        if (!c->closing)
            hu_conn_send_error_text(c, hu_status_from_errno(err), 1, refusal_text(err));
    } else {
        c->sink_state = u;
        c->cleanup = upload_cleanup;
        if (u->kind == HU_UPLOAD_PUT) {
            u->streaming = 1;
            c->srv->streaming_uploads++;
        }
        if (u->expect_continue)
            hu_conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, start_body);
        else
            start_body(c);
    }
    hu_conn_job_finished(c);
}

void hu_upload_start(hu_conn *c, const hu_http_head *h, const hu_upload_grant *g,
                     hu_upload_kind kind, uint64_t expect_offset) {
    hu_upload *u = calloc(1, sizeof *u);
    if (u == NULL) {
        hu_conn_send_error(c, 500, 1);
        return;
    }
    u->conn = c;
    u->fd = -1;
    u->kind = kind;
    u->grant = *g;
    u->expect_offset = expect_offset;
    u->piece_len = h->content_length;
    u->expect_continue = h->expect_continue;
    snprintf(c->user, sizeof c->user, "%.127s", g->user); /* for the access log */
    hu_storage_key(g->path, g->path_len, u->key);
    if (hu_upload_key_busy(c->srv, u->key)) { /* another request works on this slot now */
        free(u);
        hu_conn_send_error(c, 409, 1);
        return;
    }
    c->upload_key = u->key; /* from now on: the key is busy */
    /* A body that fits the read buffer, and that the client sends without waiting for a
     * 100 Continue: taken whole first, then everything else in one job. Its 409 or quota
     * refusal comes after the body instead of before (at most a buffer's worth). */
    u->whole = kind == HU_UPLOAD_PUT && !h->expect_continue && h->content_length > 0 &&
               hu_conn_body_fits(c, h->content_length);
    if (u->whole) {
        c->sink_state = u;
        c->cleanup = upload_cleanup;
        hu_conn_take_whole_body(c, &upload_sink, u);
        return;
    }
    u->job_running = 1;
    hu_conn_job_started(c);
    if (uv_queue_work(c->srv->loop, &u->work, begin_job, begin_done) < 0) {
        u->job_running = 0;
        upload_free(u);
        hu_conn_job_finished(c);
        hu_conn_send_error(c, 500, 1);
    }
}
