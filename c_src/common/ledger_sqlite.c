/* The ledger in SQLite (WAL). Every statement is prepared once per handle; grants and
 * completions are single IMMEDIATE transactions, so two processes (module and server) and
 * any number of concurrent slot requests serialize on SQLite's write lock and can never
 * over-commit a quota. The audit table is append-only: nothing here updates or deletes it. */
#include "ledger_backend.h"
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 4
#define BUSY_TIMEOUT_MS 5000

static const char schema_v1[] =
    "CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, user TEXT, size INTEGER NOT NULL,"
    " content_type TEXT, sha256 TEXT, created INTEGER NOT NULL, expires INTEGER NOT NULL DEFAULT 0,"
    " source_ip TEXT, scheme TEXT);"
    "CREATE INDEX IF NOT EXISTS files_user ON files(user);"
    "CREATE INDEX IF NOT EXISTS files_expires ON files(expires) WHERE expires > 0;"
    "CREATE TABLE IF NOT EXISTS reservations(path TEXT PRIMARY KEY, user TEXT NOT NULL,"
    " size INTEGER NOT NULL, expires INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS reservations_user ON reservations(user);"
    "CREATE TABLE IF NOT EXISTS quotas(user TEXT PRIMARY KEY, quota INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit(id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,"
    " event TEXT NOT NULL, user TEXT, path TEXT, size INTEGER NOT NULL DEFAULT 0, detail TEXT);";

/* v2: a reservation holds quota only until held_until (reservation_time), and carries the
 * file's retention (the upload purpose). Rows from v1 were held until their token expired. */
static const char schema_v2[] =
    "ALTER TABLE reservations ADD COLUMN held_until INTEGER NOT NULL DEFAULT 0;"
    "UPDATE reservations SET held_until = expires;"
    "ALTER TABLE reservations ADD COLUMN keep INTEGER NOT NULL DEFAULT -1;"
    "ALTER TABLE reservations ADD COLUMN expire_before INTEGER NOT NULL DEFAULT 0;"
    /* a grant sums only the user's held rows and drops only their dead ones: ranges, not
     * every reservation the user ever had */
    "DROP INDEX IF EXISTS reservations_user;"
    "CREATE INDEX reservations_held ON reservations(user, held_until);"
    "CREATE INDEX reservations_expires ON reservations(user, expires);"
    "CREATE INDEX reservations_dead ON reservations(expires);";

/* v3: a grant costs the same after a million slots as after one. What a user stores and holds
 * is kept as running sums (usage) instead of being added up per grant; a reservation is
 * "counted" while its bytes are in usage.held, and a grant settles only the holds that lapsed
 * since the last one (each row once). Dead reservations go with the maintenance timer, not
 * with each grant. */
static const char schema_v3[] =
    "CREATE TABLE usage(user TEXT PRIMARY KEY, stored INTEGER NOT NULL DEFAULT 0,"
    " held INTEGER NOT NULL DEFAULT 0);"
    "ALTER TABLE reservations ADD COLUMN counted INTEGER NOT NULL DEFAULT 0;"
    /* every row counts at first; those whose hold lapsed are settled at their user's next
     * grant, as any lapsed hold is */
    "UPDATE reservations SET counted = 1;"
    "INSERT INTO usage(user, stored) SELECT user, SUM(size) FROM files"
    " WHERE user IS NOT NULL GROUP BY user;"
    "INSERT INTO usage(user, held) SELECT user, SUM(size) FROM reservations WHERE counted = 1"
    " GROUP BY user ON CONFLICT(user) DO UPDATE SET held = excluded.held;"
    "DROP INDEX IF EXISTS reservations_held;"
    "DROP INDEX IF EXISTS reservations_expires;"
    "CREATE INDEX reservations_held ON reservations(user, held_until) WHERE counted = 1;";

/* v4: a file's media metadata, computed from its bytes at upload (c_src/media): the type the
 * bytes say, whether the signed type agrees (1/0), an image's size and BlurHash, whether a
 * thumbnail was stored. NULL where nothing is known (rows from before, files not probed). */
static const char schema_v4[] =
    "ALTER TABLE files ADD COLUMN media_type TEXT;"
    "ALTER TABLE files ADD COLUMN type_ok INTEGER;"
    "ALTER TABLE files ADD COLUMN width INTEGER;"
    "ALTER TABLE files ADD COLUMN height INTEGER;"
    "ALTER TABLE files ADD COLUMN blurhash TEXT;"
    "ALTER TABLE files ADD COLUMN thumbnail INTEGER;";

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_QUOTA_OF,
    S_USAGE_OF,
    S_LAPSED,
    S_ANY_LAPSED,
    S_SETTLE,
    S_UNCOUNT,
    S_ADD_USAGE,
    S_RETRY_AT,
    S_INSERT_RES,
    S_DELETE_RES,
    S_INSERT_FILE,
    S_AUDIT,
    S_SET_QUOTA,
    S_CLEAR_QUOTA,
    S_DELETE_FILE,
    S_LIST_USER,
    S_LIST_ALL,
    S_EXPIRED,
    S_GET_FILE,
    S_AUDIT_USER,
    S_AUDIT_ALL,
    S_SETTLE_DEAD,
    S_PURGE_ALL,
    S_FIND_RES,
    S_HOLD_RES,
    S_FILE_EXISTS,
    S_COUNT
};

