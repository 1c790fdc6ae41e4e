/* The ledger: schema, quota arithmetic, reservations, completions, audit, and 50 processes
 * racing for one user's last bytes. Against SQLite (a file in a temporary directory per
 * test), or with HU_TEST_LEDGER_URL set (postgresql://...) against PostgreSQL: each test in
 * a fresh schema of that database, named in the ledger's URL (options=-csearch_path=...). */
#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "check.h"
#include "ledger.h"
#include "retention.h"

static const char *pg_url; /* HU_TEST_LEDGER_URL: PostgreSQL; NULL: SQLite */
static char dir[64], schema[64], db[1024];
static PGconn *raw_pg; /* the test's own connection into the current schema */

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Runs SQL on the test's own connection (made on first use): 0 or -1 (the error printed). */
static int pg_sql(const char *sql)
{
    if (raw_pg == NULL) {
        raw_pg = PQconnectdb(db);
        if (PQstatus(raw_pg) != CONNECTION_OK) {
            fprintf(stderr, "%s", PQerrorMessage(raw_pg));
            PQfinish(raw_pg);
            raw_pg = NULL;
            return -1;
        }
        PQsetNoticeProcessor(raw_pg, quiet_notice, NULL);
    }
    PGresult *r = PQexec(raw_pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

/* A new, empty ledger location in db: a temporary directory, or a new schema. */
static int new_location(void)
{
    static int serial;
    if (pg_url == NULL) {
        snprintf(dir, sizeof dir, "/tmp/hu-ledger-XXXXXX");
        if (!mkdtemp(dir)) return -1;
        snprintf(db, sizeof db, "%s/ledger.sqlite3", dir);
        return 0;
    }
    snprintf(schema, sizeof schema, "hu_test_%d_%d", (int)getpid(), serial++);
    snprintf(db, sizeof db, "%s", pg_url);
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", schema);
    if (pg_sql(sql) < 0) return -1;
    /* the same database, the tables in the new schema; the session named for it */
    snprintf(db, sizeof db, "%s%coptions=-csearch_path%%3D%s&application_name=%s", pg_url,
             strchr(pg_url, '?') ? '&' : '?', schema, schema);
    PQfinish(raw_pg);
    raw_pg = NULL;
    return 0;
}

static hu_ledger *fresh(void)
{
    if (new_location() < 0) return NULL;
    hu_ledger *l = NULL;
    if (hu_ledger_open(db, &l) < 0) {
        fprintf(stderr, "open %s: %s\n", db, hu_ledger_errmsg(l));
        hu_ledger_close(l);
        return NULL;
    }
    return l;
}

static void cleanup(hu_ledger *l)
{
    char cmd[200];
    hu_ledger_close(l);
    if (pg_url != NULL) {
        snprintf(cmd, sizeof cmd, "DROP SCHEMA %s CASCADE", schema);
        if (pg_sql(cmd) < 0) fprintf(stderr, "cleanup failed\n");
        PQfinish(raw_pg);
        raw_pg = NULL;
        return;
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

static int count_cb(void *ctx, const hu_stored_file *f)
{
    (void)f;
    (*(int *)ctx)++;
    return 0;
}

static int audit_cb(void *ctx, const hu_audit_entry *e)
{
    char *events = ctx;
    strcat(events, e->event);
    strcat(events, ",");
    return 0;
}

/* A reservation held (and alive) until `until`, with the default retention. */
static int reserve(hu_ledger *l, const char *path, const char *user, uint64_t size, int64_t until,
                   int64_t now, uint64_t quota, int64_t *retry)
{
    hu_reservation r = {path, user, size, until, until, HU_RETENTION_DEFAULT};
    return hu_ledger_reserve(l, &r, now, quota, retry);
}

static int claim(hu_ledger *l, const char *path, const char *user, uint64_t size, int64_t until,
                 int64_t now, uint64_t quota)
{
    hu_retention ret;
    return hu_ledger_claim(l, path, user, size, until, now, quota, &ret);
}

static hu_stored_file file(const char *path, const char *user, uint64_t size)
{
    hu_stored_file f = {.path = path, .user = user, .size = size, .content_type = "image/jpeg",
                        .sha256_hex = "ab12", .created = 1000, .source_ip = "127.0.0.1",
                        .scheme = "bearer", .type_ok = -1};
    return f;
}

/* A file row as a callback saw it, copied (its strings live during the call only). */
typedef struct {
    int n;
    char path[64], media_type[64], blurhash[168];
    int has_media_type, has_blurhash, type_ok, thumbnail;
    uint32_t width, height;
} seen_file;

static void copy_opt(char *dst, size_t cap, int *has, const char *src)
{
    *has = src != NULL;
    snprintf(dst, cap, "%s", src ? src : "");
}

static int seen_cb(void *ctx, const hu_stored_file *f)
{
    seen_file *s = ctx;
    s->n++;
    snprintf(s->path, sizeof s->path, "%s", f->path);
    copy_opt(s->media_type, sizeof s->media_type, &s->has_media_type, f->media_type);
    copy_opt(s->blurhash, sizeof s->blurhash, &s->has_blurhash, f->blurhash);
    s->type_ok = f->type_ok;
    s->width = f->width;
    s->height = f->height;
    s->thumbnail = f->thumbnail;
    return 0;
}

/* The first column of the first row of a query run straight on the database, as text ("NULL"
 * for NULL), in out; 0 or -1. */
static int raw_value(const char *sql, char *out, size_t cap)
{
    snprintf(out, cap, "(no row)");
    if (pg_url != NULL) {
        if (raw_pg == NULL && pg_sql("SELECT 1") < 0) return -1;
        PGresult *r = PQexec(raw_pg, sql);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok) fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
        if (ok && PQntuples(r) > 0)
            snprintf(out, cap, "%s", PQgetisnull(r, 0, 0) ? "NULL" : PQgetvalue(r, 0, 0));
        PQclear(r);
        return ok ? 0 : -1;
    }
    sqlite3 *raw;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open(db, &raw) != SQLITE_OK) return -1;
    int rc = sqlite3_prepare_v2(raw, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        snprintf(out, cap, "%s", v ? (const char *)v : "NULL");
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(raw));
    sqlite3_finalize(st);
    sqlite3_close(raw);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

TEST(schema_created_and_reopened)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    hu_ledger *again = NULL;
    CHECK_INT(hu_ledger_open(db, &again), 0);
    hu_ledger_close(again);
    cleanup(l);
}

TEST(quota_reservations_and_completion)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    int64_t retry = -1;
    CHECK_INT(reserve(l, "s1/a", "alice@x", 600, 2000, 1000, 1000, &retry), 0);
    CHECK_INT(reserve(l, "s2/b", "alice@x", 500, 3000, 1000, 1000, &retry), -EDQUOT);
    CHECK_INT(retry, 2000);
    CHECK_INT(reserve(l, "s2/b", "bob@x", 500, 3000, 1000, 1000, &retry), 0);
    CHECK_INT(reserve(l, "s2/b", "bob@x", 1, 3000, 1000, 1000, &retry), -EEXIST);
    uint64_t used, reserved, quota;
    CHECK_INT(hu_ledger_usage(l, "alice@x", 1000, 1000, &used, &reserved, &quota), 0);
    CHECK_INT(used, 0);
    CHECK_INT(reserved, 600);
    CHECK_INT(quota, 1000);
    /* completion turns the reservation into a file */
    hu_stored_file f = file("s1/a", "alice@x", 600);
    CHECK_INT(hu_ledger_commit_upload(l, &f), 0);
    CHECK_INT(hu_ledger_commit_upload(l, &f), -EEXIST);
    CHECK_INT(hu_ledger_usage(l, "alice@x", 1000, 1000, &used, &reserved, &quota), 0);
    CHECK_INT(used, 600);
    CHECK_INT(reserved, 0);
    CHECK_INT(reserve(l, "s3/c", "alice@x", 401, 3000, 1000, 1000, &retry), -EDQUOT);
    CHECK_INT(retry, 0); /* nothing reserved will free anything */
    CHECK_INT(reserve(l, "s3/c", "alice@x", 400, 3000, 1000, 1000, &retry), 0);
    /* an expired reservation frees its bytes */
    CHECK_INT(reserve(l, "s4/d", "alice@x", 400, 3000, 3000, 1000, &retry), 0);
    /* override and unlimited */
    CHECK_INT(hu_ledger_set_quota(l, "alice@x", 5000), 0);
    CHECK_INT(hu_ledger_usage(l, "alice@x", 3000, 1000, &used, &reserved, &quota), 0);
    CHECK_INT(quota, 5000);
    CHECK_INT(reserve(l, "s5/e", "alice@x", 3000, 9000, 3000, 1000, &retry), 0);
    CHECK_INT(hu_ledger_clear_quota(l, "alice@x"), 0);
    CHECK_INT(reserve(l, "s6/f", "alice@x", 1, 9000, 3000, 1000, &retry), -EDQUOT);
    CHECK_INT(reserve(l, "s6/f", "alice@x", 1 << 30, 9000, 3000, 0, &retry), 0);
    CHECK_INT(hu_ledger_release(l, "s6/f"), 0);
    /* dead reservations are the maintenance timer's to drop, never a grant's: s2/b, s3/c,
     * s4/d and s5/e are all gone now */
    CHECK_INT(hu_ledger_purge_reservations(l, 10000), 4);
    CHECK_INT(hu_ledger_usage(l, "alice@x", 10000, 1000, &used, &reserved, &quota), 0);
    CHECK_INT(used, 600);
    CHECK_INT(reserved, 0);
    /* legacy uploads have no user */
    hu_stored_file legacy = file("u/r/g", NULL, 10);
    legacy.scheme = "v1";
    CHECK_INT(hu_ledger_commit_upload(l, &legacy), 0);
    cleanup(l);
}

TEST(files_listing_deletion_expiry_and_audit)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    hu_stored_file a = file("s1/a", "alice@x", 10), b = file("s2/b", "alice@x", 20),
                   c = file("s3/c", "bob@x", 30);
    b.expires = 5000;
    CHECK_INT(hu_ledger_commit_upload(l, &a), 0);
    CHECK_INT(hu_ledger_commit_upload(l, &b), 0);
    CHECK_INT(hu_ledger_commit_upload(l, &c), 0);
    int n = 0;
    CHECK_INT(hu_ledger_list_files(l, "alice@x", count_cb, &n), 0);
    CHECK_INT(n, 2);
    n = 0;
    CHECK_INT(hu_ledger_list_files(l, NULL, count_cb, &n), 0);
    CHECK_INT(n, 3);
    n = 0;
    CHECK_INT(hu_ledger_expired_files(l, 5000, count_cb, &n), 0);
    CHECK_INT(n, 1);
    n = 0;
    CHECK_INT(hu_ledger_get_file(l, "s3/c", count_cb, &n), 0);
    CHECK_INT(n, 1);
    CHECK_INT(hu_ledger_get_file(l, "nope", count_cb, &n), -ENOENT);
    CHECK_INT(hu_ledger_delete_file(l, "s1/a", "admin"), 0);
    CHECK_INT(hu_ledger_delete_file(l, "s1/a", "admin"), -ENOENT);
    CHECK_INT(hu_ledger_audit(l, 6000, "download", NULL, "s3/c", 30, NULL), 0);
    char events[256] = "";
    CHECK_INT(hu_ledger_audit_recent(l, NULL, 10, audit_cb, events), 0);
    CHECK_STR(events, "download,delete,upload,upload,upload,");
    events[0] = '\0';
    CHECK_INT(hu_ledger_audit_recent(l, "bob@x", 10, audit_cb, events), 0);
    CHECK_STR(events, "upload,");
    cleanup(l);
}

