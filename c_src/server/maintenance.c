#include "maintenance.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "upload.h"
#include "upload_path.h"

#define MAX_PER_RUN 1000 /* expired files removed per run; the next run takes the rest */

static int key_busy(const char *key, void *ctx) { return hu_upload_key_busy(ctx, key); }

typedef struct {
    char (*paths)[HU_MAX_PATH_LEN + 1];
    size_t n, cap;
} path_list;

static int collect(void *ctx, const hu_stored_file *f) {
    path_list *pl = ctx;
    if (pl->n == pl->cap)
        return 1;
    snprintf(pl->paths[pl->n++], HU_MAX_PATH_LEN + 1, "%s", f->path);
    return 0;
}

static int list_alloc(path_list *pl, size_t cap) {
    pl->n = 0;
    pl->cap = cap;
    pl->paths = malloc(cap * sizeof *pl->paths);
    return pl->paths ? 0 : -ENOMEM;
}

/* Files past max_days: the file goes first, then its row (a crash in between leaves a row
 * without a file, which the start-up check removes). */
static int expire_files(hu_settings *set, int64_t now) {
    hu_server_ledger *sl = &set->ledger;
    path_list pl;
    if (sl->ledger == NULL || set->cfg.max_days == 0 || list_alloc(&pl, MAX_PER_RUN) < 0)
        return 0;
    uv_mutex_lock(&sl->lock);
    hu_ledger_expired_files(sl->ledger, now, collect, &pl);
    for (size_t i = 0; i < pl.n; i++) {
        hu_storage_unpublish(&set->storage, pl.paths[i]);
        hu_ledger_delete_file(sl->ledger, pl.paths[i], "expired (max_days)");
    }
    uv_mutex_unlock(&sl->lock);
    free(pl.paths);
    return (int)pl.n;
}

/* Rows whose file is gone (deleted by hand, or a crash between unlink and row deletion). */
static int drop_rows_without_files(hu_settings *set) {
    hu_server_ledger *sl = &set->ledger;
    path_list pl;
    int fixed = 0;
    if (list_alloc(&pl, 1 << 16) < 0)
        return 0;
    hu_ledger_list_files(sl->ledger, NULL, collect, &pl);
    for (size_t i = 0; i < pl.n; i++)
        if (hu_storage_exists(&set->storage, pl.paths[i]) == 0 &&
            hu_ledger_delete_file(sl->ledger, pl.paths[i], "reconcile: file missing") == 0)
            fixed++;
    free(pl.paths);
    return fixed;
}

static int row_exists(void *ctx, const hu_stored_file *f) {
    (void)f;
    *(int *)ctx = 1;
    return 1;
}

/* A published file without a row: a crash between link() and the ledger commit. Its bytes
 * are complete and hashed, so it is adopted from its metadata; without metadata it goes. */
static int adopt_or_remove(hu_settings *set, const char *path) {
    int found = 0;
    if (hu_ledger_get_file(set->ledger.ledger, path, row_exists, &found) == 0 && found)
        return 0;
    hu_file_meta m;
    struct stat st;
    int fd;
    if (hu_storage_read_meta(&set->storage, path, &m) == 0 &&
        hu_storage_open_file(&set->storage, path, &fd, &st) == 0) {
        close(fd);
        hu_stored_file f = {path, m.user[0] ? m.user : NULL, (uint64_t)st.st_size, m.type,
                            m.sha256, m.uploaded,
                            set->cfg.max_days ? m.uploaded + (int64_t)set->cfg.max_days * 86400 : 0,
                            NULL, m.scheme};
        if (hu_ledger_commit_upload(set->ledger.ledger, &f) == 0)
            return 1;
    }
    hu_storage_unpublish(&set->storage, path);
    return 1;
}

static int walk(hu_settings *set, int dirfd, char *path, size_t len, int depth) {
    if (depth > HU_MAX_SEGMENTS)
        return 0;
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    rewinddir(d);
    int fixed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ".", "..", .partial, .meta: never upload paths */
        if (depth == 1 && (strcmp(e->d_name, "secret") == 0 ||
                           strncmp(e->d_name, "ledger.sqlite3", 14) == 0))
            continue;
        size_t n = strlen(e->d_name);
        if (len + n + 2 > HU_MAX_PATH_LEN)
            continue;
        char *end = path + len;
        if (len)
            *end++ = '/';
        memcpy(end, e->d_name, n + 1);
        size_t newlen = (size_t)(end - path) + n;
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(st.st_mode)) {
                int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0) {
                    fixed += walk(set, sub, path, newlen, depth + 1);
                    close(sub);
                }
            } else if (S_ISREG(st.st_mode)) {
                fixed += adopt_or_remove(set, path);
            }
        }
        path[len] = '\0';
    }
    closedir(d);
    return fixed;
}

static void reconcile(hu_settings *set) {
    hu_server_ledger *sl = &set->ledger;
    if (sl->ledger == NULL)
        return;
    char path[HU_MAX_PATH_LEN + 1] = "";
    uv_mutex_lock(&sl->lock);
    int rows = drop_rows_without_files(set);
    int files = walk(set, set->storage.dirfd, path, 0, 1);
    int res = hu_ledger_purge_reservations(sl->ledger, (int64_t)time(NULL));
    uv_mutex_unlock(&sl->lock);
    if (rows || files || res > 0)
        fprintf(stderr,
                "hmac-upload-server: reconciled ledger and storage: %d row(s) without a file "
                "removed, %d file(s) without a row adopted or removed, %d expired "
                "reservation(s) dropped\n",
                rows, files, res > 0 ? res : 0);
}

void hu_maintenance_run(hu_server *srv, int at_startup) {
    hu_settings *set = srv->settings;
    int64_t now = (int64_t)time(NULL);
    int n = hu_storage_sweep_partials(&set->storage, now, at_startup, key_busy, srv);
    if (n > 0)
        fprintf(stderr, "hmac-upload-server: removed %d %s partial upload(s)\n", n,
                at_startup ? "expired or orphaned" : "expired");
    if (at_startup)
        reconcile(set);
    int expired = expire_files(set, now);
    if (expired > 0)
        fprintf(stderr, "hmac-upload-server: removed %d file(s) older than max_days\n", expired);
}
