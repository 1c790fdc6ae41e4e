/* The ledger's front: picks the backend from the path (a postgresql:// or postgres:// URL is
 * PostgreSQL, anything else an SQLite file), checks what every backend would refuse alike,
 * and hands each call to the backend (ledger_backend.h). */
#include "ledger_backend.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int hu_ledger_is_postgres(const char *path) {
    return path != NULL &&
           (strncmp(path, "postgresql://", 13) == 0 || strncmp(path, "postgres://", 11) == 0);
}

int hu_ledger_open(const char *path, hu_ledger **out) {
    *out = NULL;
    if (path == NULL)
        return -EINVAL;
    return hu_ledger_is_postgres(path) ? hu__ledger_pg_open(path, out)
                                       : hu__ledger_sqlite_open(path, out);
}

/* Appends len bytes of s to out (cap bytes, NUL-terminated), as far as they fit. */
static void put(char *out, size_t cap, size_t *n, const char *s, size_t len) {
    while (len-- > 0 && *n + 1 < cap)
        out[(*n)++] = *s++;
    out[*n] = '\0';
}

/* The two places libpq's URI takes a password: user:password@ in the authority, and a
 * password=... parameter of the query; each value becomes ***. */
void hu_ledger_redact(const char *path, char *out, size_t cap) {
    if (cap == 0)
        return;
    size_t n = 0;
    out[0] = '\0';
    if (!hu_ledger_is_postgres(path)) {
        snprintf(out, cap, "%s", path ? path : "");
        return;
    }
    const char *p = path, *auth = strstr(path, "://") + 3;
    size_t auth_len = strcspn(auth, "/?#");
    const char *at = memrchr(auth, '@', auth_len); /* the last: a password may hold an @ */
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon != NULL) {
        put(out, cap, &n, p, (size_t)(colon + 1 - p));
        put(out, cap, &n, "***", 3);
        p = at;
    }
    const char *q = strchr(p, '?');
    if (q == NULL) {
        put(out, cap, &n, p, strlen(p));
        return;
    }
    put(out, cap, &n, p, (size_t)(q + 1 - p));
    for (p = q + 1; *p != '\0' && *p != '#';) {
        size_t len = strcspn(p, "&#");
        if (strncmp(p, "password=", 9) == 0 && len >= 9) {
            put(out, cap, &n, p, 9);
            put(out, cap, &n, "***", 3);
        } else {
            put(out, cap, &n, p, len);
        }
        p += len;
        if (*p == '&')
            put(out, cap, &n, p++, 1);
    }
    put(out, cap, &n, p, strlen(p));
}

void hu_ledger_close(hu_ledger *l) {
    if (l != NULL)
        l->ops->close(l);
}

const char *hu_ledger_errmsg(const hu_ledger *l) { return l ? l->errmsg : "out of memory"; }

int hu_ledger_reserve_all(hu_ledger *l, const hu_reservation *r, size_t n, int64_t now,
                          uint64_t default_quota, int *results, int64_t *retry_at) {
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        retry_at[i] = 0;
        results[i] = 0;
        if (r[i].size > INT64_MAX || r[i].path == NULL || r[i].user == NULL)
            rc = -EINVAL;
    }
    if (rc == 0 && n > 0)
        rc = l->ops->reserve(l, r, n, now, default_quota, results, retry_at);
    for (size_t i = 0; rc < 0 && i < n; i++)
        results[i] = rc;
    return rc;
}

int hu_ledger_reserve(hu_ledger *l, const hu_reservation *r, int64_t now, uint64_t default_quota,
                      int64_t *retry_at) {
    int result = 0;
    int rc = hu_ledger_reserve_all(l, r, 1, now, default_quota, &result, retry_at);
    return rc < 0 ? rc : result;
}

int hu__ledger_own_failure(int rc) {
    return rc == -EEXIST || rc == -EINVAL || rc == -EDQUOT || rc == -ESTALE;
}