/* The media metadata of a file (schema v4) comes back as it went in from every file-row read:
 * a probed image, a file whose bytes contradict its signed type, a file never probed. */
TEST(media_metadata_round_trips)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    hu_stored_file img = file("m1/cat.jpg", "alice@x", 100);
    img.media_type = "image/jpeg";
    img.type_ok = 1;
    img.width = 4032;
    img.height = 3024;
    img.blurhash = "LEHV6nWB2yk8pyo0adR*.7kCMdnj";
    img.thumbnail = 1;
    img.expires = 5000;
    hu_stored_file liar = file("m2/doc.pdf", "alice@x", 200);
    liar.content_type = "application/pdf";
    liar.media_type = "image/png";
    liar.type_ok = 0;
    hu_stored_file plain = file("m3/notes.txt", "alice@x", 300); /* never probed */
    plain.type_ok = 0; /* as a zeroed struct has it: without a media_type it says nothing */
    CHECK_INT(hu_ledger_commit_upload(l, &img), 0);
    CHECK_INT(hu_ledger_commit_upload(l, &liar), 0);
    CHECK_INT(hu_ledger_commit_upload(l, &plain), 0);

    seen_file s = {0};
    CHECK_INT(hu_ledger_get_file(l, "m1/cat.jpg", seen_cb, &s), 0);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.media_type, "image/jpeg");
    CHECK_INT(s.type_ok, 1);
    CHECK_INT(s.width, 4032);
    CHECK_INT(s.height, 3024);
    CHECK_STR(s.blurhash, "LEHV6nWB2yk8pyo0adR*.7kCMdnj");
    CHECK_INT(s.thumbnail, 1);
    memset(&s, 0, sizeof s);
    CHECK_INT(hu_ledger_expired_files(l, 5000, seen_cb, &s), 0);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.path, "m1/cat.jpg");
    CHECK_INT(s.width, 4032);
    CHECK_STR(s.blurhash, "LEHV6nWB2yk8pyo0adR*.7kCMdnj");

    memset(&s, 0, sizeof s);
    CHECK_INT(hu_ledger_get_file(l, "m2/doc.pdf", seen_cb, &s), 0);
    CHECK_STR(s.media_type, "image/png");
    CHECK_INT(s.type_ok, 0);
    CHECK_INT(s.width, 0);
    CHECK_INT(s.height, 0);
    CHECK_INT(s.has_blurhash, 0);
    CHECK_INT(s.thumbnail, 0);

    memset(&s, 0, sizeof s);
    CHECK_INT(hu_ledger_get_file(l, "m3/notes.txt", seen_cb, &s), 0);
    CHECK_INT(s.has_media_type, 0);
    CHECK_INT(s.type_ok, -1);
    CHECK_INT(s.width, 0);
    CHECK_INT(s.has_blurhash, 0);
    CHECK_INT(s.thumbnail, 0);

    /* list_files reads the same columns (the last row listed is the last one recorded) */
    memset(&s, 0, sizeof s);
    CHECK_INT(hu_ledger_list_files(l, "alice@x", seen_cb, &s), 0);
    CHECK_INT(s.n, 3);
    memset(&s, 0, sizeof s);
    CHECK_INT(hu_ledger_list_files(l, NULL, seen_cb, &s), 0);
    CHECK_INT(s.n, 3);

    /* what is not known is NULL in the table, not 0 or "" */
    char v[64];
    CHECK_INT(raw_value("SELECT COUNT(*) FROM files WHERE media_type IS NULL AND type_ok IS NULL"
                        " AND width IS NULL AND height IS NULL AND blurhash IS NULL", v, sizeof v), 0);
    CHECK_STR(v, "1");
    CHECK_INT(raw_value("SELECT COUNT(*) FROM files WHERE width IS NULL AND height IS NULL"
                        " AND blurhash IS NULL", v, sizeof v), 0);
    CHECK_STR(v, "2");
    CHECK_INT(raw_value("SELECT width FROM files WHERE path = 'm1/cat.jpg'", v, sizeof v), 0);
    CHECK_STR(v, "4032");
    cleanup(l);
}

