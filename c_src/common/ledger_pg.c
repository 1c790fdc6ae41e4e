/* The ledger in PostgreSQL (libpq), the same tables and rules as ledger_sqlite.c.
 * Race-free grants: a grant or a claim locks its user's usage row first (READ COMMITTED,
 * SELECT ... FOR UPDATE), so the grants of one user queue on that row on every node and
 * server, and those of different users run in parallel. The running sums never drift: each
 * change of a sum is computed from the rows a statement actually changed (UPDATE / DELETE
 * ... RETURNING in the same statement), never from an earlier read. Every write is one
 * transaction; a deadlock or serialization failure retries it whole.
 * The connection: connect_timeout, TCP keepalives and tcp_user_timeout default to short
 * values unless the URL sets them; statement_timeout and lock_timeout likewise unless the
 * server or the URL's options set them. A broken connection is reset at most once a second;
 * calls in between fail fast with -ENOTCONN. A transaction whose connection broke before its
 * COMMIT is retried once on a fresh connection (nothing of it was applied). One whose
 * connection broke during its COMMIT may or may not have taken effect: a new connection is
 * made at once and asks (txid_status of the transaction's id, its rows for a batch of
 * completions); committed, the call succeeds as it would have; rolled back, it is retried
 * once as above; only when nobody can tell does it fail with -ENOTCONN.
 * The audit table is append-only: nothing here updates or deletes it, and a trigger refuses
 * anyone else who tries. */
#include "ledger_backend.h"
#include "token.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 4
#define RECONNECT_MS 1000 /* at most one reconnection attempt a second */
#define MAX_RETRIES 30    /* deadlocks or serialization failures before -EAGAIN */
#define RETRY -EDEADLK    /* inside this file only: run the transaction again */
#define RESOLVE_MS 3000   /* how long a COMMIT whose connection broke is waited for */

/* The whole schema at version 3 (the PostgreSQL backend began there). A later version adds
 * its step after it (schema_v4, ...), as ledger_sqlite.c does. */
static const char schema_v3[] =
    "CREATE TABLE files(path TEXT PRIMARY KEY, \"user\" TEXT, size BIGINT NOT NULL,"
    " content_type TEXT, sha256 TEXT, created BIGINT NOT NULL, expires BIGINT NOT NULL DEFAULT 0,"
    " source_ip TEXT, scheme TEXT);"
    "CREATE INDEX files_user ON files(\"user\");"
    "CREATE INDEX files_expires ON files(expires) WHERE expires > 0;"
    "CREATE TABLE reservations(path TEXT PRIMARY KEY, \"user\" TEXT NOT NULL,"
    " size BIGINT NOT NULL, expires BIGINT NOT NULL, held_until BIGINT NOT NULL DEFAULT 0,"
    " keep BIGINT NOT NULL DEFAULT -1, expire_before BIGINT NOT NULL DEFAULT 0,"
    " counted INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX reservations_held ON reservations(\"user\", held_until) WHERE counted = 1;"
    "CREATE INDEX reservations_dead ON reservations(expires);"
    "CREATE TABLE quotas(\"user\" TEXT PRIMARY KEY, quota BIGINT NOT NULL);"
    "CREATE TABLE usage(\"user\" TEXT PRIMARY KEY, stored BIGINT NOT NULL DEFAULT 0,"
    " held BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE audit(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at BIGINT NOT NULL,"
    " event TEXT NOT NULL, \"user\" TEXT, path TEXT, size BIGINT NOT NULL DEFAULT 0, detail TEXT);"
    "CREATE INDEX audit_user ON audit(\"user\", id);"
    "CREATE FUNCTION hu_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN RAISE EXCEPTION 'the audit log is append-only'; END$$;"
    "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit"
    " FOR EACH STATEMENT EXECUTE FUNCTION hu_audit_append_only();"
    "CREATE TABLE schema_version(version INTEGER NOT NULL);"
    "INSERT INTO schema_version VALUES(3);";

/* v4: a file's media metadata (ledger_sqlite.c says what each column holds); NULL where
 * nothing is known. */
static const char schema_v4[] =
    "ALTER TABLE files ADD COLUMN media_type TEXT, ADD COLUMN type_ok BOOLEAN,"
    " ADD COLUMN width BIGINT, ADD COLUMN height BIGINT, ADD COLUMN blurhash TEXT,"
    " ADD COLUMN thumbnail BOOLEAN;"
    "UPDATE schema_version SET version = 4;";

enum {
    P_LOCK_USER,
    P_NEW_USER,
    P_USAGE_OF,
    P_SETTLE,
    P_RETRY_AT,
    P_INSERT_RES,
    P_DELETE_RES,
    P_INSERT_FILE,
    P_ADD_USAGE,
    P_AUDIT,
    P_SET_QUOTA,
    P_CLEAR_QUOTA,
    P_DELETE_FILE,
    P_LIST_USER,
    P_LIST_ALL,
    P_EXPIRED,
    P_GET_FILE,
    P_AUDIT_USER,
    P_AUDIT_ALL,
    P_PURGE,
    P_FIND_RES,
    P_FILE_EXISTS,
    P_HOLD_RES,
    P_COUNT
};

