#include "server_ledger.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Items per group at most (a bigger queue waits for the next one). */
#define HU_GROUP_MAX 256

/* ---- groups ------------------------------------------------------------------------------
 * Work that arrives while the ledger is busy with the previous group waits and goes in the
 * next one, done by the first of its threads to find the ledger free: one transaction (and
 * one fsync per touched directory) for all of it. No timer: an idle server adds nothing. */

typedef struct hu_group_item {
    struct hu_group_item *next;
    int done;
} hu_group_item;

/* Runs a group: the items from first, linked, n of them. */
typedef void (*hu_group_fn)(hu_server_ledger *sl, hu_group_item *first, size_t n, void *ctx);

/* Queues me and returns once a group that held it has run (maybe led by this thread). */
static void group_join(hu_server_ledger *sl, hu_group *g, hu_group_item *me, hu_group_fn run,
                       void *ctx) {
    uv_mutex_lock(&g->lock);
    hu_group_item **tail = &g->queue;
    while (*tail != NULL)
        tail = &(*tail)->next;
    me->next = NULL;
    me->done = 0;
    *tail = me;
    while (!me->done) {
        if (g->running) {
            uv_cond_wait(&g->ran, &g->lock);
            continue;
        }
        /* lead: take the queue (up to HU_GROUP_MAX) and run it while others queue up */
        g->running = 1;
        hu_group_item *first = g->queue, *last = first;
        size_t n = 1;
        while (last->next != NULL && n < HU_GROUP_MAX) {
            last = last->next;
            n++;
        }
        g->queue = last->next;
        last->next = NULL;
        uv_mutex_unlock(&g->lock);
        run(sl, first, n, ctx);
        uv_mutex_lock(&g->lock);
        for (hu_group_item *i = first; i != NULL;) {
            hu_group_item *next = i->next;
            i->done = 1; /* i may be gone (its thread returned) once done is seen */
            i = next;
        }
        g->running = 0;
        uv_cond_broadcast(&g->ran);
    }
    uv_mutex_unlock(&g->lock);
}

static int group_init(hu_group *g) {
    g->queue = NULL;
    g->running = 0;
    if (uv_mutex_init(&g->lock) != 0)
        return -ENOMEM;
    if (uv_cond_init(&g->ran) != 0) {
        uv_mutex_destroy(&g->lock);
        return -ENOMEM;
    }
    return 0;
}

static void group_destroy(hu_group *g) {
    uv_mutex_destroy(&g->lock);
    uv_cond_destroy(&g->ran);
}

int hu_server_ledger_open(hu_server_ledger *sl, const char *path, char *err, size_t errlen) {
    sl->ledger = sl->reader = NULL;
    if (uv_mutex_init(&sl->lock) != 0 || uv_mutex_init(&sl->read_lock) != 0 ||
        group_init(&sl->completions) < 0) {
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
    group_destroy(&sl->completions);
}

/* ---- completions ------------------------------------------------------------------------ */

typedef struct {
    hu_group_item item; /* first */
    const char *key;
    hu_completion c;
} hu_server_completion;

/* One group commit: the shard directories, then one ledger transaction; each completion gets
 * its own result. */
static void commit_group(hu_server_ledger *sl, hu_group_item *first, size_t n, void *ctx) {
    const hu_storage *st = ctx;
    const char *keys[HU_GROUP_MAX] = {0};
    hu_completion cs[HU_GROUP_MAX];
    size_t i = 0;
    for (hu_group_item *it = first; it != NULL; it = it->next, i++) {
        hu_server_completion *sc = (hu_server_completion *)it;
        keys[i] = sc->key;
        cs[i] = sc->c;
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
    for (hu_group_item *it = first; it != NULL; it = it->next, i++) {
        hu_server_completion *sc = (hu_server_completion *)it;
        sc->c.result = rc < 0 ? rc : cs[i].result;
        if (rc == 0 && cs[i].result < 0 && cs[i].result != -EDQUOT)
            hu_log(HU_LOG_ERROR, "ledger: recording %s: %s", sc->c.file.path,
                   strerror(-cs[i].result));
    }
}

int hu_server_ledger_complete(hu_server_ledger *sl, const hu_storage *st, const char *key,
                              const hu_stored_file *f, const hu_server_claim *claim) {
    hu_server_completion me = {.key = key, .c = {.file = *f}};
    if (claim != NULL && sl->ledger != NULL) {
        me.c.claim = 1;
        me.c.claim_until = claim->until;
        me.c.default_quota = claim->default_quota;
        me.c.retention = claim->retention;
    }
    group_join(sl, &sl->completions, &me.item, commit_group, (void *)st);
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