/* n processes at once: each waits at a gate (a pipe closed when all are forked), runs
 * child(i), and exits with what it returns; codes[i] gets that, or 9 for a process that did
 * not exit normally. */
static void at_once(int n, int (*child)(int i), int *codes) {
    pid_t pids[64];
    int gate[2];
    if (n > 64 || pipe(gate) != 0) {
        for (int i = 0; i < n; i++)
            codes[i] = 9;
        return;
    }
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            char go;
            close(gate[1]);
            if (read(gate[0], &go, 1) < 0) _exit(3);
            _exit(child(i));
        }
    }
    close(gate[0]);
    close(gate[1]); /* everybody starts at once */
    for (int i = 0; i < n; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        codes[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 9;
    }
}

/* One of fifty_processes_never_over_commit's: 0 granted, 1 refused over quota, else failed. */
static int reserve_a_hundred(int i) {
    hu_ledger *mine = NULL;
    if (hu_ledger_open(db, &mine) < 0) return 4;
    char path[32];
    snprintf(path, sizeof path, "slot%d/f", i);
    int64_t retry;
    int rc = reserve(mine, path, "carol@x", 100, 9000, 1000, 1000, &retry);
    hu_ledger_close(mine);
    return rc == 0 ? 0 : rc == -EDQUOT ? 1 : 2;
}

/* 50 processes, each with its own handle, ask for 100 bytes of a 1000-byte quota at once. */
TEST(fifty_processes_never_over_commit)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    hu_stored_file used = file("old/f", "carol@x", 500);
    CHECK_INT(hu_ledger_commit_upload(l, &used), 0);
    enum { N = 50 };
    int codes[N];
    at_once(N, reserve_a_hundred, codes);
    int granted = 0, refused = 0, other = 0;
    for (int i = 0; i < N; i++) {
        granted += codes[i] == 0;
        refused += codes[i] == 1;
        other += codes[i] > 1;
    }
    CHECK_INT(other, 0);
    CHECK_INT(granted, 5);
    CHECK_INT(refused, 45);
    uint64_t u, r, q;
    CHECK_INT(hu_ledger_usage(l, "carol@x", 1000, 1000, &u, &r, &q), 0);
    CHECK_INT(u + r, 1000);
    cleanup(l);
}

/* Grants made as a group (the module's slot requests that arrive together): one
 * transaction, in turn, each with its own result. */