static const char *const sql[P_COUNT] = {
    /* the user's sums and quota, the row locked until the transaction ends */
    [P_LOCK_USER] = "SELECT u.stored, u.held, q.quota FROM usage u LEFT JOIN quotas q"
                    " ON q.\"user\" = u.\"user\" WHERE u.\"user\" = $1 FOR UPDATE OF u",
    [P_NEW_USER] = "INSERT INTO usage(\"user\") VALUES($1) ON CONFLICT DO NOTHING",
    /* stored, held, the holds that lapsed but still count, the quota override (or NULL) */
    [P_USAGE_OF] = "SELECT COALESCE((SELECT stored FROM usage WHERE \"user\" = $1), 0),"
                   " COALESCE((SELECT held FROM usage WHERE \"user\" = $1), 0),"
                   " (SELECT COALESCE(SUM(size), 0) FROM reservations WHERE \"user\" = $1"
                   " AND counted = 1 AND held_until <= $2),"
                   " (SELECT quota FROM quotas WHERE \"user\" = $1)",
    /* the holds that lapsed stop counting, each once: the sum takes exactly the rows this
     * statement uncounted */
    [P_SETTLE] = "WITH s AS (UPDATE reservations SET counted = 0 WHERE \"user\" = $1"
                 " AND counted = 1 AND held_until <= $2 RETURNING size)"
                 " UPDATE usage SET held = usage.held - (SELECT COALESCE(SUM(size), 0) FROM s)"
                 " WHERE \"user\" = $1 RETURNING stored, held",
    [P_RETRY_AT] = "SELECT COALESCE(MIN(held_until), 0) FROM reservations WHERE \"user\" = $1"
                   " AND counted = 1 AND held_until > $2",
    /* the reservation, its bytes if held, its audit row: one statement; no row when the path
     * is taken */
    [P_INSERT_RES] = "WITH r AS (INSERT INTO reservations(path, \"user\", size, expires,"
                     " held_until, keep, expire_before, counted)"
                     " VALUES($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
                     " RETURNING size, counted),"
                     " u AS (UPDATE usage SET held = usage.held + r.size FROM r"
                     " WHERE usage.\"user\" = $2 AND r.counted = 1)"
                     " INSERT INTO audit(at, event, \"user\", path, size)"
                     " SELECT $9, $10, $2, $1, $3 FROM r",
    [P_DELETE_RES] = "WITH d AS (DELETE FROM reservations WHERE path = $1"
                     " RETURNING \"user\", size, counted)"
                     " UPDATE usage SET held = usage.held - d.size FROM d"
                     " WHERE usage.\"user\" = d.\"user\" AND d.counted = 1",
    /* a completion in one statement: the file row (none when the path is recorded already,
     * and then nothing else either), its reservation dropped, the bytes moved from the held
     * sum of the reservation's user to the stored sum of the file's (each usage row changed
     * once), an audit row; the count of file rows written */
    [P_INSERT_FILE] = "WITH f AS (INSERT INTO files(" HU__LEDGER_FILE_COLS ")"
                      " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                      " ON CONFLICT DO NOTHING"
                      " RETURNING path, \"user\", size),"
                      " d AS (DELETE FROM reservations WHERE path = $1 AND EXISTS (SELECT 1 FROM f)"
                      " RETURNING \"user\", size, counted),"
                      " delta AS (SELECT \"user\", SUM(s) AS s, SUM(h) AS h FROM"
                      " (SELECT \"user\", size AS s, 0 AS h FROM f WHERE \"user\" IS NOT NULL"
                      " UNION ALL SELECT \"user\", 0, -size FROM d WHERE counted = 1) x"
                      " GROUP BY \"user\"),"
                      " u AS (INSERT INTO usage(\"user\", stored, held) SELECT \"user\", s, h"
                      " FROM delta ON CONFLICT(\"user\") DO UPDATE SET"
                      " stored = usage.stored + excluded.stored, held = usage.held + excluded.held),"
                      " a AS (INSERT INTO audit(at, event, \"user\", path, size, detail)"
                      " SELECT $6, 'upload', $2, $1, $3, $16 FROM f)"
                      " SELECT COUNT(*) FROM f",
    [P_ADD_USAGE] = "INSERT INTO usage(\"user\", stored, held) VALUES($1, $2, $3)"
                    " ON CONFLICT(\"user\") DO UPDATE SET stored = usage.stored + excluded.stored,"
                    " held = usage.held + excluded.held",
    [P_AUDIT] = "INSERT INTO audit(at, event, \"user\", path, size, detail)"
                " VALUES($1, $2, $3, $4, $5, $6)",
    [P_SET_QUOTA] = "INSERT INTO quotas(\"user\", quota) VALUES($1, $2)"
                    " ON CONFLICT(\"user\") DO UPDATE SET quota = excluded.quota",
    [P_CLEAR_QUOTA] = "DELETE FROM quotas WHERE \"user\" = $1",
    /* the row, its bytes from the user's stored sum, an audit row: one statement */
    [P_DELETE_FILE] = "WITH d AS (DELETE FROM files WHERE path = $1 RETURNING \"user\", size),"
                      " u AS (UPDATE usage SET stored = usage.stored - d.size FROM d"
                      " WHERE usage.\"user\" = d.\"user\")"
                      " INSERT INTO audit(at, event, \"user\", path, size, detail)"
                      " SELECT $2, 'delete', d.\"user\", $1, d.size, $3 FROM d",
    [P_LIST_USER] = "SELECT " HU__LEDGER_FILE_COLS " FROM files WHERE \"user\" = $1"
                    " ORDER BY created, path",
    [P_LIST_ALL] = "SELECT " HU__LEDGER_FILE_COLS " FROM files ORDER BY created, path",
    [P_EXPIRED] = "SELECT " HU__LEDGER_FILE_COLS " FROM files WHERE expires > 0 AND expires <= $1",
    [P_GET_FILE] = "SELECT " HU__LEDGER_FILE_COLS " FROM files WHERE path = $1",
    [P_AUDIT_USER] = "SELECT id, at, event, \"user\", path, size, detail FROM audit"
                     " WHERE \"user\" = $1 ORDER BY id DESC LIMIT $2",
    [P_AUDIT_ALL] = "SELECT id, at, event, \"user\", path, size, detail FROM audit"
                    " ORDER BY id DESC LIMIT $1",
    /* reservations whose token expired, and their counted bytes from each user's held sum */
    [P_PURGE] = "WITH d AS (DELETE FROM reservations WHERE expires <= $1"
                " RETURNING \"user\", size, counted),"
                " s AS (SELECT \"user\", SUM(size) AS n FROM d WHERE counted = 1 GROUP BY \"user\"),"
                " u AS (UPDATE usage SET held = usage.held - s.n FROM s"
                " WHERE usage.\"user\" = s.\"user\")"
                " SELECT COUNT(*) FROM d",
    [P_FILE_EXISTS] = "SELECT 1 FROM files WHERE path = $1",
    [P_FIND_RES] = "SELECT held_until, keep, expire_before, counted FROM reservations"
                   " WHERE path = $1 AND \"user\" = $2 AND size = $3 AND expires > $4",
    [P_HOLD_RES] = "UPDATE reservations SET held_until = $2, expires = GREATEST(expires, $2),"
                   " counted = 1 WHERE path = $1",
};

typedef struct {
    hu_ledger base;
    PGconn *conn;
    int ready;          /* this connection's session is set up, its statements prepared */
    int sweep_locked;   /* this session holds the sweep advisory lock */
    uint64_t last_try;  /* when the last reconnection was attempted (ms, monotonic) */
    unsigned seed;      /* for the retry back-off */
} pg_ledger;

/* Up to 16 parameters in text form, integers formatted in place. */
typedef struct {
    const char *v[16];
    char num[16][24];
    int n;
} args;

static void a_text(args *a, const char *s) { a->v[a->n++] = s; }

static void a_int(args *a, int64_t x) {
    snprintf(a->num[a->n], sizeof a->num[a->n], "%lld", (long long)x);
    a->v[a->n] = a->num[a->n];
    a->n++;
}

/* x, or NULL when it is not known. */
static void a_int_or_null(args *a, int64_t x, int known) {
    if (known)
        a_int(a, x);
    else
        a->v[a->n++] = NULL;
}

