#include "server_ledger.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Completions per group commit at most (a bigger queue waits for the next one). */
#define HU_GROUP_MAX 256

int hu_server_ledger_open(hu_server_ledger *sl, const char *path, char *err, size_t errlen) {
    memset(sl, 0, sizeof *sl);
    sl->queue_tail = &sl->queue;
    if (uv_mutex_init(&sl->lock) != 0 || uv_mutex_init(&sl->read_lock) != 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (path == NULL || strcmp(path, "none") == 0)
        return 0;
    hu_ledger *failed = NULL;
    int rc = hu_ledger_open(path, &sl->ledger);
    if (rc < 0)
        failed = sl->ledger;
    else if ((rc = hu_ledger_open(path, &sl->reader)) < 0)
        failed = sl->reader;
    if (rc < 0) {
        char shown[1024]; /* a postgresql:// URL's password never reaches a log */
        hu_ledger_redact(path, shown, sizeof shown);
        snprintf(err, errlen, "ledger_path %s: %s", shown, hu_ledger_errmsg(failed));
        hu_server_ledger_close(sl);
    }
    return rc;
}

void hu_server_ledger_close(hu_server_ledger *sl) {
    hu_ledger_close(sl->ledger);
    hu_ledger_close(sl->reader);
    sl->ledger = sl->reader = NULL;
    uv_mutex_destroy(&sl->lock);
    uv_mutex_destroy(&sl->read_lock);
}

/* ---- group commit ----------------------------------------------------------------------
 * The queue, the running flag and the callbacks belong to the loop thread; only the commit
 * itself (the group taken off the queue) runs on the thread pool, one group at a time. */

/* On the pool: one ledger transaction, each completion with its own result; the files of
 * those that failed are taken back. */
static void commit_job(uv_work_t *w) {
    hu_server_ledger *sl = w->data;
    hu_completion cs[HU_GROUP_MAX];
    size_t n = 0;
    for (hu_server_record *r = sl->group; r != NULL; r = r->next, n++)
        cs[n] = r->c;
    uv_mutex_lock(&sl->lock);
    int rc = hu_ledger_complete(sl->ledger, cs, n, (int64_t)time(NULL));
    if (rc < 0)
        hu_log(HU_LOG_ERROR, "ledger: recording %zu upload(s): %s", n,
               hu_ledger_errmsg(sl->ledger));
    uv_mutex_unlock(&sl->lock);
    size_t i = 0;
    for (hu_server_record *r = sl->group; r != NULL; r = r->next, i++) {
        r->c.result = rc < 0 ? rc : cs[i].result;
        if (rc == 0 && cs[i].result < 0 && cs[i].result != -EDQUOT)
            hu_log(HU_LOG_ERROR, "ledger: recording %s: %s", r->c.file.path,
                   strerror(-cs[i].result));
        /* not durable or not in the ledger means not acknowledged: the client retries */
        if (r->c.result < 0)
            hu_storage_unpublish(sl->storage, r->key);
    }
}

static void start_commit(hu_server_ledger *sl, uv_loop_t *loop);

/* On the loop: each completion's callback, then the next group if any queued meanwhile. */
static void commit_done(uv_work_t *w, int status) {
    hu_server_ledger *sl = w->data;
    hu_server_record *r = sl->group;
    sl->group = NULL;
    sl->committing = 0;
    while (r != NULL) {
        hu_server_record *next = r->next; /* r may be gone once its callback returned */
        r->cb(r->arg, status < 0 && r->c.result == 0 ? status : r->c.result);
        r = next;
    }
    if (sl->queue != NULL && !sl->committing) /* (a callback may have started one) */
        start_commit(sl, w->loop);
}

static void start_commit(hu_server_ledger *sl, uv_loop_t *loop) {
    hu_server_record *last = sl->queue;
    for (size_t n = 1; last->next != NULL && n < HU_GROUP_MAX; n++)
        last = last->next;
    sl->group = sl->queue;
    sl->queue = last->next;
    last->next = NULL;
    if (sl->queue == NULL)
        sl->queue_tail = &sl->queue;
    sl->committing = 1;
    sl->work.data = sl;
    (void)uv_queue_work(loop, &sl->work, commit_job, commit_done); /* fails only without a job */
}

void hu_server_ledger_record(hu_server_ledger *sl, uv_loop_t *loop, const hu_storage *st,
                             hu_server_record *r) {
    if (sl->ledger == NULL) { /* nothing to record: the file and its name are durable */
        r->cb(r->arg, 0);
        return;
    }
    sl->storage = st;
    r->next = NULL;
    r->c.result = 0;
    *sl->queue_tail = r;
    sl->queue_tail = &r->next;
    if (!sl->committing)
        start_commit(sl, loop);
}

/* ---- one at a time ---------------------------------------------------------------------- */

int hu_server_ledger_claim(hu_server_ledger *sl, const char *path, const char *user,
                           uint64_t size, int64_t until, uint64_t default_quota,
                           hu_retention *retention) {
    *retention = HU_RETENTION_DEFAULT;
    if (sl->ledger == NULL)
        return 0;
    uv_mutex_lock(&sl->lock);
    int rc = hu_ledger_claim(sl->ledger, path, user, size, until, (int64_t)time(NULL),
                             default_quota, retention);
    if (rc < 0 && rc != -EDQUOT)
        hu_log(HU_LOG_ERROR, "ledger: reserving %s: %s", path, hu_ledger_errmsg(sl->ledger));
    uv_mutex_unlock(&sl->lock);
    return rc;
}

int hu_server_ledger_retention(hu_server_ledger *sl, const char *path, const char *user,
                               uint64_t size, hu_retention *retention) {
    *retention = HU_RETENTION_DEFAULT;
    if (sl->ledger == NULL)
        return 0;
    uv_mutex_lock(&sl->read_lock);
    int rc = hu_ledger_retention(sl->reader, path, user, size, (int64_t)time(NULL), retention);
    if (rc < 0)
        hu_log(HU_LOG_ERROR, "ledger: reading the reservation of %s: %s", path,
               hu_ledger_errmsg(sl->reader));
    uv_mutex_unlock(&sl->read_lock);
    return rc;
}

void hu_server_ledger_audit(hu_server_ledger *sl, const char *event, const char *user,
                            const char *path, uint64_t size, const char *detail) {
    if (sl->ledger == NULL)
        return;
    uv_mutex_lock(&sl->lock);
    if (hu_ledger_audit(sl->ledger, (int64_t)time(NULL), event, user, path, size, detail) < 0)
        hu_log(HU_LOG_ERROR, "ledger: audit %s: %s", event,
                hu_ledger_errmsg(sl->ledger));
    uv_mutex_unlock(&sl->lock);
}

hu_stored_file hu_server_ledger_row(const hu_file_meta *m, const char *path, const char *user,
                                    uint64_t size, const char *source_ip) {
    return (hu_stored_file){
        .path = path,
        .user = user && user[0] ? user : NULL,
        .size = size,
        .content_type = m->type,
        .sha256_hex = m->sha256,
        .created = m->uploaded,
        .expires = m->expires,
        .source_ip = source_ip,
        .scheme = m->scheme,
        .media_type = m->media_type[0] ? m->media_type : NULL,
        .type_ok = m->media_type[0] ? m->type_ok : -1,
        .width = m->width,
        .height = m->height,
        .blurhash = m->blurhash[0] ? m->blurhash : NULL,
        .thumbnail = m->thumbnail,
    };
}