/* A stored-file row as each_file() reads it. */
#define FILE_ROW "SELECT " HU__LEDGER_FILE_COLS " FROM files"

static const char *const sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_QUOTA_OF] = "SELECT quota FROM quotas WHERE user = ?1",
    [S_USAGE_OF] = "SELECT stored, held FROM usage WHERE user = ?1",
    /* holds that lapsed but are still counted (settled at the user's next grant) */
    [S_LAPSED] = "SELECT COALESCE(SUM(size), 0) FROM reservations WHERE user = ?1 AND counted = 1"
                 " AND held_until <= ?2",
    [S_ANY_LAPSED] = "SELECT EXISTS(SELECT 1 FROM reservations WHERE user = ?1 AND counted = 1"
                     " AND held_until <= ?2)",
    [S_SETTLE] = "UPDATE usage SET held = held - (SELECT COALESCE(SUM(size), 0) FROM reservations"
                 " WHERE user = ?1 AND counted = 1 AND held_until <= ?2) WHERE user = ?1",
    [S_UNCOUNT] = "UPDATE reservations SET counted = 0 WHERE user = ?1 AND counted = 1"
                  " AND held_until <= ?2",
    [S_ADD_USAGE] = "INSERT INTO usage(user, stored, held) VALUES(?1, ?2, ?3) ON CONFLICT(user)"
                    " DO UPDATE SET stored = stored + excluded.stored, held = held + excluded.held",
    [S_RETRY_AT] = "SELECT COALESCE(MIN(held_until), 0) FROM reservations WHERE user = ?1"
                   " AND counted = 1 AND held_until > ?2",
    [S_INSERT_RES] = "INSERT INTO reservations(path, user, size, expires, held_until, keep,"
                     " expire_before, counted) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_DELETE_RES] = "DELETE FROM reservations WHERE path = ?1 RETURNING user, size, counted",
    [S_INSERT_FILE] = "INSERT INTO files(" HU__LEDGER_FILE_COLS ") VALUES(?1, ?2, ?3, ?4, ?5,"
                      " ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [S_AUDIT] = "INSERT INTO audit(at, event, user, path, size, detail) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [S_SET_QUOTA] = "INSERT INTO quotas(user, quota) VALUES(?1, ?2)"
                    " ON CONFLICT(user) DO UPDATE SET quota = excluded.quota",
    [S_CLEAR_QUOTA] = "DELETE FROM quotas WHERE user = ?1",
    [S_DELETE_FILE] = "DELETE FROM files WHERE path = ?1 RETURNING user, size",
    [S_LIST_USER] = FILE_ROW " WHERE user = ?1 ORDER BY created, path",
    [S_LIST_ALL] = FILE_ROW " ORDER BY created, path",
    [S_EXPIRED] = FILE_ROW " WHERE expires > 0 AND expires <= ?1",
    [S_GET_FILE] = FILE_ROW " WHERE path = ?1",
    [S_AUDIT_USER] = "SELECT id, at, event, user, path, size, detail FROM audit WHERE user = ?1"
                     " ORDER BY id DESC LIMIT ?2",
    [S_AUDIT_ALL] = "SELECT id, at, event, user, path, size, detail FROM audit ORDER BY id DESC LIMIT ?2",
    [S_SETTLE_DEAD] = "UPDATE usage SET held = held - (SELECT COALESCE(SUM(r.size), 0)"
                      " FROM reservations r WHERE r.user = usage.user AND r.counted = 1"
                      " AND r.expires <= ?1) WHERE user IN (SELECT user FROM reservations"
                      " WHERE expires <= ?1 AND counted = 1)",
    [S_PURGE_ALL] = "DELETE FROM reservations WHERE expires <= ?1",
    [S_FIND_RES] = "SELECT held_until, keep, expire_before, counted FROM reservations"
                   " WHERE path = ?1 AND user = ?2 AND size = ?3 AND expires > ?4",
    [S_HOLD_RES] = "UPDATE reservations SET held_until = ?2, expires = MAX(expires, ?2),"
                   " counted = 1 WHERE path = ?1",
    [S_FILE_EXISTS] = "SELECT 1 FROM files WHERE path = ?1",
};

typedef struct {
    hu_ledger base;
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    char *sweep_path; /* <path>.sweep: flock()ed by the one start-up reconciliation */
    int sweep_fd;
} sq_ledger;

/* An SQLite failure as a negative errno: a full disk must reach the client as 507, not 500. */
static int fail(sq_ledger *l, int rc) {
    snprintf(l->base.errmsg, sizeof l->base.errmsg, "%s", sqlite3_errmsg(l->db));
    rc &= 0xff;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return -EAGAIN;
    int sys = sqlite3_system_errno(l->db);
    /* a file-system quota is a full disk here: -EDQUOT means a user's upload quota */
    return rc == SQLITE_FULL || sys == ENOSPC || sys == EDQUOT ? -ENOSPC : -EIO;
}