int hu_ledger_complete(hu_ledger *l, hu_completion *c, size_t n, int64_t now) {
    for (size_t i = 0; i < n; i++)
        c[i].result = 0;
    if (n == 0)
        return 0;
    int rc = l->ops->complete(l, c, n, now);
    for (size_t i = 0; i < n; i++)
        if (rc < 0 || (c[i].result < 0 && !hu__ledger_own_failure(c[i].result)))
            c[i].result = rc < 0 ? rc : -EIO;
    return rc;
}

int hu_ledger_commit_upload(hu_ledger *l, const hu_stored_file *f) {
    hu_completion c = {.file = *f};
    int rc = hu_ledger_complete(l, &c, 1, f->created);
    return rc < 0 ? rc : c.result;
}

int hu_ledger_retention(hu_ledger *l, const char *path, const char *user, uint64_t size,
                        int64_t now, hu_retention *out) {
    *out = HU_RETENTION_DEFAULT;
    if (size > INT64_MAX || path == NULL || user == NULL)
        return -EINVAL;
    return l->ops->retention(l, path, user, size, now, out);
}

int hu_ledger_usage(hu_ledger *l, const char *user, int64_t now, uint64_t default_quota,
                    uint64_t *used, uint64_t *reserved, uint64_t *quota) {
    return l->ops->usage(l, user, now, default_quota, used, reserved, quota);
}

int hu_ledger_set_quota(hu_ledger *l, const char *user, uint64_t quota) {
    if (quota > INT64_MAX)
        return -EINVAL;
    return l->ops->set_quota(l, user, quota);
}

int hu_ledger_clear_quota(hu_ledger *l, const char *user) { return l->ops->clear_quota(l, user); }

int hu_ledger_delete_file(hu_ledger *l, const char *path, const char *reason) {
    return l->ops->delete_file(l, path, reason);
}

int hu_ledger_audit(hu_ledger *l, int64_t now, const char *event, const char *user,
                    const char *path, uint64_t size, const char *detail) {
    return l->ops->audit(l, now, event, user, path, size, detail);
}

int hu_ledger_retry_at(hu_ledger *l, const char *user, int64_t now, int64_t *at) {
    *at = 0;
    return l->ops->retry_at(l, user, now, at);
}

int hu_ledger_claim(hu_ledger *l, const char *path, const char *user, uint64_t size,
                    int64_t until, int64_t now, uint64_t default_quota, hu_retention *retention) {
    *retention = HU_RETENTION_DEFAULT;
    if (size > INT64_MAX || path == NULL || user == NULL)
        return -EINVAL;
    return l->ops->claim(l, path, user, size, until, now, default_quota, retention);
}

int hu_ledger_release(hu_ledger *l, const char *path) { return l->ops->release(l, path); }

int hu_ledger_list_files(hu_ledger *l, const char *user, hu_ledger_file_cb cb, void *ctx) {
    return l->ops->list_files(l, user, cb, ctx);
}

int hu_ledger_expired_files(hu_ledger *l, int64_t now, hu_ledger_file_cb cb, void *ctx) {
    return l->ops->expired_files(l, now, cb, ctx);
}

int hu_ledger_get_file(hu_ledger *l, const char *path, hu_ledger_file_cb cb, void *ctx) {
    return l->ops->get_file(l, path, cb, ctx);
}

int hu_ledger_audit_recent(hu_ledger *l, const char *user, unsigned limit, hu_ledger_audit_cb cb,
                           void *ctx) {
    return l->ops->audit_recent(l, user, limit, cb, ctx);
}

int hu_ledger_purge_reservations(hu_ledger *l, int64_t now) {
    return l->ops->purge_reservations(l, now);
}

int hu_ledger_try_sweep_lock(hu_ledger *l) { return l->ops->try_sweep_lock(l); }

void hu_ledger_sweep_unlock(hu_ledger *l) { l->ops->sweep_unlock(l); }

int hu__ledger_over_quota(uint64_t used, uint64_t reserved, uint64_t size, uint64_t quota,
                          char *detail, size_t cap) {
    if (quota == 0 || (used <= quota && reserved <= quota - used && size <= quota - used - reserved))
        return 0;
    snprintf(detail, cap, "over quota: used %llu reserved %llu quota %llu",
             (unsigned long long)used, (unsigned long long)reserved, (unsigned long long)quota);
    return 1;
}