TEST(a_group_of_grants)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    hu_reservation g[5] = {
        {"g1/a", "ola@x", 400, 2000, 9000, HU_RETENTION_DEFAULT},
        {"g2/b", "pia@x", 900, 2000, 9000, HU_RETENTION_DEFAULT},
        {"g3/c", "ola@x", 400, 2000, 9000, HU_RETENTION_DEFAULT},
        {"g4/d", "ola@x", 400, 2000, 9000, HU_RETENTION_DEFAULT}, /* over: 1,200 of 1,000 */
        {"g1/a", "pia@x", 10, 2000, 9000, HU_RETENTION_DEFAULT},  /* that slot is taken */
    };
    int results[5];
    int64_t retry[5];
    CHECK_INT(hu_ledger_reserve_all(l, g, 5, 1000, 1000, results, retry), 0);
    CHECK_INT(results[0], 0);
    CHECK_INT(results[1], 0);
    CHECK_INT(results[2], 0);
    CHECK_INT(results[3], -EDQUOT);
    CHECK_INT(retry[3], 2000);
    CHECK_INT(results[4], -EEXIST);
    uint64_t u, r, q;
    CHECK_INT(hu_ledger_usage(l, "ola@x", 1000, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 800);
    CHECK_INT(hu_ledger_usage(l, "pia@x", 1000, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 900);
    char events[512] = "";
    CHECK_INT(hu_ledger_audit_recent(l, "ola@x", 10, audit_cb, events), 0);
    CHECK_STR(events, "refused,grant,grant,");
    cleanup(l);
}

/* Short reservations (unused slots stop holding quota) claimed when the upload starts. */
TEST(claim_at_upload_start)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    int64_t retry;
    uint64_t u, r, q;
    /* granted at 1000 for 300 s; the upload starts in time: held until the token's expiry */
    CHECK_INT(reserve(l, "s1/a", "dave@x", 600, 1300, 1000, 1000, &retry), 0);
    CHECK_INT(claim(l, "s1/a", "dave@x", 600, 9000, 1100, 1000), 0);
    CHECK_INT(hu_ledger_usage(l, "dave@x", 5000, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 600); /* still held long after the grant's own 300 s */
    /* a slot nobody used lapses: another one fits again */
    CHECK_INT(reserve(l, "s2/b", "erin@x", 600, 1300, 1000, 1000, &retry), 0);
    CHECK_INT(reserve(l, "s3/c", "erin@x", 600, 1400, 1350, 1000, &retry), 0);
    /* a late upload on the lapsed slot: re-reserved only if the quota still allows */
    CHECK_INT(claim(l, "s2/b", "erin@x", 600, 9000, 1360, 1000), -EDQUOT);
    /* once the other slot lapsed too, the late upload gets its bytes back */
    CHECK_INT(claim(l, "s2/b", "erin@x", 600, 9000, 1500, 1000), 0);
    CHECK_INT(hu_ledger_usage(l, "erin@x", 1500, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 600);
    /* a size other than the reserved one is not the same slot: the quota decides afresh */
    CHECK_INT(reserve(l, "s4/d", "fay@x", 500, 2000, 1000, 1000, &retry), 0);
    CHECK_INT(claim(l, "s4/d", "fay@x", 900, 9000, 1100, 1000), 0);
    CHECK_INT(hu_ledger_usage(l, "fay@x", 1100, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 900);
    /* no reservation at all (a grant that never reached this ledger): as a grant would */
    CHECK_INT(claim(l, "s5/e", "gil@x", 1001, 9000, 1100, 1000), -EDQUOT);
    CHECK_INT(claim(l, "s5/e", "gil@x", 1000, 9000, 1100, 1000), 0);
    char events[512] = "";
    CHECK_INT(hu_ledger_audit_recent(l, "gil@x", 10, audit_cb, events), 0);
    CHECK_STR(events, "reserve at upload,refused,");
    cleanup(l);
}

/* A small upload's completion with its slot's claim in the same transaction, as the server
 * makes it for a body it took whole: the retention read first, then hu_ledger_complete. */
static int complete_claimed(hu_ledger *l, const char *path, const char *user, uint64_t size,
                            int64_t until, int64_t now, uint64_t quota)
{
    hu_completion c = {.file = file(path, user, size), .claim = 1, .claim_until = until,
                       .default_quota = quota};
    int rc = hu_ledger_retention(l, path, user, size, now, &c.retention);
    if (rc == 0)
        rc = hu_ledger_complete(l, &c, 1, now);
    return rc < 0 ? rc : c.result;
}

/* The claim made by the completion itself: a granted slot's bytes move from held to stored
 * at once; a path stored already, a retention that changed since it was read and a quota
 * that no longer fits each refuse that completion alone, and a group commits the rest. */
TEST(claim_with_the_completion)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    int64_t retry;
    uint64_t u, r, q;
    hu_reservation a = {"w1/a", "kim@x", 600, 1300, 9000, {3600, 0}};
    CHECK_INT(hu_ledger_reserve(l, &a, 1000, 1000, &retry), 0);
    hu_retention ret;
    CHECK_INT(hu_ledger_retention(l, "w1/a", "kim@x", 600, 1100, &ret), 0);
    CHECK_INT(ret.keep, 3600); /* the grant's, as a claim finds it */
    CHECK_INT(hu_ledger_retention(l, "w1/a", "kim@x", 601, 1100, &ret), 0);
    CHECK_INT(ret.keep, HU_KEEP_DEFAULT); /* another size is not this slot */
    CHECK_INT(complete_claimed(l, "w1/a", "kim@x", 600, 9000, 1100, 1000), 0);
    CHECK_INT(hu_ledger_usage(l, "kim@x", 1100, 1000, &u, &r, &q), 0);
    CHECK_INT(u, 600);
    CHECK_INT(r, 0);
    /* stored already: refused, and nothing is held twice */
    CHECK_INT(complete_claimed(l, "w1/a", "kim@x", 600, 9000, 1100, 1000), -EEXIST);
    CHECK_INT(hu_ledger_usage(l, "kim@x", 1100, 1000, &u, &r, &q), 0);
    CHECK_INT(u + r, 600);
    /* the retention it was stored with is not the reservation's (it changed meanwhile) */
    hu_reservation b = {"w2/b", "lea@x", 100, 1300, 9000, {60, 0}};
    CHECK_INT(hu_ledger_reserve(l, &b, 1000, 1000, &retry), 0);
    hu_completion stale = {.file = file("w2/b", "lea@x", 100), .claim = 1, .claim_until = 9000,
                           .default_quota = 1000, .retention = HU_RETENTION_DEFAULT};
    CHECK_INT(hu_ledger_complete(l, &stale, 1, 1100), 0);
    CHECK_INT(stale.result, -ESTALE);
    int n = 0;
    CHECK_INT(hu_ledger_get_file(l, "w2/b", count_cb, &n), -ENOENT);
    /* a group: over quota, stored already, and one that fits; each gets its own result */
    hu_completion g[3] = {
        {.file = file("w3/c", "kim@x", 401), .claim = 1, .claim_until = 9000,
         .default_quota = 1000, .retention = HU_RETENTION_DEFAULT},
        {.file = file("w1/a", "kim@x", 600), .claim = 1, .claim_until = 9000,
         .default_quota = 1000, .retention = {3600, 0}},
        {.file = file("w4/d", "kim@x", 400), .claim = 1, .claim_until = 9000,
         .default_quota = 1000, .retention = HU_RETENTION_DEFAULT},
    };
    CHECK_INT(hu_ledger_complete(l, g, 3, 1200), 0);
    CHECK_INT(g[0].result, -EDQUOT);
    CHECK_INT(g[1].result, -EEXIST);
    CHECK_INT(g[2].result, 0);
    CHECK_INT(hu_ledger_usage(l, "kim@x", 1200, 1000, &u, &r, &q), 0);
    CHECK_INT(u, 1000);
    CHECK_INT(r, 0);
    n = 0;
    CHECK_INT(hu_ledger_list_files(l, "kim@x", count_cb, &n), 0);
    CHECK_INT(n, 2);
    char events[512] = "";
    CHECK_INT(hu_ledger_audit_recent(l, "kim@x", 10, audit_cb, events), 0);
    CHECK_STR(events, "upload,reserve at upload,refused,upload,grant,");
    cleanup(l);
}

/* A short hold (reservation_time) on a long-lived row: the bytes stop counting, the slot and
 * the retention its grant chose stay until the token expires. */
TEST(hold_lapses_but_the_slot_and_its_retention_stay)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    int64_t retry = 0, at = 0;
    uint64_t u, r, q;
    hu_reservation a = {"h1/a", "hana@x", 600, 1300, 9000, {3600, 0}};
    CHECK_INT(hu_ledger_reserve(l, &a, 1000, 1000, &retry), 0);
    CHECK_INT(hu_ledger_usage(l, "hana@x", 1299, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 600);
    CHECK_INT(hu_ledger_usage(l, "hana@x", 1300, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 0); /* an unused slot holds nothing after its hold */
    hu_reservation b = {"h2/b", "hana@x", 600, 1700, 9000, HU_RETENTION_DEFAULT};
    CHECK_INT(hu_ledger_reserve(l, &b, 1400, 1000, &retry), 0);
    CHECK_INT(hu_ledger_retry_at(l, "hana@x", 1450, &at), 0);
    CHECK_INT(at, 1700); /* the <retry> stamp: when the hold lapses, not when the token does */
    hu_retention ret = {-7, -7};
    /* the late upload on the first slot: its bytes no longer fit while b is held */
    CHECK_INT(hu_ledger_claim(l, "h1/a", "hana@x", 600, 9000, 1500, 1000, &ret), -EDQUOT);
    /* once b lapsed: held again until the token's expiry, with the grant's retention */
    CHECK_INT(hu_ledger_claim(l, "h1/a", "hana@x", 600, 9000, 1800, 1000, &ret), 0);
    CHECK_INT(ret.keep, 3600);
    CHECK_INT(ret.expire_before, 0);
    CHECK_INT(hu_ledger_usage(l, "hana@x", 8000, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 600);
    /* a claim while the hold runs keeps the retention too (an ephemeral slot) */
    hu_reservation c = {"h3/c", "ivo@x", 10, 1300, 9000, {HU_KEEP_DEFAULT, 5000}};
    CHECK_INT(hu_ledger_reserve(l, &c, 1000, 1000, &retry), 0);
    CHECK_INT(hu_ledger_claim(l, "h3/c", "ivo@x", 10, 9000, 1100, 1000, &ret), 0);
    CHECK_INT(ret.keep, HU_KEEP_DEFAULT);
    CHECK_INT(ret.expire_before, 5000);
    /* after the token expired the row is gone: a claim (it cannot happen with a valid token)
     * gets the default retention */
    CHECK_INT(hu_ledger_purge_reservations(l, 9000), 3);
    CHECK_INT(hu_ledger_claim(l, "h3/c", "ivo@x", 10, 9500, 9001, 1000, &ret), 0);
    CHECK_INT(ret.keep, HU_KEEP_DEFAULT);
    CHECK_INT(ret.expire_before, 0);
    char events[512] = "";
    CHECK_INT(hu_ledger_audit_recent(l, "hana@x", 10, audit_cb, events), 0);
    CHECK_STR(events, "reserve at upload,refused,grant,grant,");
    cleanup(l);
}

/* A ledger from before reservation_time: its reservations stay held until their tokens
 * expire, as they were granted; the running sums of v3 start from what its tables held. */
TEST(schema_v1_ledger_migrates)
{
    snprintf(dir, sizeof dir, "/tmp/hu-ledger-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(db, sizeof db, "%s/ledger.sqlite3", dir);
    sqlite3 *raw;
    CHECK_INT(sqlite3_open(db, &raw), SQLITE_OK);
    CHECK_INT(sqlite3_exec(raw,
        "CREATE TABLE files(path TEXT PRIMARY KEY, user TEXT, size INTEGER NOT NULL,"
        " content_type TEXT, sha256 TEXT, created INTEGER NOT NULL, expires INTEGER NOT NULL"
        " DEFAULT 0, source_ip TEXT, scheme TEXT);"
        "CREATE TABLE reservations(path TEXT PRIMARY KEY, user TEXT NOT NULL,"
        " size INTEGER NOT NULL, expires INTEGER NOT NULL);"
        "CREATE TABLE quotas(user TEXT PRIMARY KEY, quota INTEGER NOT NULL);"
        "CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,"
        " event TEXT NOT NULL, user TEXT, path TEXT, size INTEGER NOT NULL DEFAULT 0, detail TEXT);"
        "INSERT INTO reservations VALUES('old/a', 'jo@x', 700, 5000);"
        "INSERT INTO reservations VALUES('old/b', 'jo@x', 50, 3000);"
        "INSERT INTO files VALUES('old/c', 'jo@x', 200, 'image/png', NULL, 1, 0, NULL, 'bearer');"
        "INSERT INTO files VALUES('old/d', NULL, 99, 'image/png', NULL, 1, 0, NULL, 'v1');"
        "PRAGMA user_version = 1;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    hu_ledger *l = NULL;
    CHECK_INT(hu_ledger_open(db, &l), 0);
    uint64_t u, r, q;
    CHECK_INT(hu_ledger_usage(l, "jo@x", 4999, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 700); /* old/b lapsed at 3000 */
    CHECK_INT(u, 200); /* the running sums start from what the tables held */
    CHECK_INT(hu_ledger_usage(l, "jo@x", 2999, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 750);
    hu_retention ret;
    CHECK_INT(hu_ledger_claim(l, "old/a", "jo@x", 700, 6000, 4000, 1000, &ret), 0);
    CHECK_INT(ret.keep, HU_KEEP_DEFAULT);
    CHECK_INT(ret.expire_before, 0);
    cleanup(l);
}

/* A ledger at schema v3 (the last one before the media columns) with a file in it opens: the
 * row is kept, its media columns are NULL, and new rows carry their metadata. */
TEST(schema_v3_ledger_migrates_to_v4)
{
    CHECK_INT(new_location(), 0);
    /* v3 as each backend created it, reduced to what the migration touches or reads */
    if (pg_url != NULL) {
        CHECK_INT(pg_sql(
            "CREATE TABLE files(path TEXT PRIMARY KEY, \"user\" TEXT, size BIGINT NOT NULL,"
            " content_type TEXT, sha256 TEXT, created BIGINT NOT NULL, expires BIGINT NOT NULL"
            " DEFAULT 0, source_ip TEXT, scheme TEXT);"
            "CREATE TABLE reservations(path TEXT PRIMARY KEY, \"user\" TEXT NOT NULL,"
            " size BIGINT NOT NULL, expires BIGINT NOT NULL, held_until BIGINT NOT NULL DEFAULT 0,"
            " keep BIGINT NOT NULL DEFAULT -1, expire_before BIGINT NOT NULL DEFAULT 0,"
            " counted INTEGER NOT NULL DEFAULT 0);"
            "CREATE TABLE quotas(\"user\" TEXT PRIMARY KEY, quota BIGINT NOT NULL);"
            "CREATE TABLE usage(\"user\" TEXT PRIMARY KEY, stored BIGINT NOT NULL DEFAULT 0,"
            " held BIGINT NOT NULL DEFAULT 0);"
            "CREATE TABLE audit(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " at BIGINT NOT NULL, event TEXT NOT NULL, \"user\" TEXT, path TEXT,"
            " size BIGINT NOT NULL DEFAULT 0, detail TEXT);"
            "CREATE TABLE schema_version(version INTEGER NOT NULL);"
            "INSERT INTO schema_version VALUES(3);"
            "INSERT INTO files VALUES('old/c.png', 'jo@x', 200, 'image/png', 'ab', 1, 0,"
            " '::1', 'bearer');"
            "INSERT INTO usage VALUES('jo@x', 200, 0);"), 0);
    } else {
        sqlite3 *raw;
        CHECK_INT(sqlite3_open(db, &raw), SQLITE_OK);
        CHECK_INT(sqlite3_exec(raw,
            "CREATE TABLE files(path TEXT PRIMARY KEY, user TEXT, size INTEGER NOT NULL,"
            " content_type TEXT, sha256 TEXT, created INTEGER NOT NULL, expires INTEGER NOT NULL"
            " DEFAULT 0, source_ip TEXT, scheme TEXT);"
            "CREATE TABLE reservations(path TEXT PRIMARY KEY, user TEXT NOT NULL,"
            " size INTEGER NOT NULL, expires INTEGER NOT NULL,"
            " held_until INTEGER NOT NULL DEFAULT 0, keep INTEGER NOT NULL DEFAULT -1,"
            " expire_before INTEGER NOT NULL DEFAULT 0, counted INTEGER NOT NULL DEFAULT 0);"
            "CREATE TABLE quotas(user TEXT PRIMARY KEY, quota INTEGER NOT NULL);"
            "CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,"
            " event TEXT NOT NULL, user TEXT, path TEXT, size INTEGER NOT NULL DEFAULT 0, detail TEXT);"
            "CREATE TABLE usage(user TEXT PRIMARY KEY, stored INTEGER NOT NULL DEFAULT 0,"
            " held INTEGER NOT NULL DEFAULT 0);"
            "INSERT INTO files VALUES('old/c.png', 'jo@x', 200, 'image/png', 'ab', 1, 0, '::1',"
            " 'bearer');"
            "INSERT INTO usage VALUES('jo@x', 200, 0);"
            "PRAGMA user_version = 3;", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(raw);
    }
    hu_ledger *l = NULL;
    int rc = hu_ledger_open(db, &l);
    if (rc < 0) fprintf(stderr, "open: %s\n", hu_ledger_errmsg(l));
    CHECK_INT(rc, 0);
    char v[64];
    CHECK_INT(raw_value(pg_url ? "SELECT MAX(version) FROM schema_version" : "PRAGMA user_version",
                        v, sizeof v), 0);
    CHECK_STR(v, "4");
    CHECK_INT(raw_value("SELECT COUNT(*) FROM files WHERE path = 'old/c.png' AND size = 200"
                        " AND sha256 = 'ab' AND media_type IS NULL AND type_ok IS NULL"
                        " AND width IS NULL AND height IS NULL AND blurhash IS NULL"
                        " AND thumbnail IS NULL", v, sizeof v), 0);
    CHECK_STR(v, "1");
    seen_file s = {0};
    CHECK_INT(hu_ledger_get_file(l, "old/c.png", seen_cb, &s), 0);
    CHECK_INT(s.n, 1);
    CHECK_INT(s.has_media_type, 0);
    CHECK_INT(s.type_ok, -1);
    CHECK_INT(s.width, 0);
    CHECK_INT(s.height, 0);
    CHECK_INT(s.has_blurhash, 0);
    CHECK_INT(s.thumbnail, 0);
    uint64_t u, r, q;
    CHECK_INT(hu_ledger_usage(l, "jo@x", 1000, 0, &u, &r, &q), 0);
    CHECK_INT(u, 200);
    /* and the migrated ledger records a new upload's metadata */
    hu_stored_file f = file("new/d.png", "jo@x", 10);
    f.media_type = "image/png";
    f.type_ok = 1;
    f.width = 16;
    f.height = 9;
    f.blurhash = "L00000fQfQfQfQfQfQfQfQfQfQfQ";
    CHECK_INT(hu_ledger_commit_upload(l, &f), 0);
    memset(&s, 0, sizeof s);
    CHECK_INT(hu_ledger_get_file(l, "new/d.png", seen_cb, &s), 0);
    CHECK_STR(s.media_type, "image/png");
    CHECK_INT(s.width, 16);
    CHECK_INT(s.height, 9);
    /* opened again: already v4, nothing to do */
    hu_ledger *again = NULL;
    CHECK_INT(hu_ledger_open(db, &again), 0);
    hu_ledger_close(again);
    cleanup(l);
}

/* What a user stores and holds at now, added up the slow way straight from the tables: the
 * truth the running sums (usage) must always agree with. */
static void recount(const char *user, int64_t now, int64_t *stored, int64_t *held)
{
    *stored = *held = -1;
    if (pg_url != NULL) {
        char nowtxt[24], sql[300];
        snprintf(nowtxt, sizeof nowtxt, "%lld", (long long)now);
        snprintf(sql, sizeof sql, "SELECT (SELECT COALESCE(SUM(size), 0) FROM files WHERE \"user\" = $1),"
                 " (SELECT COALESCE(SUM(size), 0) FROM reservations WHERE \"user\" = $1"
                 " AND held_until > $2)");
        if (raw_pg == NULL && pg_sql("SELECT 1") < 0) return;
        const char *params[] = {user, nowtxt};
        PGresult *r = PQexecParams(raw_pg, sql, 2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            *stored = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            *held = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        } else {
            fprintf(stderr, "recount: %s", PQresultErrorMessage(r));
        }
        PQclear(r);
        return;
    }
    sqlite3 *raw;
    sqlite3_stmt *s;
    if (sqlite3_open(db, &raw) != SQLITE_OK) return;
    sqlite3_busy_timeout(raw, 5000);
    sqlite3_prepare_v2(raw, "SELECT (SELECT COALESCE(SUM(size), 0) FROM files WHERE user = ?1),"
                       " (SELECT COALESCE(SUM(size), 0) FROM reservations WHERE user = ?1"
                       " AND held_until > ?2)", -1, &s, NULL);
    sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *stored = sqlite3_column_int64(s, 0);
        *held = sqlite3_column_int64(s, 1);
    }
    sqlite3_finalize(s);
    sqlite3_close(raw);
}

/* 3,000 random grants, claims, completions (some claiming with the completion), releases,
 * deletions and purges for three users
 * (one without a quota) as time moves on: after every step the ledger's usage equals the recount, and a grant is
 * refused exactly when the recount says it would not fit. */
TEST(running_sums_agree_with_a_recount)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    const char *users[] = {"u1@x", "u2@x", "u3@x"};
    const uint64_t quota = 5000;
    int64_t now = 1000;
    unsigned seed = 12345;
    char path[64];
    int slots = 0;
    struct { int user; uint64_t size; } slot[3000];
    CHECK_INT(hu_ledger_set_quota(l, "u3@x", 0), 0); /* one unlimited user: nothing is summed */
    for (int step = 0; step < 3000; step++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 8;
        const char *user = users[r % 3];
        int op = (int)((r / 3) % 7);
        uint64_t size = 1 + (r / 21) % 900;
        now += (int64_t)((r / 19000) % 4); /* time moves on by 0-3 s a step */
        int64_t retry;
        int64_t st0, he0;
        recount(user, now, &st0, &he0);
        snprintf(path, sizeof path, "s%d/f", slots);
        if (op <= 2) { /* a grant held for 0-40 s, alive for 60 */
            int64_t hold = now + (int64_t)(r % 41);
            hu_reservation res = {path, user, size, hold, now + 60, HU_RETENTION_DEFAULT};
            int rc = hu_ledger_reserve(l, &res, now, quota, &retry);
            int fits = user == users[2] || st0 + he0 + (int64_t)size <= (int64_t)quota;
            CHECK_INT(rc, fits ? 0 : -EDQUOT);
            if (rc == 0) {
                slot[slots].user = (int)(r % 3);
                slot[slots++].size = size;
            }
        } else if (slots > 0) {
            unsigned k = (r / 7) % (unsigned)slots;
            snprintf(path, sizeof path, "s%u/f", k);
            if (r % 8 != 0) { /* mostly the slot's own user and size; sometimes not */
                user = users[slot[k].user];
                size = slot[k].size;
            }
            if (op == 3) { /* an upload starts: held until its token expires */
                hu_retention ret;
                int rc = hu_ledger_claim(l, path, user, size, now + 120, now, quota, &ret);
                CHECK(rc == 0 || rc == -EDQUOT || rc == -EEXIST);
            } else if (op == 4 && r % 2) { /* it completes (whoever's slot it was) */
                hu_stored_file f = file(path, user, size);
                int rc = hu_ledger_commit_upload(l, &f);
                CHECK(rc == 0 || rc == -EEXIST);
            } else if (op == 4) { /* a small body: claimed with its completion */
                int rc = complete_claimed(l, path, user, size, now + 120, now, quota);
                CHECK(rc == 0 || rc == -EDQUOT || rc == -EEXIST);
            } else if (op == 5) {
                CHECK_INT(hu_ledger_release(l, path), 0);
            } else if (r % 5 == 0) {
                CHECK(hu_ledger_purge_reservations(l, now) >= 0);
            } else {
                int rc = hu_ledger_delete_file(l, path, "test");
                CHECK(rc == 0 || rc == -ENOENT);
            }
        }
        for (int u = 0; u < 3; u++) {
            uint64_t used, reserved, q;
            int64_t st, he;
            CHECK_INT(hu_ledger_usage(l, users[u], now, quota, &used, &reserved, &q), 0);
            recount(users[u], now, &st, &he);
            if ((int64_t)used != st || (int64_t)reserved != he)
                fprintf(stderr, "step %d op %d %s\n", step, op, users[u]);
            CHECK_INT(used, st);
            CHECK_INT(reserved, he);
        }
    }
    cleanup(l);
}

/* How many file rows another process sees (sqlite3(1), a fresh process with a connection of
 * its own, opened and closed as the module's NIF does; a fork would inherit this process's
 * SQLite state), or -1. */
static int rows_seen_by_another_process(void)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sqlite3 '%s' 'SELECT COUNT(*) FROM files'", db);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p == NULL) return -1;
    if (fscanf(p, "%d", &n) != 1) n = -1;
    pclose(p);
    return n;
}

/* A second handle on the same SQLite file in one process (the upload server keeps two; a
 * reload opens the next settings' before the last one's is closed) must not drop the first
 * one's POSIX locks: without them, another process closing its connection takes itself for
 * the last one, checkpoints and deletes the WAL, and every later commit of the first handle
 * goes to the deleted file, lost to every other reader. */
TEST(a_second_handle_keeps_the_first_ones_commits_visible)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    hu_stored_file a = file("v1/a", "nia@x", 10), b = file("v2/b", "nia@x", 10);
    CHECK_INT(hu_ledger_commit_upload(l, &a), 0);
    hu_ledger_close(l); /* the last connection: its WAL is checkpointed and removed */
    l = NULL;
    CHECK_INT(hu_ledger_open(db, &l), 0); /* a server starting: its two handles */
    hu_ledger *second = NULL;
    CHECK_INT(hu_ledger_open(db, &second), 0);
    CHECK_INT(rows_seen_by_another_process(), 1);
    CHECK_INT(hu_ledger_commit_upload(l, &b), 0);
    CHECK_INT(rows_seen_by_another_process(), 2);
    hu_ledger_close(second);
    cleanup(l);
}

/* A ledger written by a newer version is refused, not misread. */
TEST(newer_schema_is_refused)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    hu_ledger_close(l);
    if (pg_url != NULL) {
        CHECK_INT(pg_sql("UPDATE schema_version SET version = 5"), 0);
    } else {
        sqlite3 *raw;
        CHECK_INT(sqlite3_open(db, &raw), SQLITE_OK);
        CHECK_INT(sqlite3_exec(raw, "PRAGMA user_version = 5", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(raw);
    }
    l = NULL;
    CHECK_INT(hu_ledger_open(db, &l), -EPROTO);
    CHECK(strstr(hu_ledger_errmsg(l), "newer") != NULL);
    cleanup(l);
}

/* One of first_open_from_ten_processes_at_once's: opens the new ledger and reserves. */
static int open_and_reserve(int i) {
    hu_ledger *mine = NULL;
    int rc = hu_ledger_open(db, &mine);
    if (rc < 0) fprintf(stderr, "open: %s\n", hu_ledger_errmsg(mine));
    char path[32];
    snprintf(path, sizeof path, "first%d/f", i);
    int64_t retry;
    if (rc == 0) rc = reserve(mine, path, "kim@x", 10, 9000, 1000, 1000, &retry);
    hu_ledger_close(mine);
    return rc == 0 ? 0 : 1;
}

/* Ten processes open a ledger nobody created yet, at once: it is created once, and every one
 * of them can use it. */
TEST(first_open_from_ten_processes_at_once)
{
    CHECK_INT(new_location(), 0);
    enum { N = 10 };
    int codes[N];
    at_once(N, open_and_reserve, codes);
    int failed = 0;
    for (int i = 0; i < N; i++)
        failed += codes[i] != 0;
    CHECK_INT(failed, 0);
    hu_ledger *l = NULL;
    CHECK_INT(hu_ledger_open(db, &l), 0);
    uint64_t u, r, q;
    CHECK_INT(hu_ledger_usage(l, "kim@x", 1000, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 100);
    cleanup(l);
}

/* Servers sharing a ledger take turns at the start-up reconciliation. */
TEST(one_sweep_at_a_time)
{
    hu_ledger *l = fresh(), *other = NULL;
    CHECK(l != NULL);
    CHECK_INT(hu_ledger_open(db, &other), 0);
    CHECK_INT(hu_ledger_try_sweep_lock(l), 1);
    CHECK_INT(hu_ledger_try_sweep_lock(l), 1); /* held already */
    CHECK_INT(hu_ledger_try_sweep_lock(other), 0);
    hu_ledger_sweep_unlock(l);
    CHECK_INT(hu_ledger_try_sweep_lock(other), 1);
    hu_ledger_close(other); /* a holder that goes away releases it */
    /* PostgreSQL drops a closed session's advisory lock when its backend has processed the
     * termination, a moment after PQfinish returns: wait for that (up to 5 s) */
    int got = 0;
    for (int i = 0; i < 500 && (got = hu_ledger_try_sweep_lock(l)) == 0; i++)
        usleep(10000);
    CHECK_INT(got, 1);
    hu_ledger_sweep_unlock(l);
    hu_ledger_sweep_unlock(l); /* not held: nothing */
    cleanup(l);
}

TEST(passwords_stay_out_of_log_lines)
{
    char out[256];
    hu_ledger_redact("postgresql://hu:s3cret@db.example:5432/upload?sslmode=require", out,
                     sizeof out);
    CHECK_STR(out, "postgresql://hu:***@db.example:5432/upload?sslmode=require");
    hu_ledger_redact("postgresql://db/upload?user=hu&password=s3cret&connect_timeout=3", out,
                     sizeof out);
    CHECK_STR(out, "postgresql://db/upload?user=hu&password=***&connect_timeout=3");
    hu_ledger_redact("postgresql://hu:a@b@db/upload?password=c#x", out, sizeof out);
    CHECK_STR(out, "postgresql://hu:***@db/upload?password=***#x");
    hu_ledger_redact("postgresql://hu:s3cret@db/upload?password=s3cret", out, 20);
    CHECK(strstr(out, "s3cret") == NULL);
    hu_ledger_redact("postgres://hu@db/upload", out, sizeof out);
    CHECK_STR(out, "postgres://hu@db/upload");
    hu_ledger_redact("/var/lib/hu/state/ledger.sqlite3", out, sizeof out);
    CHECK_STR(out, "/var/lib/hu/state/ledger.sqlite3");
    CHECK_INT(hu_ledger_is_postgres("postgresql://x/y"), 1);
    CHECK_INT(hu_ledger_is_postgres("postgres://x/y"), 1);
    CHECK_INT(hu_ledger_is_postgres("./postgresql:/x"), 0);
}

/* PostgreSQL: the server ends our session (a restart, a failover, an idle timeout): the
 * next call runs on a new connection, as if nothing had happened. */
TEST(pg_lost_connection_is_replaced)
{
    hu_ledger *l = fresh();
    CHECK(l != NULL);
    int64_t retry;
    CHECK_INT(reserve(l, "p1/a", "lee@x", 100, 9000, 1000, 1000, &retry), 0);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
             " WHERE application_name = '%s' AND pid <> pg_backend_pid()", schema);
    CHECK_INT(pg_sql(sql), 0);
    usleep(100 * 1000);
    CHECK_INT(reserve(l, "p2/b", "lee@x", 100, 9000, 1000, 1000, &retry), 0);
    uint64_t u, r, q;
    CHECK_INT(hu_ledger_usage(l, "lee@x", 1000, 1000, &u, &r, &q), 0);
    CHECK_INT(r, 200);
    /* and the trigger keeps the audit log append-only for everybody */
    CHECK_INT(pg_sql("UPDATE audit SET event = 'x'"), -1);
    CHECK_INT(pg_sql("DELETE FROM audit"), -1);
    cleanup(l);
}

/* PostgreSQL: nobody listening is -ENOTCONN, at once, with libpq's reason. */
TEST(pg_unreachable_is_enotconn)
{
    hu_ledger *l = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_INT(hu_ledger_open("postgresql://hu@127.0.0.1:1/none", &l), -ENOTCONN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(strstr(hu_ledger_errmsg(l), "onnection") != NULL);
    CHECK(t1.tv_sec - t0.tv_sec < 3);
    hu_ledger_close(l);
    l = NULL;
    CHECK_INT(hu_ledger_open("postgresql://[::1", &l), -EINVAL);
    hu_ledger_close(l);
}

TEST(retention_gives_the_file_its_expiry)
{
    hu_retention r = HU_RETENTION_DEFAULT;
    CHECK_INT(hu_retention_expires(&r, 1000, 0), 0);              /* max_days unset: kept */
    CHECK_INT(hu_retention_expires(&r, 1000, 2), 1000 + 2 * 86400);
    r.keep = 0;
    CHECK_INT(hu_retention_expires(&r, 1000, 2), 0);              /* permanent beats max_days */
    r.keep = 100;
    CHECK_INT(hu_retention_expires(&r, 1000, 2), 1100);
    r.expire_before = 1050;
    CHECK_INT(hu_retention_expires(&r, 1000, 2), 1050);           /* ephemeral: the earlier */
    r.expire_before = 5000;
    CHECK_INT(hu_retention_expires(&r, 1000, 2), 1100);
    r.keep = 0;
    CHECK_INT(hu_retention_expires(&r, 1000, 2), 5000);
    r.keep = HU_KEEP_DEFAULT;
    CHECK_INT(hu_retention_expires(&r, 1000, 0), 5000);
}

TEST_MAIN({
    pg_url = getenv("HU_TEST_LEDGER_URL");
    if (pg_url != NULL && pg_url[0] == '\0') pg_url = NULL;
    RUN(schema_created_and_reopened);
    RUN(quota_reservations_and_completion);
    RUN(files_listing_deletion_expiry_and_audit);
    RUN(media_metadata_round_trips);
    RUN(fifty_processes_never_over_commit);
    RUN(a_group_of_grants);
    RUN(claim_at_upload_start);
    RUN(hold_lapses_but_the_slot_and_its_retention_stay);
    RUN(claim_with_the_completion);
    if (pg_url == NULL) RUN(schema_v1_ledger_migrates); /* raw SQLite v1 */
    if (pg_url == NULL) RUN(a_second_handle_keeps_the_first_ones_commits_visible);
    RUN(schema_v3_ledger_migrates_to_v4);
    RUN(running_sums_agree_with_a_recount);
    RUN(newer_schema_is_refused);
    RUN(first_open_from_ten_processes_at_once);
    RUN(one_sweep_at_a_time);
    RUN(passwords_stay_out_of_log_lines);
    if (pg_url != NULL) {
        RUN(pg_lost_connection_is_replaced);
        RUN(pg_unreachable_is_enotconn);
    }
    RUN(retention_gives_the_file_its_expiry);
    PQfinish(raw_pg);
})