/* A prepared statement, reset and ready for binding. */
static sqlite3_stmt *stmt(sq_ledger *l, int which) {
    sqlite3_stmt *s = l->st[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* v, or NULL when it is not known. */
static void bind_int_or_null(sqlite3_stmt *s, int i, int64_t v, int known) {
    if (known)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

/* Runs a statement that returns no rows (or whose rows we ignore). */
static int run(sq_ledger *l, sqlite3_stmt *s) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail(l, rc);
}

/* A single int64 from a one-row query. */
static int scalar(sq_ledger *l, sqlite3_stmt *s, int64_t *out, int *found) {
    int rc = sqlite3_step(s);
    if (found)
        *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(l, rc);
}

static int begin(sq_ledger *l) { return run(l, stmt(l, S_BEGIN)); }
static int commit(sq_ledger *l) { return run(l, stmt(l, S_COMMIT)); }
static void rollback(sq_ledger *l) {
    if (!sqlite3_get_autocommit(l->db))
        run(l, stmt(l, S_ROLLBACK));
}

static int migrate(sq_ledger *l) {
    char *msg = NULL;
    /* IMMEDIATE: two processes opening a new ledger at once do not both create it. */
    int rc = sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
    sqlite3_stmt *v = NULL;
    int64_t version = 0;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(l->db, "PRAGMA user_version", -1, &v, NULL);
    if (rc == SQLITE_OK && sqlite3_step(v) == SQLITE_ROW)
        version = sqlite3_column_int64(v, 0);
    sqlite3_finalize(v);
    if (rc == SQLITE_OK && version > SCHEMA_VERSION) {
        snprintf(l->base.errmsg, sizeof l->base.errmsg, "ledger schema version %lld is newer than %d",
                 (long long)version, SCHEMA_VERSION);
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
        return -EPROTO;
    }
    if (rc == SQLITE_OK && version < 1)
        rc = sqlite3_exec(l->db, schema_v1, NULL, NULL, &msg);
    if (rc == SQLITE_OK && version < 2)
        rc = sqlite3_exec(l->db, schema_v2, NULL, NULL, &msg);
    if (rc == SQLITE_OK && version < 3)
        rc = sqlite3_exec(l->db, schema_v3, NULL, NULL, &msg);
    if (rc == SQLITE_OK && version < 4)
        rc = sqlite3_exec(l->db, schema_v4, NULL, NULL, &msg);
    if (rc == SQLITE_OK && version < SCHEMA_VERSION) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", SCHEMA_VERSION);
        rc = sqlite3_exec(l->db, pragma, NULL, NULL, &msg);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(l->db, "COMMIT", NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int err = fail(l, rc);
        if (msg != NULL)
            snprintf(l->base.errmsg, sizeof l->base.errmsg, "%s", msg);
        sqlite3_free(msg);
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
        return err;
    }
    return 0;
}

static const hu_ledger_ops sqlite_ops;

int hu__ledger_sqlite_open(const char *path, hu_ledger **out) {
    *out = NULL;
    sq_ledger *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    l->base.ops = &sqlite_ops;
    l->sweep_fd = -1;
    if (asprintf(&l->sweep_path, "%s.sweep", path) < 0) {
        l->sweep_path = NULL;
        *out = &l->base;
        return -ENOMEM;
    }
    /* It holds every capability URL, user and IP: owner only. SQLite gives the -wal and -shm
     * files the mode of the database file, so creating that one is enough. Only when it does
     * not exist yet: closing a descriptor of a file drops every POSIX lock this process holds
     * on it, those of this process's other handles included (another process would then
     * take itself for the last connection and delete the WAL they still write to). */
    int pre = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (pre >= 0)
        close(pre);
    int rc = sqlite3_open_v2(path, &l->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(l->db, BUSY_TIMEOUT_MS);
        /* WAL: readers never block the writer. FULL syncs the WAL at every commit: a
         * committed row survives a power cut, as a 201 promises (NORMAL only survives a
         * process crash); group commits share the sync. Processes opening a new file at once
         * can find it locked while another one switches it to WAL, without the busy handler
         * being asked: retried for the busy timeout. */
        for (int tries = 0; tries < BUSY_TIMEOUT_MS / 10; tries++) {
            rc = sqlite3_exec(l->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                                     " PRAGMA foreign_keys=OFF;", NULL, NULL, NULL);
            if ((rc & 0xff) != SQLITE_BUSY)
                break;
            usleep(10 * 1000);
        }
    }
    int err = rc == SQLITE_OK ? migrate(l) : fail(l, rc);
    for (int tries = 0; err == -EAGAIN && tries < BUSY_TIMEOUT_MS / 10; tries++) {
        usleep(10 * 1000);
        err = migrate(l);
    }
    for (int i = 0; err == 0 && i < S_COUNT; i++)
        if (sqlite3_prepare_v3(l->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &l->st[i], NULL) !=
            SQLITE_OK)
            err = fail(l, SQLITE_ERROR);
    *out = &l->base; /* also on failure, so the caller can read errmsg */
    return err;
}

static void sq_close(hu_ledger *hl) {
    sq_ledger *l = (sq_ledger *)hl;
    if (l->sweep_fd >= 0)
        close(l->sweep_fd);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(l->st[i]);
    sqlite3_close(l->db);
    free(l->sweep_path);
    free(l);
}

static int audit(sq_ledger *l, int64_t now, const char *event, const char *user,
                 const char *path, uint64_t size, const char *detail) {
    sqlite3_stmt *s = stmt(l, S_AUDIT);
    sqlite3_bind_int64(s, 1, now);
    bind_text(s, 2, event);
    bind_text(s, 3, user);
    bind_text(s, 4, path);
    sqlite3_bind_int64(s, 5, (int64_t)size);
    bind_text(s, 6, detail);
    return run(l, s);
}

static int sq_audit(hu_ledger *hl, int64_t now, const char *event, const char *user,
                    const char *path, uint64_t size, const char *detail) {
    sq_ledger *l = (sq_ledger *)hl;
    return audit(l, now, event, user, path, size, detail);
}

/* Adds (or with negative deltas, takes) bytes to user's running sums. */
static int add_usage(sq_ledger *l, const char *user, int64_t stored, int64_t held) {
    if (user == NULL || (stored == 0 && held == 0))
        return 0;
    sqlite3_stmt *s = stmt(l, S_ADD_USAGE);
    bind_text(s, 1, user);
    sqlite3_bind_int64(s, 2, stored);
    sqlite3_bind_int64(s, 3, held);
    return run(l, s);
}

/* The quota that applies to user: its override, or the default. */
static int quota_of(sq_ledger *l, const char *user, uint64_t default_quota, uint64_t *quota) {
    int64_t q = 0;
    int found = 0;
    sqlite3_stmt *s = stmt(l, S_QUOTA_OF);
    bind_text(s, 1, user);
    int rc = scalar(l, s, &q, &found);
    *quota = found ? (uint64_t)q : default_quota;
    return rc;
}

/* used, reserved (held at now) and quota for user; inside or outside a transaction. Reads the
 * running sums: the only rows visited are holds that lapsed since the user's last grant. */
static int usage(sq_ledger *l, const char *user, int64_t now, uint64_t default_quota,
                 uint64_t *used, uint64_t *reserved, uint64_t *quota) {
    int64_t stored = 0, held = 0, lapsed = 0;
    sqlite3_stmt *s = stmt(l, S_USAGE_OF);
    bind_text(s, 1, user);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        stored = sqlite3_column_int64(s, 0);
        held = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail(l, rc);
    s = stmt(l, S_LAPSED);
    bind_text(s, 1, user);
    sqlite3_bind_int64(s, 2, now);
    if ((rc = scalar(l, s, &lapsed, NULL)) < 0)
        return rc;
    *used = stored > 0 ? (uint64_t)stored : 0;
    *reserved = held > lapsed ? (uint64_t)(held - lapsed) : 0;
    return quota_of(l, user, default_quota, quota);
}

static int sq_usage(hu_ledger *hl, const char *user, int64_t now, uint64_t default_quota,
                    uint64_t *used, uint64_t *reserved, uint64_t *quota) {
    sq_ledger *l = (sq_ledger *)hl;
    return usage(l, user, now, default_quota, used, reserved, quota);
}

static int retry_at_of(sq_ledger *l, const char *user, int64_t now, int64_t *at) {
    sqlite3_stmt *s = stmt(l, S_RETRY_AT);
    bind_text(s, 1, user);
    sqlite3_bind_int64(s, 2, now);
    *at = 0;
    return scalar(l, s, at, NULL);
}

/* Ends a grant's or a claim's transaction: committed when it succeeded or was refused over
 * quota (the refusal's audit row stays), rolled back on any other error. */
static int finish(sq_ledger *l, int rc) {
    if (rc == 0 || rc == -EDQUOT) {
        int crc = commit(l);
        if (crc == 0)
            return rc;
        rc = crc;
    }
    rollback(l);
    return rc;
}

/* Inside a transaction: holds of user that lapsed by now stop counting (once each). Most
 * grants find none, and one indexed probe costs less than the two updates that would change
 * nothing (a fifth of a grant's CPU). */
static int settle_lapsed(sq_ledger *l, const char *user, int64_t now) {
    int64_t any = 0;
    sqlite3_stmt *s = stmt(l, S_ANY_LAPSED);
    bind_text(s, 1, user);
    sqlite3_bind_int64(s, 2, now);
    int rc = scalar(l, s, &any, NULL);
    if (rc < 0 || !any)
        return rc;
    for (int which = S_SETTLE; which <= S_UNCOUNT; which++) {
        s = stmt(l, which);
        bind_text(s, 1, user);
        sqlite3_bind_int64(s, 2, now);
        if ((rc = run(l, s)) < 0)
            return rc;
    }
    return 0;
}

/* Inside a transaction: requires used + held + size <= quota. Over it: a "refused" audit row,
 * *retry_at, -EDQUOT (the transaction is left open for the caller to commit). */
static int fits_in_tx(sq_ledger *l, const char *path, const char *user, uint64_t size,
                      int64_t now, uint64_t default_quota, int64_t *retry_at) {
    uint64_t used = 0, reserved = 0, quota = default_quota;
    int rc;
    if ((rc = quota_of(l, user, default_quota, &quota)) < 0)
        return rc;
    /* unlimited: nothing to add up */
    if (quota == 0)
        return 0;
    if ((rc = settle_lapsed(l, user, now)) < 0 ||
        (rc = usage(l, user, now, default_quota, &used, &reserved, &quota)) < 0)
        return rc;
    char detail[96];
    if (hu__ledger_over_quota(used, reserved, size, quota, detail, sizeof detail)) {
        if ((rc = retry_at_of(l, user, now, retry_at)) < 0 ||
            (rc = audit(l, now, "refused", user, path, size, detail)) < 0)
            return rc;
        return -EDQUOT;
    }
    return 0;
}

/* Inside a transaction: the quota check, then the reservation (counted while held) and an
 * audit row (event). */
static int reserve_in_tx(sq_ledger *l, const hu_reservation *r, int64_t now,
                         uint64_t default_quota, const char *event, int64_t *retry_at) {
    int rc = fits_in_tx(l, r->path, r->user, r->size, now, default_quota, retry_at);
    if (rc < 0)
        return rc;
    int held = r->held_until > now;
    sqlite3_stmt *s = stmt(l, S_INSERT_RES);
    bind_text(s, 1, r->path);
    bind_text(s, 2, r->user);
    sqlite3_bind_int64(s, 3, (int64_t)r->size);
    sqlite3_bind_int64(s, 4, r->expires);
    sqlite3_bind_int64(s, 5, r->held_until);
    sqlite3_bind_int64(s, 6, r->retention.keep);
    sqlite3_bind_int64(s, 7, r->retention.expire_before);
    sqlite3_bind_int(s, 8, held);
    if ((rc = run(l, s)) < 0)
        return sqlite3_extended_errcode(l->db) == SQLITE_CONSTRAINT_PRIMARYKEY ? -EEXIST : rc;
    if (held && (rc = add_usage(l, r->user, 0, (int64_t)r->size)) < 0)
        return rc;
    return audit(l, now, event, r->user, r->path, r->size, NULL);
}

/* One transaction for the group: a grant refused (over quota, its refusal kept, as finish()
 * keeps it) or already made leaves the others; any other failure rolls back them all. */
static int sq_reserve(hu_ledger *hl, const hu_reservation *r, size_t n, int64_t now,
                      uint64_t default_quota, int *results, int64_t *retry_at) {
    sq_ledger *l = (sq_ledger *)hl;
    int rc = begin(l);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        results[i] = reserve_in_tx(l, &r[i], now, default_quota, "grant", &retry_at[i]);
        if (results[i] < 0 && results[i] != -EDQUOT && results[i] != -EEXIST)
            rc = results[i];
    }
    if (rc == 0 && (rc = commit(l)) == 0)
        return 0;
    rollback(l);
    return rc;
}

/* Inside a transaction: the reservation of (path, user, size) whose token is unexpired.
 * 1 found (its hold, whether it is counted, its retention), 0 not, or an error. */
static int find_reservation(sq_ledger *l, const char *path, const char *user, uint64_t size,
                            int64_t now, int64_t *held_until, int *counted,
                            hu_retention *retention) {
    sqlite3_stmt *s = stmt(l, S_FIND_RES);
    bind_text(s, 1, path);
    bind_text(s, 2, user);
    sqlite3_bind_int64(s, 3, (int64_t)size);
    sqlite3_bind_int64(s, 4, now);
    int rc = sqlite3_step(s), found = rc == SQLITE_ROW;
    if (found) {
        *held_until = sqlite3_column_int64(s, 0);
        retention->keep = sqlite3_column_int64(s, 1);
        retention->expire_before = sqlite3_column_int64(s, 2);
        *counted = sqlite3_column_int(s, 3);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : fail(l, rc);
}

/* Inside a transaction: drops the reservation of path, and its bytes from its user's held sum
 * if they were counted. */
static int drop_reservation(sq_ledger *l, const char *path) {
    sqlite3_stmt *s = stmt(l, S_DELETE_RES);
    bind_text(s, 1, path);
    int rc = sqlite3_step(s);
    char user[HU_MAX_USER_LEN + 1] = "";
    int64_t size = 0;
    int counted = 0;
    if (rc == SQLITE_ROW) {
        snprintf(user, sizeof user, "%s", (const char *)sqlite3_column_text(s, 0));
        size = sqlite3_column_int64(s, 1);
        counted = sqlite3_column_int(s, 2);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return fail(l, rc);
    return counted ? add_usage(l, user, 0, -size) : 0;
}

/* Inside a transaction: a claim (hu_ledger_claim). Without hold (the claim of a completion,
 * whose row follows in the same transaction and drops the reservation) only the quota
 * decides and the audit says so: the reservation is neither held nor made, since it would be
 * gone again at once. */
static int claim_in_tx(sq_ledger *l, const char *path, const char *user, uint64_t size,
                       int64_t until, int64_t now, uint64_t default_quota, int hold,
                       hu_retention *retention) {
    int64_t held_until = 0, retry_at;
    int counted = 0;
    int rc = find_reservation(l, path, user, size, now, &held_until, &counted, retention);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        /* a hold that lapsed counts no more: the quota decides again */
        if (held_until <= now) {
            if ((rc = fits_in_tx(l, path, user, size, now, default_quota, &retry_at)) < 0 ||
                (rc = audit(l, now, "reserve at upload", user, path, size,
                            "after its hold lapsed")) < 0)
                return rc;
            /* settled by the quota check (or never counted, under no quota) */
            if (counted && (rc = settle_lapsed(l, user, now)) < 0)
                return rc;
            counted = 0;
        }
        if (!hold)
            return 0;
        sqlite3_stmt *s = stmt(l, S_HOLD_RES);
        bind_text(s, 1, path);
        sqlite3_bind_int64(s, 2, until);
        if ((rc = run(l, s)) < 0)
            return rc;
        return counted ? 0 : add_usage(l, user, 0, (int64_t)size);
    }
    /* never made here, or made for something else: as a grant would */
    *retention = HU_RETENTION_DEFAULT;
    if ((rc = drop_reservation(l, path)) < 0)
        return rc;
    if (!hold)
        return (rc = fits_in_tx(l, path, user, size, now, default_quota, &retry_at)) < 0
                   ? rc
                   : audit(l, now, "reserve at upload", user, path, size, NULL);
    hu_reservation r = {path, user, size, until, until, HU_RETENTION_DEFAULT};
    return reserve_in_tx(l, &r, now, default_quota, "reserve at upload", &retry_at);
}

static int sq_claim(hu_ledger *hl, const char *path, const char *user, uint64_t size,
                    int64_t until, int64_t now, uint64_t default_quota, hu_retention *retention) {
    sq_ledger *l = (sq_ledger *)hl;
    int rc = begin(l);
    if (rc < 0)
        return rc;
    return finish(l, claim_in_tx(l, path, user, size, until, now, default_quota, 1, retention));
}

static int sq_release(hu_ledger *hl, const char *path) {
    sq_ledger *l = (sq_ledger *)hl;
    int rc = begin(l);
    if (rc < 0)
        return rc;
    rc = drop_reservation(l, path);
    return rc < 0 ? (rollback(l), rc) : commit(l);
}

/* Inside a transaction: one completion. The file row first: a path already recorded fails
 * alone (-EEXIST) and changes nothing. */
static int record_in_tx(sq_ledger *l, const hu_stored_file *f) {
    if (f->size > INT64_MAX)
        return -EINVAL;
    sqlite3_stmt *s = stmt(l, S_INSERT_FILE);
    bind_text(s, HU__FC_PATH + 1, f->path);
    bind_text(s, HU__FC_USER + 1, f->user);
    sqlite3_bind_int64(s, HU__FC_SIZE + 1, (int64_t)f->size);
    bind_text(s, HU__FC_CONTENT_TYPE + 1, f->content_type);
    bind_text(s, HU__FC_SHA256 + 1, f->sha256_hex);
    sqlite3_bind_int64(s, HU__FC_CREATED + 1, f->created);
    sqlite3_bind_int64(s, HU__FC_EXPIRES + 1, f->expires);
    bind_text(s, HU__FC_SOURCE_IP + 1, f->source_ip);
    bind_text(s, HU__FC_SCHEME + 1, f->scheme);
    bind_text(s, HU__FC_MEDIA_TYPE + 1, f->media_type);
    bind_int_or_null(s, HU__FC_TYPE_OK + 1, f->type_ok, f->media_type && f->type_ok >= 0);
    bind_int_or_null(s, HU__FC_WIDTH + 1, f->width, f->width > 0);
    bind_int_or_null(s, HU__FC_HEIGHT + 1, f->height, f->height > 0);
    bind_text(s, HU__FC_BLURHASH + 1, f->blurhash);
    sqlite3_bind_int(s, HU__FC_THUMBNAIL + 1, f->thumbnail ? 1 : 0);
    int rc = run(l, s);
    if (rc < 0)
        return sqlite3_extended_errcode(l->db) == SQLITE_CONSTRAINT_PRIMARYKEY ? -EEXIST : rc;
    char detail[96];
    snprintf(detail, sizeof detail, "scheme=%s%s sha256=%.16s", f->scheme ? f->scheme : "?",
             f->user ? "" : " (legacy token, no user)", f->sha256_hex ? f->sha256_hex : "-");
    if ((rc = drop_reservation(l, f->path)) < 0 ||
        (rc = add_usage(l, f->user, (int64_t)f->size, 0)) < 0)
        return rc;
    return audit(l, f->created, "upload", f->user, f->path, f->size, detail);
}

/* Inside a transaction: one completion, its claim first when it has one. A completion
 * refused alone changes nothing but what hu_completion says stays. */
static int complete_in_tx(sq_ledger *l, hu_completion *c, int64_t now) {
    const hu_stored_file *f = &c->file;
    if (c->claim) {
        if (f->size > INT64_MAX || f->user == NULL)
            return -EINVAL;
        int64_t one = 0;
        int exists = 0;
        sqlite3_stmt *s = stmt(l, S_FILE_EXISTS);
        bind_text(s, 1, f->path);
        int rc = scalar(l, s, &one, &exists);
        if (rc < 0 || exists)
            return rc < 0 ? rc : -EEXIST;
        hu_retention found;
        rc = claim_in_tx(l, f->path, f->user, f->size, c->claim_until, now, c->default_quota, 0,
                         &found);
        if (rc < 0)
            return rc;
        if (found.keep != c->retention.keep || found.expire_before != c->retention.expire_before)
            return -ESTALE;
    }
    return record_in_tx(l, f);
}

static int sq_complete(hu_ledger *hl, hu_completion *c, size_t n, int64_t now) {
    sq_ledger *l = (sq_ledger *)hl;
    int rc = begin(l);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        c[i].result = complete_in_tx(l, &c[i], now);
        /* a completion's own refusal leaves the others; anything else (disk full, I/O) fails
         * the whole batch */
        if (c[i].result < 0 && !hu__ledger_own_failure(c[i].result))
            rc = c[i].result;
    }
    if (rc == 0 && (rc = commit(l)) == 0)
        return 0;
    rollback(l);
    return rc;
}

static int sq_retention(hu_ledger *hl, const char *path, const char *user, uint64_t size,
                        int64_t now, hu_retention *out) {
    sq_ledger *l = (sq_ledger *)hl;
    int64_t held_until;
    int counted;
    int rc = find_reservation(l, path, user, size, now, &held_until, &counted, out);
    if (rc == 0)
        *out = HU_RETENTION_DEFAULT;
    return rc < 0 ? rc : 0;
}

static int sq_set_quota(hu_ledger *hl, const char *user, uint64_t quota) {
    sq_ledger *l = (sq_ledger *)hl;
    sqlite3_stmt *s = stmt(l, S_SET_QUOTA);
    bind_text(s, 1, user);
    sqlite3_bind_int64(s, 2, (int64_t)quota);
    return run(l, s);
}

static int sq_clear_quota(hu_ledger *hl, const char *user) {
    sq_ledger *l = (sq_ledger *)hl;
    sqlite3_stmt *s = stmt(l, S_CLEAR_QUOTA);
    bind_text(s, 1, user);
    return run(l, s);
}

static int sq_delete_file(hu_ledger *hl, const char *path, const char *reason) {
    sq_ledger *l = (sq_ledger *)hl;
    int rc = begin(l);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s = stmt(l, S_DELETE_FILE);
    bind_text(s, 1, path);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        rc = rc == SQLITE_DONE ? -ENOENT : fail(l, rc);
        goto out;
    }
    char user[HU_MAX_USER_LEN + 1] = "";
    const unsigned char *u = sqlite3_column_text(s, 0);
    int has_user = u != NULL;
    if (u)
        snprintf(user, sizeof user, "%s", (const char *)u);
    uint64_t size = (uint64_t)sqlite3_column_int64(s, 1);
    while (sqlite3_step(s) == SQLITE_ROW) {
    }
    sqlite3_reset(s);
    if ((has_user && (rc = add_usage(l, user, -(int64_t)size, 0)) < 0) ||
        (rc = audit(l, (int64_t)time(NULL), "delete", has_user ? user : NULL, path, size, reason)) < 0 ||
        (rc = commit(l)) < 0)
        goto out;
    return 0;
out:
    rollback(l);
    return rc;
}