/* true or false, or NULL when it is not known. */
static void a_bool_or_null(args *a, int b, int known) {
    a->v[a->n++] = !known ? NULL : b ? "true" : "false";
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void set_msg(pg_ledger *l, const char *msg) {
    snprintf(l->base.errmsg, sizeof l->base.errmsg, "%s", msg && *msg ? msg : "PostgreSQL error");
    size_t n = strlen(l->base.errmsg);
    while (n > 0 && (l->base.errmsg[n - 1] == '\n' || l->base.errmsg[n - 1] == ' '))
        l->base.errmsg[--n] = '\0';
}

/* A failed result (or none) as a negative errno; the message goes to errmsg. */
static int fail(pg_ledger *l, const PGresult *res) {
    set_msg(l, res ? PQresultErrorMessage(res) : PQerrorMessage(l->conn));
    if (PQstatus(l->conn) != CONNECTION_OK)
        return -ENOTCONN;
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (st == NULL)
        return -EIO;
    if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)
        return RETRY; /* serialization failure, deadlock */
    if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0)
        return -ENOTCONN; /* connection exceptions, server shutting down */
    if (strcmp(st, "53100") == 0)
        return -ENOSPC; /* disk full */
    if (strcmp(st, "57014") == 0 || strcmp(st, "55P03") == 0 || strncmp(st, "53", 2) == 0)
        return -EAGAIN; /* statement or lock timeout; out of memory or connections */
    if (strcmp(st, "23505") == 0)
        return -EEXIST;
    return -EIO;
}

