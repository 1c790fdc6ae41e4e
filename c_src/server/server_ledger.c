#include "server_ledger.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* A completion waiting in the group commit's queue. */
struct hu_queued_completion {
    const char *key;
    hu_completion c;
    int done;
    hu_queued_completion *next;
};

/* Completions per group commit at most (a bigger queue waits for the next one). */
#define HU_GROUP_MAX 256

int hu_server_ledger_open(hu_server_ledger *sl, const char *path, char *err, size_t errlen) {
    sl->ledger = sl->reader = NULL;
    sl->queue = NULL;
    sl->committing = 0;
    if (uv_mutex_init(&sl->lock) != 0 || uv_mutex_init(&sl->read_lock) != 0 ||
        uv_mutex_init(&sl->queue_lock) != 0 || uv_cond_init(&sl->committed) != 0) {
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
    uv_mutex_destroy(&sl->queue_lock);
    uv_cond_destroy(&sl->committed);
}

/* One group commit, by the thread whose completion led the queue: the shard directories,
 * then one ledger transaction; each completion gets its own result. */
static void commit_group(hu_server_ledger *sl, const hu_storage *st, hu_queued_completion *group,
                         size_t n) {
    const char *keys[HU_GROUP_MAX] = {0};
    hu_completion cs[HU_GROUP_MAX];
    size_t i = 0;
    for (hu_queued_completion *q = group; q != NULL; q = q->next, i++) {
        keys[i] = q->key;
        cs[i] = q->c;
    }
    int rc = hu_storage_sync_shards(st, keys, n);
    if (rc == 0 && sl->ledger != NULL) {
        uv_mutex_lock(&sl->lock);
        rc = hu_ledger_complete(sl->ledger, cs, n, (int64_t)time(NULL));
        if (rc < 0)
            hu_log(HU_LOG_ERROR, "ledger: recording %zu upload(s): %s", n,
                   hu_ledger_errmsg(sl->ledger));
        uv_mutex_unlock(&sl->lock);
    }
    i = 0;
    for (hu_queued_completion *q = group; q != NULL; q = q->next, i++) {
        q->c.result = rc < 0 ? rc : cs[i].result;
        if (rc == 0 && cs[i].result < 0 && cs[i].result != -EDQUOT)
            hu_log(HU_LOG_ERROR, "ledger: recording %s: %s", q->c.file.path,
                   strerror(-cs[i].result));
    }
}

int hu_server_ledger_complete(hu_server_ledger *sl, const hu_storage *st, const char *key,
                              const hu_stored_file *f, const hu_server_claim *claim) {
    hu_queued_completion me = {.key = key, .c = {.file = *f}};
    if (claim != NULL && sl->ledger != NULL) {
        me.c.claim = 1;
        me.c.claim_until = claim->until;
        me.c.default_quota = claim->default_quota;
        me.c.retention = claim->retention;
    }
    uv_mutex_lock(&sl->queue_lock);
    hu_queued_completion **tail = &sl->queue;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = &me;
    while (!me.done) {
        if (sl->committing) {
            uv_cond_wait(&sl->committed, &sl->queue_lock);
            continue;
        }
        /* lead: take the queue (up to HU_GROUP_MAX) and commit it while others queue up */
        sl->committing = 1;
        hu_queued_completion *group = sl->queue, *last = group;
        size_t n = 1;
        while (last->next != NULL && n < HU_GROUP_MAX) {
            last = last->next;
            n++;
        }
        sl->queue = last->next;
        last->next = NULL;
        uv_mutex_unlock(&sl->queue_lock);
        commit_group(sl, st, group, n);
        uv_mutex_lock(&sl->queue_lock);
        for (hu_queued_completion *q = group; q != NULL;) {
            hu_queued_completion *next = q->next;
            q->done = 1; /* q may be gone (its thread returned) once done is seen */
            q = next;
        }
        sl->committing = 0;
        uv_cond_broadcast(&sl->committed);
    }
    uv_mutex_unlock(&sl->queue_lock);
    return me.c.result;
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