static const char *col_text(sqlite3_stmt *s, int i) {
    return (const char *)sqlite3_column_text(s, i);
}

/* A width or height: NULL (unknown) and anything out of range read as 0. */
static uint32_t col_u32(sqlite3_stmt *s, int i) {
    int64_t v = sqlite3_column_int64(s, i);
    return v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

static int each_file(sq_ledger *l, sqlite3_stmt *s, hu_ledger_file_cb cb, void *ctx, int *n) {
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int type_known = sqlite3_column_type(s, HU__FC_TYPE_OK) != SQLITE_NULL;
        hu_stored_file f = {
            .path = col_text(s, HU__FC_PATH),
            .user = col_text(s, HU__FC_USER),
            .size = (uint64_t)sqlite3_column_int64(s, HU__FC_SIZE),
            .content_type = col_text(s, HU__FC_CONTENT_TYPE),
            .sha256_hex = col_text(s, HU__FC_SHA256),
            .created = sqlite3_column_int64(s, HU__FC_CREATED),
            .expires = sqlite3_column_int64(s, HU__FC_EXPIRES),
            .source_ip = col_text(s, HU__FC_SOURCE_IP),
            .scheme = col_text(s, HU__FC_SCHEME),
            .media_type = col_text(s, HU__FC_MEDIA_TYPE),
            .type_ok = type_known ? sqlite3_column_int(s, HU__FC_TYPE_OK) != 0 : -1,
            .width = col_u32(s, HU__FC_WIDTH),
            .height = col_u32(s, HU__FC_HEIGHT),
            .blurhash = col_text(s, HU__FC_BLURHASH),
            .thumbnail = sqlite3_column_int(s, HU__FC_THUMBNAIL) != 0, /* NULL reads 0 */
        };
        (*n)++;
        if (cb(ctx, &f)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail(l, rc);
}

static int sq_list_files(hu_ledger *hl, const char *user, hu_ledger_file_cb cb, void *ctx) {
    sq_ledger *l = (sq_ledger *)hl;
    sqlite3_stmt *s = stmt(l, user ? S_LIST_USER : S_LIST_ALL);
    if (user)
        bind_text(s, 1, user);
    int n;
    return each_file(l, s, cb, ctx, &n);
}

static int sq_expired_files(hu_ledger *hl, int64_t now, hu_ledger_file_cb cb, void *ctx) {
    sq_ledger *l = (sq_ledger *)hl;
    sqlite3_stmt *s = stmt(l, S_EXPIRED);
    sqlite3_bind_int64(s, 1, now);
    int n;
    return each_file(l, s, cb, ctx, &n);
}

static int sq_get_file(hu_ledger *hl, const char *path, hu_ledger_file_cb cb, void *ctx) {
    sq_ledger *l = (sq_ledger *)hl;
    sqlite3_stmt *s = stmt(l, S_GET_FILE);
    bind_text(s, 1, path);
    int n, rc = each_file(l, s, cb, ctx, &n);
    return rc < 0 ? rc : n == 0 ? -ENOENT : 0;
}

static int sq_audit_recent(hu_ledger *hl, const char *user, unsigned limit, hu_ledger_audit_cb cb,
                           void *ctx) {
    sq_ledger *l = (sq_ledger *)hl;
    sqlite3_stmt *s = stmt(l, user ? S_AUDIT_USER : S_AUDIT_ALL);
    if (user)
        bind_text(s, 1, user);
    sqlite3_bind_int64(s, 2, limit);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        hu_audit_entry e = {
            .id = sqlite3_column_int64(s, 0),
            .at = sqlite3_column_int64(s, 1),
            .event = col_text(s, 2),
            .user = col_text(s, 3),
            .path = col_text(s, 4),
            .size = (uint64_t)sqlite3_column_int64(s, 5),
            .detail = col_text(s, 6),
        };
        if (cb(ctx, &e)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail(l, rc);
}

static int sq_purge_reservations(hu_ledger *hl, int64_t now) {
    sq_ledger *l = (sq_ledger *)hl;
    int rc = begin(l);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s = stmt(l, S_SETTLE_DEAD);
    sqlite3_bind_int64(s, 1, now);
    if ((rc = run(l, s)) < 0)
        goto out;
    s = stmt(l, S_PURGE_ALL);
    sqlite3_bind_int64(s, 1, now);
    if ((rc = run(l, s)) < 0)
        goto out;
    int n = sqlite3_changes(l->db);
    if ((rc = commit(l)) < 0)
        goto out;
    return n;
out:
    rollback(l);
    return rc;
}

static int sq_retry_at(hu_ledger *hl, const char *user, int64_t now, int64_t *at) {
    return retry_at_of((sq_ledger *)hl, user, now, at);
}

/* Servers sharing one directory (and so this file) take turns: a lock file beside the
 * database, flock()ed (released by the kernel if the holder dies). SQLite's own locks are
 * fcntl() locks on the database file, which an open and close of it here would drop. */
static int sq_try_sweep_lock(hu_ledger *hl) {
    sq_ledger *l = (sq_ledger *)hl;
    if (l->sweep_fd >= 0)
        return 1;
    int fd = open(l->sweep_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int err = errno;
        snprintf(l->base.errmsg, sizeof l->base.errmsg, "%s: %s", l->sweep_path, strerror(err));
        return -err;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        close(fd);
        return err == EWOULDBLOCK ? 0 : -err;
    }
    l->sweep_fd = fd;
    return 1;
}

static void sq_sweep_unlock(hu_ledger *hl) {
    sq_ledger *l = (sq_ledger *)hl;
    if (l->sweep_fd >= 0)
        close(l->sweep_fd); /* drops the flock */
    l->sweep_fd = -1;
}

static const hu_ledger_ops sqlite_ops = {
    .close = sq_close,
    .reserve = sq_reserve,
    .complete = sq_complete,
    .retention = sq_retention,
    .usage = sq_usage,
    .set_quota = sq_set_quota,
    .clear_quota = sq_clear_quota,
    .delete_file = sq_delete_file,
    .audit = sq_audit,
    .retry_at = sq_retry_at,
    .claim = sq_claim,
    .release = sq_release,
    .list_files = sq_list_files,
    .expired_files = sq_expired_files,
    .get_file = sq_get_file,
    .audit_recent = sq_audit_recent,
    .purge_reservations = sq_purge_reservations,
    .try_sweep_lock = sq_try_sweep_lock,
    .sweep_unlock = sq_sweep_unlock,
};
