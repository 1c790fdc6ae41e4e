#include "maintenance.h"
#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "upload.h"
#include "upload_path.h"

#define MAX_PER_RUN 1000 /* expired files removed per run; the next run takes the rest */

/* Several servers may share one storage directory and ledger (a cluster; a rolling restart),
 * so what a start-up check finds unfinished may be another server's work in progress, not a
 * crash's leftover. Such work touches its entries all the time, so an entry is taken for a
 * leftover only once it has been left alone for longer than any live server leaves one:
 * - a published file's ledger commit comes within one publish step and one group commit of
 *   its last write: the step reads the file back (a tus upload's hash), fsyncs it, probes the
 *   media, writes the record, links and syncs the shard directory; the commit waits for the
 *   one in flight, then runs one transaction, whose statements the ledger bounds
 *   (SQLite's busy timeout 5 s, PostgreSQL's lock_timeout 5 s and statement_timeout 10 s, a
 *   lost connection fails at once); a commit that fails takes the file back. Well under a
 *   minute, plus the file's size at a pessimistic disk or NFS rate;
 * - a request writing a partial file writes again within idle_timeout, or its connection is
 *   closed and the upload is cut (its resumption state saved or its file dropped);
 * - a sidecar record lives without its file for one data fsync (record, fsync, link).
 * 10 minutes, plus idle_timeout, plus max_size at 8 MiB/s: 11 min 12 s by default. */
#define SETTLE_BASE_S 600
#define SETTLE_RATE (8u << 20) /* bytes/s */

static int64_t settle_time(const hu_config *cfg) {
    return SETTLE_BASE_S + (int64_t)cfg->idle_timeout + (int64_t)(cfg->max_size / SETTLE_RATE);
}

static int key_busy(const char *key, void *ctx) { return hu_upload_key_busy(ctx, key); }

/* Paths collected from a ledger query, acted on once the query is done (SQLite rows must not
 * change under a running statement). */
typedef struct {
    char **paths;
    size_t n, cap, max;
    hu_storage *storage; /* when set, only paths whose file is missing are kept */
} path_list;

static int collect(void *ctx, const hu_stored_file *f) {
    path_list *pl = ctx;
    if (pl->storage != NULL) {
        char key[HU_STORAGE_KEY_LEN + 1];
        hu_storage_key(f->path, strlen(f->path), key);
        if (hu_storage_exists(pl->storage, key) != 0)
            return 0;
    }
    if (pl->n == pl->max)
        return 1;
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? 2 * pl->cap : 64;
        char **p = realloc(pl->paths, cap * sizeof *p);
        if (p == NULL)
            return 1;
        pl->paths = p;
        pl->cap = cap;
    }
    if ((pl->paths[pl->n] = strdup(f->path)) == NULL)
        return 1;
    pl->n++;
    return 0;
}

static void list_free(path_list *pl) {
    for (size_t i = 0; i < pl->n; i++)
        free(pl->paths[i]);
    free(pl->paths);
}

/* Files past their expiry (max_days, or a JWT's own): the file goes first, then its row (a crash in between leaves a row
 * without a file, which the start-up check removes). */
static int expire_files(hu_settings *set, int64_t now) {
    hu_server_ledger *sl = &set->ledger;
    path_list pl = {.max = MAX_PER_RUN};
    if (sl->ledger == NULL)
        return 0;
    uv_mutex_lock(&sl->lock);
    hu_ledger_expired_files(sl->ledger, now, collect, &pl);
    for (size_t i = 0; i < pl.n; i++) {
        char key[HU_STORAGE_KEY_LEN + 1];
        hu_storage_key(pl.paths[i], strlen(pl.paths[i]), key);
        hu_storage_unpublish(&set->storage, key);
        hu_ledger_delete_file(sl->ledger, pl.paths[i], "expired");
    }
    uv_mutex_unlock(&sl->lock);
    list_free(&pl);
    return (int)pl.n;
}

/* Reservations whose token expired: no upload can start on them any more. Dropped here, on
 * the timer, so a grant never has to scan them (its cost stays flat however many slots a user
 * was ever given). */
static int purge_reservations(hu_settings *set, int64_t now) {
    hu_server_ledger *sl = &set->ledger;
    if (sl->ledger == NULL)
        return 0;
    uv_mutex_lock(&sl->lock);
    int n = hu_ledger_purge_reservations(sl->ledger, now);
    if (n < 0)
        hu_log(HU_LOG_ERROR, "ledger: dropping expired reservations: %s",
               hu_ledger_errmsg(sl->ledger));
    uv_mutex_unlock(&sl->lock);
    return n;
}

/* Rows whose file is gone (deleted by hand, or a crash between unlink and row deletion). */
static int drop_rows_without_files(hu_settings *set) {
    hu_server_ledger *sl = &set->ledger;
    path_list pl = {.max = SIZE_MAX, .storage = &set->storage};
    int fixed = 0;
    hu_ledger_list_files(sl->ledger, NULL, collect, &pl);
    for (size_t i = 0; i < pl.n; i++)
        if (hu_ledger_delete_file(sl->ledger, pl.paths[i], "reconcile: file missing") == 0)
            fixed++;
    list_free(&pl);
    return fixed;
}

static int row_exists(void *ctx, const hu_stored_file *f) {
    (void)f;
    *(int *)ctx = 1;
    return 1;
}