/* Runs prepared statement `which`; *out gets its rows when asked for (PQclear it). */
static int exec(pg_ledger *l, int which, const args *a, PGresult **out) {
    char name[16];
    snprintf(name, sizeof name, "hu%d", which);
    PGresult *res = PQexecPrepared(l->conn, name, a->n, a->v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = fail(l, res);
        PQclear(res);
        return rc;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return 0;
}

/* Rows a statement wrote (INSERT / UPDATE / DELETE). */
static int exec_count(pg_ledger *l, int which, const args *a) {
    PGresult *res;
    int rc = exec(l, which, a, &res);
    if (rc < 0)
        return rc;
    rc = atoi(PQcmdTuples(res));
    PQclear(res);
    return rc;
}

static int simple(pg_ledger *l, const char *q) {
    PGresult *res = PQexec(l->conn, q);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : fail(l, res);
    PQclear(res);
    return rc;
}

static int64_t get_i64(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *get_text(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* A boolean column: 1 for true, 0 for false or NULL. */
static int get_bool(const PGresult *r, int row, int col) {
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

/* A width or height: NULL (unknown) and anything out of range read as 0. */
static uint32_t get_u32(const PGresult *r, int row, int col) {
    int64_t v = get_i64(r, row, col);
    return v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

static void quiet(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

/* A new session: short timeouts unless the server or the URL chose its own, then every
 * statement prepared once. */
static int set_up(pg_ledger *l) {
    PQsetNoticeProcessor(l->conn, quiet, NULL);
    int rc = simple(l, "SELECT set_config('statement_timeout', '10s', false)"
                       " WHERE current_setting('statement_timeout') = '0';"
                       " SELECT set_config('lock_timeout', '5s', false)"
                       " WHERE current_setting('lock_timeout') = '0'");
    for (int i = 0; rc == 0 && i < P_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof name, "hu%d", i);
        PGresult *res = PQprepare(l->conn, name, sql[i], 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = fail(l, res);
        PQclear(res);
    }
    l->ready = rc == 0;
    return rc;
}

/* A usable session: the one we have, or a reset one (at most one attempt a second; in
 * between, -ENOTCONN at once). A reset session has lost its prepared statements and its
 * advisory lock. */
static int connected(pg_ledger *l) {
    if (PQstatus(l->conn) == CONNECTION_OK)
        return l->ready ? 0 : set_up(l);
    l->ready = 0;
    l->sweep_locked = 0;
    uint64_t now = now_ms();
    if (l->last_try != 0 && now - l->last_try < RECONNECT_MS) {
        if (l->base.errmsg[0] == '\0')
            set_msg(l, "PostgreSQL unreachable");
        return -ENOTCONN;
    }
    l->last_try = now;
    PQreset(l->conn);
    if (PQstatus(l->conn) != CONNECTION_OK) {
        set_msg(l, PQerrorMessage(l->conn));
        return -ENOTCONN;
    }
    return set_up(l);
}

typedef int (*pg_body)(pg_ledger *l, void *ctx);
/* After a COMMIT whose outcome had to be looked up, on the new connection: whether the rows
 * agree with it (applied 1: the transaction took effect, 0: it did not); 0, or a negative
 * errno that fails the operation. */
typedef int (*pg_check)(pg_ledger *l, void *ctx, int applied);

/* BEGIN, and the transaction's id (txid_current: what txid_status asks about), in one round
 * trip. */
static int begin(pg_ledger *l, int64_t *xid) {
    PGresult *res = PQexec(l->conn, "BEGIN; SELECT txid_current()");
    int rc = PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : fail(l, res);
    if (rc == 0)
        *xid = get_i64(res, 0, 0);
    PQclear(res);
    return rc;
}

/* Whether transaction xid took effect, its connection having broken during its COMMIT: 1
 * committed, 0 rolled back, -ENOTCONN when that cannot be told. Asked at once on a new
 * connection (the 1/s throttle would only leave it unknown; no connection, and it stays
 * unknown). The old session may still be alive, the server not having seen the break: still
 * idle in the transaction (the COMMIT never reached it), or inside its COMMIT. Reading the
 * rows then would see nothing yet and take a transaction that commits a moment later for one
 * that never will; so the backend still running xid is ended first (pg_terminate_backend:
 * idle in the transaction, it rolls back; inside COMMIT, it finishes it first), and
 * txid_status asked until xid is no longer in progress (RESOLVE_MS at most). */
static int outcome(pg_ledger *l, int64_t xid) {
    l->last_try = 0;
    if (connected(l) < 0)
        return -ENOTCONN;
    char x[24];
    snprintf(x, sizeof x, "%lld", (long long)xid);
    const char *v[1] = {x};
    /* backend_xid is the 32-bit xid; txid_current's value carries an epoch above it */
    PGresult *res = PQexecParams(l->conn,
                                 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                 " WHERE pid <> pg_backend_pid()"
                                 " AND backend_xid::text = ($1::bigint % 4294967296)::text",
                                 1, NULL, v, NULL, NULL, 0);
    PQclear(res); /* not allowed to (another role): then only waiting tells */
    for (uint64_t t0 = now_ms();; usleep(20000)) {
        res = PQexecParams(l->conn, "SELECT txid_status($1)", 1, NULL, v, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fail(l, res);
            PQclear(res);
            return -ENOTCONN;
        }
        const char *st = get_text(res, 0, 0);
        int rc = st == NULL ? -ENOTCONN /* too old to tell: not after a few seconds */
                 : strcmp(st, "committed") == 0 ? 1
                 : strcmp(st, "aborted") == 0   ? 0
                                                : -EINPROGRESS;
        PQclear(res);
        if (rc != -EINPROGRESS)
            return rc;
        if (now_ms() - t0 >= RESOLVE_MS) {
            set_msg(l, "COMMIT outcome unknown: the transaction is still in progress");
            return -ENOTCONN;
        }
    }
}

/* The connection broke during the COMMIT of transaction xid, whose body returned rc. Its
 * outcome looked up (outcome()) and the rows checked against it (check): committed, rc as if
 * the COMMIT had answered; rolled back, -ENOTCONN with *unknown clear (nothing of it was
 * applied: run_op may run it again); not known, -ENOTCONN with *unknown set (it may have been
 * applied: never run again). */
static int resolve(pg_ledger *l, pg_check check, void *ctx, int64_t xid, int rc, int *unknown) {
    char broke[sizeof l->base.errmsg];
    snprintf(broke, sizeof broke, "%s", l->base.errmsg);
    int applied = outcome(l, xid);
    int crc = applied < 0 ? applied : check ? check(l, ctx, applied) : 0;
    *unknown = crc == -ENOTCONN;
    if (crc < 0) {
        if (crc == -ENOTCONN)
            snprintf(l->base.errmsg, sizeof l->base.errmsg, "%s", broke);
        return crc;
    }
    if (applied)
        return rc;
    snprintf(l->base.errmsg, sizeof l->base.errmsg, "%s", broke);
    return -ENOTCONN;
}

/* One try of body, in a transaction when tx: committed when it succeeded or was refused over
 * quota (the refusal's audit row stays), rolled back otherwise. A COMMIT whose connection
 * broke is looked up (resolve()). *was_up: the session was usable when it began; *unknown:
 * whether the transaction took effect is not known. */
static int attempt(pg_ledger *l, pg_body body, pg_check check, void *ctx, int tx, int *was_up,
                   int *unknown) {
    int64_t xid = 0;
    int rc = connected(l);
    *was_up = rc == 0;
    if (rc < 0)
        return rc;
    if (!tx)
        return body(l, ctx);
    if ((rc = begin(l, &xid)) == 0)
        rc = body(l, ctx);
    if (rc == 0 || rc == -EDQUOT) {
        int crc = simple(l, "COMMIT");
        if (crc == 0)
            return rc;
        if (crc == -ENOTCONN)
            return resolve(l, check, ctx, xid, rc, unknown);
        rc = crc;
    }
    if (PQstatus(l->conn) == CONNECTION_OK && PQtransactionStatus(l->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(l->conn, "ROLLBACK");
        PQclear(res);
    }
    return rc;
}

/* body until it is done: again after a deadlock or serialization failure (with a random
 * back-off), and once more when the connection broke before anything was committed (or
 * during a COMMIT that turned out not to have taken effect). */
static int run_op(pg_ledger *l, pg_body body, pg_check check, void *ctx, int tx) {
    int reconnected = 0;
    for (int i = 0;; i++) {
        int was_up = 0, unknown = 0;
        int rc = attempt(l, body, check, ctx, tx, &was_up, &unknown);
        if (rc == RETRY && i < MAX_RETRIES) {
            l->seed = l->seed * 1103515245u + 12345u;
            usleep(100 + (l->seed >> 8) % (200u * (unsigned)(i + 1)));
            continue;
        }
        if (rc == -ENOTCONN && was_up && !unknown && !reconnected) {
            reconnected = 1;
            l->last_try = 0; /* it was up a moment ago: try a new connection at once */
            continue;
        }
        if (rc == RETRY)
            return -EAGAIN;
        if (rc == 0 || rc == -EDQUOT)
            l->base.errmsg[0] = '\0';
        return rc;
    }
}

/* ---- schema ---------------------------------------------------------------------------- */

/* Under a transaction-scoped advisory lock, so two processes opening a new ledger at once
 * do not both create it. Tables live in the session's current schema (search_path). */
static int migrate(pg_ledger *l) {
    int rc = simple(l, "BEGIN");
    if (rc < 0)
        return rc;
    rc = simple(l, "SELECT pg_advisory_xact_lock(hashtext('hmac_upload_schema:' || current_schema()))");
    PGresult *res = NULL;
    if (rc == 0) {
        res = PQexec(l->conn, "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname ="
                              " current_schema() AND tablename = 'schema_version')");
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = fail(l, res);
    }
    int64_t version = 0;
    if (rc == 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
        PQclear(res);
        res = PQexec(l->conn, "SELECT MAX(version) FROM schema_version");
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = fail(l, res);
        else
            version = get_i64(res, 0, 0);
    }
    PQclear(res);
    if (rc == 0 && version > SCHEMA_VERSION) {
        snprintf(l->base.errmsg, sizeof l->base.errmsg,
                 "ledger schema version %lld is newer than %d", (long long)version, SCHEMA_VERSION);
        rc = -EPROTO;
    }
    if (rc == 0 && version < 3)
        rc = simple(l, schema_v3);
    if (rc == 0 && version < 4)
        rc = simple(l, schema_v4);
    if (rc == 0)
        rc = simple(l, "COMMIT");
    if (rc < 0 && PQstatus(l->conn) == CONNECTION_OK) {
        PGresult *rb = PQexec(l->conn, "ROLLBACK");
        PQclear(rb);
    }
    return rc;
}

static const hu_ledger_ops pg_ops;

int hu__ledger_pg_open(const char *conninfo, hu_ledger **out) {
    *out = NULL;
    pg_ledger *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    l->base.ops = &pg_ops;
    l->seed = (unsigned)getpid() ^ (unsigned)now_ms();
    *out = &l->base;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (opts == NULL) {
        set_msg(l, perr ? perr : "out of memory");
        PQfreemem(perr);
        return perr ? -EINVAL : -ENOMEM;
    }
    PQconninfoFree(opts);
    /* defaults first: what the URL says (expanded from dbname) overrides them */
    const char *keys[] = {"connect_timeout", "application_name", "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                          "dbname", NULL};
    const char *vals[] = {"5", "hmac-upload", "10", "3", "3", "10000", conninfo, NULL};
    l->conn = PQconnectdbParams(keys, vals, 1);
    if (l->conn == NULL)
        return -ENOMEM;
    l->last_try = now_ms();
    if (PQstatus(l->conn) != CONNECTION_OK) {
        set_msg(l, PQerrorMessage(l->conn));
        return -ENOTCONN;
    }
    PQsetNoticeProcessor(l->conn, quiet, NULL);
    int rc = migrate(l);
    if (rc == 0)
        rc = set_up(l);
    if (rc == 0)
        l->base.errmsg[0] = '\0';
    return rc;
}

static void pg_close(hu_ledger *hl) {
    pg_ledger *l = (pg_ledger *)hl;
    if (l->conn)
        PQfinish(l->conn); /* the session's advisory lock goes with it */
    free(l);
}

/* ---- quota arithmetic (inside a transaction) ------------------------------------------- */

/* Locks user's usage row (made if missing): what it stores and holds, and its quota. */
static int lock_user(pg_ledger *l, const char *user, uint64_t default_quota, uint64_t *quota) {
    args a = {0};
    a_text(&a, user);
    for (int pass = 0; pass < 2; pass++) {
        PGresult *res;
        int rc = exec(l, P_LOCK_USER, &a, &res);
        if (rc < 0)
            return rc;
        int found = PQntuples(res) == 1;
        if (found)
            *quota = PQgetisnull(res, 0, 2) ? default_quota : (uint64_t)get_i64(res, 0, 2);
        PQclear(res);
        if (found)
            return 0;
        if ((rc = exec(l, P_NEW_USER, &a, NULL)) < 0)
            return rc;
    }
    set_msg(l, "usage row missing");
    return -EIO;
}

/* Holds of user that lapsed by now stop counting (once each); the sums after that. */
static int settle_lapsed(pg_ledger *l, const char *user, int64_t now, int64_t *stored,
                         int64_t *held) {
    args a = {0};
    a_text(&a, user);
    a_int(&a, now);
    PGresult *res;
    int rc = exec(l, P_SETTLE, &a, &res);
    if (rc < 0)
        return rc;
    *stored = PQntuples(res) ? get_i64(res, 0, 0) : 0;
    *held = PQntuples(res) ? get_i64(res, 0, 1) : 0;
    PQclear(res);
    return 0;
}

static int retry_at(pg_ledger *l, const char *user, int64_t now, int64_t *at) {
    args a = {0};
    a_text(&a, user);
    a_int(&a, now);
    PGresult *res;
    int rc = exec(l, P_RETRY_AT, &a, &res);
    if (rc < 0)
        return rc;
    *at = get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

static int audit(pg_ledger *l, int64_t now, const char *event, const char *user,
                 const char *path, uint64_t size, const char *detail) {
    args a = {0};
    a_int(&a, now);
    a_text(&a, event);
    a_text(&a, user);
    a_text(&a, path);
    a_int(&a, (int64_t)size);
    a_text(&a, detail);
    return exec(l, P_AUDIT, &a, NULL);
}

static int add_usage(pg_ledger *l, const char *user, int64_t stored, int64_t held) {
    if (user == NULL || (stored == 0 && held == 0))
        return 0;
    args a = {0};
    a_text(&a, user);
    a_int(&a, stored);
    a_int(&a, held);
    return exec(l, P_ADD_USAGE, &a, NULL);
}

/* Requires used + held + size <= quota, user's row locked. Over it: a "refused" audit row,
 * *retry_at, -EDQUOT (the transaction is committed by the caller). */
static int fits_in_tx(pg_ledger *l, const char *path, const char *user, uint64_t size,
                      int64_t now, uint64_t default_quota, int64_t *retry) {
    uint64_t quota = default_quota;
    int64_t stored = 0, held = 0;
    int rc = lock_user(l, user, default_quota, &quota);
    if (rc < 0)
        return rc;
    if (quota == 0) /* unlimited: nothing to add up */
        return 0;
    if ((rc = settle_lapsed(l, user, now, &stored, &held)) < 0)
        return rc;
    uint64_t used = stored > 0 ? (uint64_t)stored : 0, reserved = held > 0 ? (uint64_t)held : 0;
    char detail[96];
    if (hu__ledger_over_quota(used, reserved, size, quota, detail, sizeof detail)) {
        if ((rc = retry_at(l, user, now, retry)) < 0 ||
            (rc = audit(l, now, "refused", user, path, size, detail)) < 0)
            return rc;
        return -EDQUOT;
    }
    return 0;
}

/* The quota check, then the reservation (counted while held) and an audit row (event). */
static int reserve_in_tx(pg_ledger *l, const hu_reservation *r, int64_t now,
                         uint64_t default_quota, const char *event, int64_t *retry) {
    int rc = fits_in_tx(l, r->path, r->user, r->size, now, default_quota, retry);
    if (rc < 0)
        return rc;
    args a = {0};
    a_text(&a, r->path);
    a_text(&a, r->user);
    a_int(&a, (int64_t)r->size);
    a_int(&a, r->expires);
    a_int(&a, r->held_until);
    a_int(&a, r->retention.keep);
    a_int(&a, r->retention.expire_before);
    a_int(&a, r->held_until > now);
    a_int(&a, now);
    a_text(&a, event);
    rc = exec_count(l, P_INSERT_RES, &a);
    return rc < 0 ? rc : rc == 0 ? -EEXIST : 0;
}

typedef struct {
    const hu_reservation **order; /* the grants, by user */
    size_t n;
    int64_t now;
    uint64_t default_quota;
    int *results;         /* by the grants' own order: */
    int64_t *retry_at;
    const hu_reservation *first;
} reserve_ctx;

static int reserve_body(pg_ledger *l, void *ctx) {
    reserve_ctx *c = ctx;
    for (size_t i = 0; i < c->n; i++) {
        size_t k = (size_t)(c->order[i] - c->first);
        c->retry_at[k] = 0;
        int rc = reserve_in_tx(l, c->order[i], c->now, c->default_quota, "grant", &c->retry_at[k]);
        if (rc < 0 && rc != -EDQUOT && rc != -EEXIST)
            return rc;
        c->results[k] = rc;
    }
    return 0;
}

static int by_user(const void *a, const void *b) {
    return strcmp((*(const hu_reservation *const *)a)->user,
                  (*(const hu_reservation *const *)b)->user);
}

static int pg_reserve(hu_ledger *hl, const hu_reservation *r, size_t n, int64_t now,
                      uint64_t default_quota, int *results, int64_t *retry) {
    /* Each grant locks its user's usage row first: taken in user order, two nodes' groups
     * never wait for each other in a cycle. */
    const hu_reservation **order = malloc(n * sizeof *order);
    if (order == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        order[i] = &r[i];
    qsort(order, n, sizeof *order, by_user);
    reserve_ctx c = {order, n, now, default_quota, results, retry, r};
    /* A COMMIT whose connection broke and whose outcome could not be looked up fails the
     * grants (-ENOTCONN, a wait error for the clients) even though their reservations may
     * stand: acceptable, as their bytes stop counting at held_until (reservation_time, short)
     * and the rows go when their tokens expire; nobody holds those tokens. */
    int rc = run_op((pg_ledger *)hl, reserve_body, NULL, &c, 1);
    free(order);
    return rc;
}

/* The reservation of path, and its bytes from its user's held sum if they were counted. */
static int drop_reservation(pg_ledger *l, const char *path) {
    args a = {0};
    a_text(&a, path);
    return exec(l, P_DELETE_RES, &a, NULL);
}

/* Inside a transaction: one claim (hu_ledger_claim); 0, -EDQUOT, or an error. Without hold
 * (the claim of a completion, whose row follows in the same transaction and drops the
 * reservation) only the quota decides and the audit says so: the reservation is neither held
 * nor made, since it would be gone again at once. */
static int claim_in_tx(pg_ledger *l, const char *path, const char *user, uint64_t size,
                       int64_t until, int64_t now, uint64_t default_quota, int hold,
                       hu_retention *retention) {
    uint64_t quota;
    int64_t retry, stored, held;
    *retention = HU_RETENTION_DEFAULT;
    /* the user's row first, as a grant takes it: grants and claims of a user queue there */
    int rc = lock_user(l, user, default_quota, &quota);
    if (rc < 0)
        return rc;
    args a = {0};
    a_text(&a, path);
    a_text(&a, user);
    a_int(&a, (int64_t)size);
    a_int(&a, now);
    PGresult *res;
    if ((rc = exec(l, P_FIND_RES, &a, &res)) < 0)
        return rc;
    int found = PQntuples(res) == 1;
    int64_t held_until = 0;
    int counted = 0;
    if (found) {
        held_until = get_i64(res, 0, 0);
        retention->keep = get_i64(res, 0, 1);
        retention->expire_before = get_i64(res, 0, 2);
        counted = (int)get_i64(res, 0, 3);
    }
    PQclear(res);
    if (!found) {
        /* never made here, or made for something else: as a grant would */
        *retention = HU_RETENTION_DEFAULT;
        if ((rc = drop_reservation(l, path)) < 0)
            return rc;
        if (!hold)
            return (rc = fits_in_tx(l, path, user, size, now, default_quota, &retry)) < 0
                       ? rc
                       : audit(l, now, "reserve at upload", user, path, size, NULL);
        hu_reservation r = {path, user, size, until, until, HU_RETENTION_DEFAULT};
        return reserve_in_tx(l, &r, now, default_quota, "reserve at upload", &retry);
    }
    /* a hold that lapsed counts no more: the quota decides again */
    if (held_until <= now) {
        if ((rc = fits_in_tx(l, path, user, size, now, default_quota, &retry)) < 0 ||
            (rc = audit(l, now, "reserve at upload", user, path, size,
                        "after its hold lapsed")) < 0)
            return rc;
        /* settled by the quota check (or never counted, under no quota) */
        if (counted && (rc = settle_lapsed(l, user, now, &stored, &held)) < 0)
            return rc;
        counted = 0;
    }
    if (!hold)
        return 0;
    args h = {0};
    a_text(&h, path);
    a_int(&h, until);
    if ((rc = exec(l, P_HOLD_RES, &h, NULL)) < 0)
        return rc;
    return counted ? 0 : add_usage(l, user, 0, (int64_t)size);
}

typedef struct {
    const char *path, *user;
    uint64_t size;
    int64_t until, now;
    uint64_t default_quota;
    hu_retention *retention;
} claim_ctx;

static int claim_body(pg_ledger *l, void *ctx) {
    claim_ctx *c = ctx;
    return claim_in_tx(l, c->path, c->user, c->size, c->until, c->now, c->default_quota, 1,
                       c->retention);
}

static int pg_claim(hu_ledger *hl, const char *path, const char *user, uint64_t size,
                    int64_t until, int64_t now, uint64_t default_quota, hu_retention *retention) {
    claim_ctx c = {path, user, size, until, now, default_quota, retention};
    /* Outcome not known (see pg_reserve): the upload fails with a 503 although the hold may
     * stand. The client's retry claims the same reservation again (held and counted already:
     * nothing counted twice); if it never comes, the bytes stay held until the token expires,
     * when the reservation is purged. */
    return run_op((pg_ledger *)hl, claim_body, NULL, &c, 1);
}

static int release_body(pg_ledger *l, void *ctx) { return drop_reservation(l, ctx); }

static int pg_release(hu_ledger *hl, const char *path) {
    return run_op((pg_ledger *)hl, release_body, NULL, (void *)path, 1);
}

/* ---- completions ----------------------------------------------------------------------- */

/* One completion, one statement: a path already recorded fails alone (-EEXIST) and changes
 * nothing. */
static int record_in_tx(pg_ledger *l, const hu_stored_file *f) {
    if (f->size > INT64_MAX)
        return -EINVAL;
    char detail[96];
    snprintf(detail, sizeof detail, "scheme=%s%s sha256=%.16s", f->scheme ? f->scheme : "?",
             f->user ? "" : " (legacy token, no user)", f->sha256_hex ? f->sha256_hex : "-");
    args a = {0};
    a_text(&a, f->path);
    a_text(&a, f->user);
    a_int(&a, (int64_t)f->size);
    a_text(&a, f->content_type);
    a_text(&a, f->sha256_hex);
    a_int(&a, f->created);
    a_int(&a, f->expires);
    a_text(&a, f->source_ip);
    a_text(&a, f->scheme);
    a_text(&a, f->media_type);
    a_bool_or_null(&a, f->type_ok, f->media_type && f->type_ok >= 0);
    a_int_or_null(&a, f->width, f->width > 0);
    a_int_or_null(&a, f->height, f->height > 0);
    a_text(&a, f->blurhash);
    a_bool_or_null(&a, f->thumbnail, 1);
    a_text(&a, detail);
    PGresult *res;
    int rc = exec(l, P_INSERT_FILE, &a, &res);
    if (rc < 0)
        return rc;
    rc = get_i64(res, 0, 0) == 1 ? 0 : -EEXIST;
    PQclear(res);
    return rc;
}

typedef struct {
    hu_completion *c;
    size_t n;
    int64_t now;
} commit_ctx;

/* Inside a transaction: one completion, its claim first when it has one. A completion
 * refused alone changes nothing but what hu_completion says stays. */
static int complete_in_tx(pg_ledger *l, hu_completion *c, int64_t now) {
    const hu_stored_file *f = &c->file;
    if (c->claim) {
        if (f->size > INT64_MAX || f->user == NULL)
            return -EINVAL;
        args a = {0};
        a_text(&a, f->path);
        PGresult *res;
        int rc = exec(l, P_FILE_EXISTS, &a, &res);
        if (rc < 0)
            return rc;
        int exists = PQntuples(res) > 0;
        PQclear(res);
        if (exists)
            return -EEXIST;
        hu_retention found;
        if ((rc = claim_in_tx(l, f->path, f->user, f->size, c->claim_until, now,
                              c->default_quota, 0, &found)) < 0)
            return rc;
        if (found.keep != c->retention.keep || found.expire_before != c->retention.expire_before)
            return -ESTALE;
    }
    return record_in_tx(l, f);
}

static int commit_body(pg_ledger *l, void *ctx) {
    commit_ctx *b = ctx;
    for (size_t i = 0; i < b->n; i++) {
        int rc = complete_in_tx(l, &b->c[i], b->now);
        /* a completion's own refusal leaves the others; anything else fails the batch */
        if (rc < 0 && !hu__ledger_own_failure(rc))
            return rc;
        b->c[i].result = rc;
    }
    return 0;
}

static int same(const char *a, const char *b) {
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* A batch whose COMMIT was looked up: it is atomic, so either every completion that succeeded
 * in it has its row, with its user and sha256 (applied), or none has a row at all (not
 * applied). Anything else (a row with another user or sha256, some rows and not others) fails
 * the batch: its uploads are not acknowledged, and the rows are for the start-up
 * reconciliation to judge. */
static int commit_check(pg_ledger *l, void *ctx, int applied) {
    commit_ctx *b = ctx;
    for (size_t i = 0; i < b->n; i++) {
        if (b->c[i].result != 0)
            continue; /* refused inside the batch: no row of it was to be written */
        const hu_stored_file *f = &b->c[i].file;
        args a = {0};
        a_text(&a, f->path);
        PGresult *res;
        int rc = exec(l, P_GET_FILE, &a, &res);
        if (rc < 0)
            return rc == RETRY ? -EAGAIN : rc;
        int present = PQntuples(res) == 1;
        int ours = present && same(get_text(res, 0, HU__FC_USER), f->user) &&
                   same(get_text(res, 0, HU__FC_SHA256), f->sha256_hex);
        PQclear(res);
        if (applied ? !ours : present) {
            snprintf(l->base.errmsg, sizeof l->base.errmsg,
                     "COMMIT outcome looked up (%s), but the row of %.120s %s",
                     applied ? "committed" : "rolled back", f->path,
                     !present ? "is missing"
                     : ours   ? "is there"
                              : "is another upload's");
            return -EIO;
        }
    }
    return 0;
}

/* A COMMIT whose connection broke is looked up (outcome()): applied, the uploads are
 * acknowledged with the results they had; not applied, the batch runs once more on the new
 * connection (nothing of it was written, and its files are still published: answering 503
 * and unpublishing them would only make every client upload again). */
static int pg_complete(hu_ledger *hl, hu_completion *c, size_t n, int64_t now) {
    commit_ctx b = {c, n, now};
    return run_op((pg_ledger *)hl, commit_body, commit_check, &b, 1);
}

/* ---- single statements ----------------------------------------------------------------- */

typedef struct {
    int which;
    args a;
    int rows; /* rows written */
} stmt_ctx;

static int stmt_body(pg_ledger *l, void *ctx) {
    stmt_ctx *c = ctx;
    int rc = exec_count(l, c->which, &c->a);
    c->rows = rc;
    return rc < 0 ? rc : 0;
}

/* One statement on its own (atomic by itself); run again on a new connection when the old
 * one turned out to be broken. That break may have come after the statement took effect, and
 * running it again is harmless for each of them: a quota set or cleared again, expired
 * reservations purged again (none left); an audit row may be written twice; a file's delete
 * finds no row and says -ENOENT, the row gone either way. */
static int one(pg_ledger *l, stmt_ctx *c) { return run_op(l, stmt_body, NULL, c, 0); }

static int pg_set_quota(hu_ledger *hl, const char *user, uint64_t quota) {
    stmt_ctx c = {.which = P_SET_QUOTA};
    a_text(&c.a, user);
    a_int(&c.a, (int64_t)quota);
    return one((pg_ledger *)hl, &c);
}

static int pg_clear_quota(hu_ledger *hl, const char *user) {
    stmt_ctx c = {.which = P_CLEAR_QUOTA};
    a_text(&c.a, user);
    return one((pg_ledger *)hl, &c);
}

static int pg_audit(hu_ledger *hl, int64_t now, const char *event, const char *user,
                    const char *path, uint64_t size, const char *detail) {
    stmt_ctx c = {.which = P_AUDIT};
    a_int(&c.a, now);
    a_text(&c.a, event);
    a_text(&c.a, user);
    a_text(&c.a, path);
    a_int(&c.a, (int64_t)size);
    a_text(&c.a, detail);
    return one((pg_ledger *)hl, &c);
}

static int pg_delete_file(hu_ledger *hl, const char *path, const char *reason) {
    stmt_ctx c = {.which = P_DELETE_FILE};
    a_text(&c.a, path);
    a_int(&c.a, (int64_t)time(NULL));
    a_text(&c.a, reason);
    int rc = one((pg_ledger *)hl, &c);
    return rc < 0 ? rc : c.rows == 0 ? -ENOENT : 0;
}

/* ---- reads ----------------------------------------------------------------------------- */

typedef struct {
    int which;
    args a;
    PGresult *res;
} query_ctx;

static int query_body(pg_ledger *l, void *ctx) {
    query_ctx *c = ctx;
    return exec(l, c->which, &c->a, &c->res);
}

/* A read: the rows in *res (the caller clears it). */
static int query(pg_ledger *l, query_ctx *c) {
    c->res = NULL;
    return run_op(l, query_body, NULL, c, 0);
}

static int pg_usage(hu_ledger *hl, const char *user, int64_t now, uint64_t default_quota,
                    uint64_t *used, uint64_t *reserved, uint64_t *quota) {
    query_ctx c = {.which = P_USAGE_OF};
    a_text(&c.a, user);
    a_int(&c.a, now);
    int rc = query((pg_ledger *)hl, &c);
    if (rc < 0)
        return rc;
    int64_t stored = get_i64(c.res, 0, 0), held = get_i64(c.res, 0, 1),
            lapsed = get_i64(c.res, 0, 2);
    *used = stored > 0 ? (uint64_t)stored : 0;
    *reserved = held > lapsed ? (uint64_t)(held - lapsed) : 0;
    *quota = PQgetisnull(c.res, 0, 3) ? default_quota : (uint64_t)get_i64(c.res, 0, 3);
    PQclear(c.res);
    return 0;
}

/* One statement, atomic by itself (and harmless to run twice): how many reservations went. */
static int pg_purge_reservations(hu_ledger *hl, int64_t now) {
    query_ctx c = {.which = P_PURGE};
    a_int(&c.a, now);
    int rc = query((pg_ledger *)hl, &c);
    if (rc < 0)
        return rc;
    rc = (int)get_i64(c.res, 0, 0);
    PQclear(c.res);
    return rc;
}

static int pg_retry_at(hu_ledger *hl, const char *user, int64_t now, int64_t *at) {
    query_ctx c = {.which = P_RETRY_AT};
    a_text(&c.a, user);
    a_int(&c.a, now);
    int rc = query((pg_ledger *)hl, &c);
    if (rc < 0)
        return rc;
    *at = get_i64(c.res, 0, 0);
    PQclear(c.res);
    return 0;
}

static int pg_retention(hu_ledger *hl, const char *path, const char *user, uint64_t size,
                        int64_t now, hu_retention *out) {
    query_ctx c = {.which = P_FIND_RES};
    a_text(&c.a, path);
    a_text(&c.a, user);
    a_int(&c.a, (int64_t)size);
    a_int(&c.a, now);
    int rc = query((pg_ledger *)hl, &c);
    if (rc < 0)
        return rc;
    if (PQntuples(c.res) == 1) {
        out->keep = get_i64(c.res, 0, 1);
        out->expire_before = get_i64(c.res, 0, 2);
    }
    PQclear(c.res);
    return 0;
}

/* Calls cb for each file row; the number of rows in *n. */
static int each_file(pg_ledger *l, query_ctx *c, hu_ledger_file_cb cb, void *ctx, int *n) {
    int rc = query(l, c);
    *n = 0;
    if (rc < 0)
        return rc;
    int rows = PQntuples(c->res);
    for (int i = 0; i < rows; i++) {
        const PGresult *r = c->res;
        hu_stored_file f = {
            .path = get_text(r, i, HU__FC_PATH),
            .user = get_text(r, i, HU__FC_USER),
            .size = (uint64_t)get_i64(r, i, HU__FC_SIZE),
            .content_type = get_text(r, i, HU__FC_CONTENT_TYPE),
            .sha256_hex = get_text(r, i, HU__FC_SHA256),
            .created = get_i64(r, i, HU__FC_CREATED),
            .expires = get_i64(r, i, HU__FC_EXPIRES),
            .source_ip = get_text(r, i, HU__FC_SOURCE_IP),
            .scheme = get_text(r, i, HU__FC_SCHEME),
            .media_type = get_text(r, i, HU__FC_MEDIA_TYPE),
            .type_ok = PQgetisnull(r, i, HU__FC_TYPE_OK) ? -1 : get_bool(r, i, HU__FC_TYPE_OK),
            .width = get_u32(r, i, HU__FC_WIDTH),
            .height = get_u32(r, i, HU__FC_HEIGHT),
            .blurhash = get_text(r, i, HU__FC_BLURHASH),
            .thumbnail = get_bool(r, i, HU__FC_THUMBNAIL), /* NULL reads 0 */
        };
        (*n)++;
        if (cb(ctx, &f))
            break;
    }
    PQclear(c->res);
    return 0;
}

static int pg_list_files(hu_ledger *hl, const char *user, hu_ledger_file_cb cb, void *ctx) {
    query_ctx c = {.which = user ? P_LIST_USER : P_LIST_ALL};
    if (user)
        a_text(&c.a, user);
    int n;
    return each_file((pg_ledger *)hl, &c, cb, ctx, &n);
}

static int pg_expired_files(hu_ledger *hl, int64_t now, hu_ledger_file_cb cb, void *ctx) {
    query_ctx c = {.which = P_EXPIRED};
    a_int(&c.a, now);
    int n;
    return each_file((pg_ledger *)hl, &c, cb, ctx, &n);
}

static int pg_get_file(hu_ledger *hl, const char *path, hu_ledger_file_cb cb, void *ctx) {
    query_ctx c = {.which = P_GET_FILE};
    a_text(&c.a, path);
    int n, rc = each_file((pg_ledger *)hl, &c, cb, ctx, &n);
    return rc < 0 ? rc : n == 0 ? -ENOENT : 0;
}

static int pg_audit_recent(hu_ledger *hl, const char *user, unsigned limit, hu_ledger_audit_cb cb,
                           void *ctx) {
    query_ctx c = {.which = user ? P_AUDIT_USER : P_AUDIT_ALL};
    if (user)
        a_text(&c.a, user);
    a_int(&c.a, limit);
    int rc = query((pg_ledger *)hl, &c);
    if (rc < 0)
        return rc;
    int rows = PQntuples(c.res);
    for (int i = 0; i < rows; i++) {
        hu_audit_entry e = {
            .id = get_i64(c.res, i, 0),
            .at = get_i64(c.res, i, 1),
            .event = get_text(c.res, i, 2),
            .user = get_text(c.res, i, 3),
            .path = get_text(c.res, i, 4),
            .size = (uint64_t)get_i64(c.res, i, 5),
            .detail = get_text(c.res, i, 6),
        };
        if (cb(ctx, &e))
            break;
    }
    PQclear(c.res);
    return 0;
}

/* ---- the sweep lock -------------------------------------------------------------------- */

#define SWEEP_KEY "hashtext('hmac_upload_sweep:' || current_schema())"

static int pg_try_sweep_lock(hu_ledger *hl) {
    pg_ledger *l = (pg_ledger *)hl;
    int rc = connected(l);
    if (rc < 0)
        return rc;
    if (l->sweep_locked)
        return 1;
    PGresult *res = PQexec(l->conn, "SELECT pg_try_advisory_lock(" SWEEP_KEY ")");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = fail(l, res);
    else
        rc = l->sweep_locked = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return rc == RETRY ? -EAGAIN : rc;
}

static void pg_sweep_unlock(hu_ledger *hl) {
    pg_ledger *l = (pg_ledger *)hl;
    if (!l->sweep_locked || PQstatus(l->conn) != CONNECTION_OK)
        return;
    PGresult *res = PQexec(l->conn, "SELECT pg_advisory_unlock(" SWEEP_KEY ")");
    PQclear(res);
    l->sweep_locked = 0;
}

static const hu_ledger_ops pg_ops = {
    .close = pg_close,
    .reserve = pg_reserve,
    .complete = pg_complete,
    .retention = pg_retention,
    .usage = pg_usage,
    .set_quota = pg_set_quota,
    .clear_quota = pg_clear_quota,
    .delete_file = pg_delete_file,
    .audit = pg_audit,
    .retry_at = pg_retry_at,
    .claim = pg_claim,
    .release = pg_release,
    .list_files = pg_list_files,
    .expired_files = pg_expired_files,
    .get_file = pg_get_file,
    .audit_recent = pg_audit_recent,
    .purge_reservations = pg_purge_reservations,
    .try_sweep_lock = pg_try_sweep_lock,
    .sweep_unlock = pg_sweep_unlock,
};