typedef struct {
    hu_settings *set;
    int64_t settled_before;
    int adopted, left, young;
    char example[96];
} files_check;

/* One entry of files/. A file with a valid record but no row was published just before a
 * crash, ahead of its ledger commit: its bytes are complete and hashed, so it is adopted --
 * once it has settled: a young one may be another server's upload whose commit is still
 * under way, and adopting it would fail that commit (-EEXIST, the client's 409). A later
 * start-up adopts it. Nothing here is ever deleted: an entry without a record of ours is not
 * served (storage.h) and is left for the operator, with a line in the log. */
static int check_file(void *ctx, const char *rel, const char *key, const hu_file_meta *m,
                      const struct stat *st) {
    files_check *fc = ctx;
    hu_settings *set = fc->set;
    (void)key;
    if (m == NULL) {
        if (fc->left++ == 0)
            snprintf(fc->example, sizeof fc->example, "files/%s", rel);
        return 0;
    }
    int found = 0;
    if (hu_ledger_get_file(set->ledger.ledger, m->path, row_exists, &found) == 0 && found)
        return 0;
    if ((int64_t)st->st_mtime >= fc->settled_before) { /* its last write: before its link */
        fc->young++;
        return 0;
    }
    hu_stored_file f = hu_server_ledger_row(m, m->path, m->user, (uint64_t)st->st_size, NULL);
    if (hu_ledger_commit_upload(set->ledger.ledger, &f) == 0)
        fc->adopted++;
    return 0;
}

/* The ledger against the storage, under the sweep lock (held by the caller). */
static void reconcile(hu_settings *set, int64_t settled_before) {
    files_check fc = {.set = set, .settled_before = settled_before};
    int rows = drop_rows_without_files(set);
    hu_storage_each_file(&set->storage, check_file, &fc);
    int res = hu_ledger_purge_reservations(set->ledger.ledger, (int64_t)time(NULL));
    if (rows || fc.adopted || res > 0)
        hu_log(HU_LOG_INFO,
                "reconciled ledger and storage: %d row(s) without a file "
                "removed, %d file(s) without a row adopted, %d expired reservation(s) dropped",
                rows, fc.adopted, res > 0 ? res : 0);
    if (fc.young)
        hu_log(HU_LOG_INFO,
                "%d file(s) without a row are younger than %lld s (perhaps another server's "
                "upload being recorded): left for a later start-up to adopt",
                fc.young, (long long)settle_time(&set->cfg));
    if (fc.left)
        hu_log(HU_LOG_WARNING,
                "left %d entr%s in files/ without a record of ours untouched "
                "(never served), e.g. %s",
                fc.left, fc.left == 1 ? "y" : "ies", fc.example);
}

/* The start-up checks judge by what is missing (a partial without state, a record without
 * its file, a file without its row): with a ledger, which other servers may share, one
 * server does them at a time, under the sweep lock; the others leave them to that one.
 * 1 when this server goes ahead (sl->lock is then held: release with end_startup_checks),
 * 0 when it skips them. */
static int begin_startup_checks(hu_settings *set) {
    hu_server_ledger *sl = &set->ledger;
    if (sl->ledger == NULL)
        return 1;
    uv_mutex_lock(&sl->lock);
    int locked = hu_ledger_try_sweep_lock(sl->ledger);
    if (locked == 1)
        return 1;
    uv_mutex_unlock(&sl->lock);
    hu_log(HU_LOG_INFO, locked == 0 ? "another upload server is reconciling the ledger "
                                      "with the storage: skipped here"
                                    : "ledger: cannot take the reconciliation lock: skipped");
    return 0;
}

static void end_startup_checks(hu_settings *set) {
    hu_server_ledger *sl = &set->ledger;
    if (sl->ledger == NULL)
        return;
    hu_ledger_sweep_unlock(sl->ledger);
    uv_mutex_unlock(&sl->lock);
}

void hu_maintenance_run(hu_server *srv, int at_startup) {
    hu_settings *set = srv->settings;
    int64_t now = (int64_t)time(NULL);
    int64_t settled_before = now - settle_time(&set->cfg);
    int checks = at_startup && begin_startup_checks(set);
    hu_sweep_report sw;
    if (hu_storage_sweep_partials(&set->storage, now, checks, settled_before, key_busy, srv,
                                  &sw) == 0) {
        if (sw.removed > 0 || sw.strays > 0)
            hu_log(HU_LOG_INFO, "removed %d %s partial upload(s) and %d stale "
                            "state file(s)",
                    sw.removed, checks ? "expired or orphaned" : "expired", sw.strays);
        if (checks && sw.unknown > 0)
            hu_log(HU_LOG_WARNING, "left %d unknown entr%s in state/partial "
                            "untouched",
                    sw.unknown, sw.unknown == 1 ? "y" : "ies");
    }
    if (checks) {
        int stale = hu_storage_sweep_records(&set->storage, settled_before);
        if (stale > 0)
            hu_log(HU_LOG_INFO, "removed %d metadata record(s) without a file",
                    stale);
        if (set->ledger.ledger != NULL)
            reconcile(set, settled_before); /* which purges the expired reservations too */
        end_startup_checks(set);
    } else {
        purge_reservations(set, now);
    }
    int expired = expire_files(set, now);
    if (expired > 0)
        hu_log(HU_LOG_INFO, "removed %d expired file(s)", expired);
}
