/* The ledger: quota usage, open reservations, stored files and the audit log, shared by the
 * NIF (slot grants) and the upload server (completions, downloads, expiry). Two backends
 * behind this one interface: an SQLite database file (WAL mode; ledger_sqlite.c) or a
 * PostgreSQL database named by a libpq URL, postgresql://user:password@host:port/dbname?...
 * (ledger_pg.c; every libpq parameter works). Whoever opens it first creates or migrates the
 * schema; a schema newer than this code is refused (-EPROTO).
 * Every function returns 0 or a negative errno; -EDQUOT for "over quota", -ENOENT for
 * "no such row", -EIO for any database failure (the message goes to hu_ledger_errmsg),
 * -EAGAIN when the database stayed locked or busy past its timeout (SQLite's busy timeout,
 * PostgreSQL's statement_timeout or lock_timeout, a serialization retry limit), -ENOSPC when
 * the disk (or a file-system quota) is full, -ENOTCONN when the PostgreSQL server cannot be
 * reached (the call failed fast, or the connection broke; nothing of it was applied: a
 * connection lost during COMMIT is followed by a lookup of the transaction's fate on a new
 * one, and only when that lookup fails too is the outcome unknown). -EAGAIN and -ENOTCONN
 * are "try again soon": an upload answers 503 with Retry-After, a slot request a wait error.
 * A PostgreSQL handle reconnects by itself: at most one attempt a second, calls in between
 * fail fast with -ENOTCONN.
 * A hu_ledger is used by one thread at a time; each process or thread opens its own. */
#ifndef HU_LEDGER_H
#define HU_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "retention.h"

typedef struct hu_ledger hu_ledger;

/* path: an SQLite file, or a postgresql:// (postgres://) URL. On failure *out may still be
 * set, for hu_ledger_errmsg; close it. */
int hu_ledger_open(const char *path, hu_ledger **out);
void hu_ledger_close(hu_ledger *l);
const char *hu_ledger_errmsg(const hu_ledger *l);
/* 1 when path names a PostgreSQL ledger. */
int hu_ledger_is_postgres(const char *path);
/* path fit for a log line: a URL's password (user:password@, or ?password=) becomes ***. */
void hu_ledger_redact(const char *path, char *out, size_t cap);

/* The start-up reconciliation of ledger and storage is done by one server at a time, when
 * several share the ledger: 1 when this handle now holds the sweep lock (or held it
 * already), 0 when another holder has it (skip the sweep), or a negative errno. SQLite: a
 * flock() on <path>.sweep; PostgreSQL: a session advisory lock (a lost connection drops it).
 * unlock releases it (no-op when not held). */
int hu_ledger_try_sweep_lock(hu_ledger *l);
void hu_ledger_sweep_unlock(hu_ledger *l);

/* A slot's reservation. Its bytes count against the quota until held_until (a short
 * reservation_time: a slot nobody uses soon stops holding quota); the row itself, with the
 * file's retention, lives until the token expires (expires), when an upload can no longer
 * start. */
typedef struct {
    const char *path; /* P: slot/filename */
    const char *user; /* bare JID */
    uint64_t size;
    int64_t held_until;
    int64_t expires;
    hu_retention retention;
} hu_reservation;

/* Slot grant, in one transaction (SQLite: IMMEDIATE; PostgreSQL: the user's usage row locked
 * first): settles the user's holds that lapsed since the last grant, then requires
 * used + held + size <= quota (a per-user override replaces default_quota; quota 0 =
 * unlimited) and inserts the reservation and an audit row. On -EDQUOT, *retry_at is the
 * earliest time a held reservation lapses (0 when none will free anything), and a "refused"
 * audit row is written. */
int hu_ledger_reserve(hu_ledger *l, const hu_reservation *r, int64_t now, uint64_t default_quota,
                      int64_t *retry_at);

/* Group grant: n grants in one transaction, each made as hu_ledger_reserve would, in turn
 * (a grant's quota check sees the grants before it). results[i]: 0, or for that grant alone
 * -EDQUOT (retry_at[i] set, its "refused" row written) or -EEXIST; any other failure fails
 * them all (every result is that error, nothing is applied) and is returned. */
int hu_ledger_reserve_all(hu_ledger *l, const hu_reservation *r, size_t n, int64_t now,
                          uint64_t default_quota, int *results, int64_t *retry_at);

typedef struct {
    const char *path;        /* P: slot/filename (relative to storage_dir) */
    const char *user;        /* bare JID, or NULL for legacy uploads */
    uint64_t size;
    const char *content_type;
    const char *sha256_hex;
    int64_t created;         /* Unix seconds */
    int64_t expires;         /* 0 = never (retention.h) */
    const char *source_ip;
    const char *scheme;      /* "bearer", "v1", "v2", "token" */
    /* Media metadata computed from the bytes at upload (c_src/media), as in the file's
     * record (file_meta.h): */
    const char *media_type;  /* the type the bytes say (libmagic); NULL = not probed */
    int type_ok;             /* 1 the signed type matches it, 0 it does not, -1 not known
                                (recorded only with a media_type: without one, not known) */
    uint32_t width, height;  /* an image's size; 0 = not an image we decode, or unknown */
    const char *blurhash;    /* NULL = none */
    int thumbnail;           /* 1 when a thumbnail was stored */
} hu_stored_file;

/* Upload completion, in one transaction: deletes the reservation for f->path (if any), inserts
 * the stored-file row, moves its bytes from the user's held sum to the stored one, writes an
 * "upload" audit row. Called after the file is durable, before the 201. -EEXIST when the path
 * is recorded already. */
int hu_ledger_commit_upload(hu_ledger *l, const hu_stored_file *f);

/* One completion of a group commit (hu_ledger_complete). */
typedef struct {
    hu_stored_file file;
    /* An upload whose slot was not claimed when it started (a small body the server took
     * whole, then stored in one go) is claimed here, in the same transaction, before its row:
     * as hu_ledger_claim(file.path, file.user, file.size, claim_until, now, default_quota),
     * and that claim must find `retention` (what the file was stored with, read beforehand
     * with hu_ledger_retention). */
    int claim;
    int64_t claim_until;
    uint64_t default_quota;
    hu_retention retention;
    /* out: 0, or for this completion alone -EEXIST (path recorded already), -EINVAL, -EDQUOT
     * (claim refused: no row; the "refused" audit row stays), -ESTALE (the reservation
     * changed since it was read: no row; the claim's hold stays, as for any claimed upload
     * that failed later) */
    int result;
} hu_completion;

/* Group commit: n completions in one transaction (one WAL commit, one PostgreSQL COMMIT),
 * each with its own result; any other failure fails them all (every result is that error,
 * nothing is recorded) and is also returned. */
int hu_ledger_complete(hu_ledger *l, hu_completion *c, size_t n, int64_t now);

/* The retention the reservation of (path, user, size) whose token is unexpired at now was
 * granted with (the default when there is none), as a claim would find it: a read, no
 * transaction of its own. */
int hu_ledger_retention(hu_ledger *l, const char *path, const char *user, uint64_t size,
                        int64_t now, hu_retention *out);

/* Bytes stored and held in reservations at now by user, and the quota that applies. */
int hu_ledger_usage(hu_ledger *l, const char *user, int64_t now, uint64_t default_quota,
                    uint64_t *used, uint64_t *reserved, uint64_t *quota);

/* Per-user quota override; clear restores the default. */
int hu_ledger_set_quota(hu_ledger *l, const char *user, uint64_t quota);
int hu_ledger_clear_quota(hu_ledger *l, const char *user);

/* Removes a stored-file row (the caller unlinks the file) and audits it with reason. */
int hu_ledger_delete_file(hu_ledger *l, const char *path, const char *reason);

/* Appends one audit row: event is "grant", "upload", "refused", "download", "delete", ...;
 * user and path may be NULL; detail is free text (may be NULL). */
int hu_ledger_audit(hu_ledger *l, int64_t now, const char *event, const char *user,
                    const char *path, uint64_t size, const char *detail);

/* The earliest time one of user's held reservations lapses (0 when none): the <retry stamp>. */
int hu_ledger_retry_at(hu_ledger *l, const char *user, int64_t now, int64_t *at);

/* An upload starts on a slot: its reservation (path, user, size, token unexpired) is held
 * until `until` (the token's expiry: a cut upload keeps its bytes for tus until then), and
 * *retention is the one the grant chose. A reservation whose hold lapsed is held again only
 * if the quota still allows; one that is missing (or made for another user or size) is made
 * again as a grant would, with the default retention. -EDQUOT when the bytes no longer fit
 * (the upload is refused; a "refused" audit row says why). One transaction, locked as a
 * grant's: race-free with grants and other uploads. */
int hu_ledger_claim(hu_ledger *l, const char *path, const char *user, uint64_t size,
                    int64_t until, int64_t now, uint64_t default_quota, hu_retention *retention);

/* Drops the reservation of path (a slot whose upload was refused or will never come). */
int hu_ledger_release(hu_ledger *l, const char *path);

/* Row callbacks: return non-zero to stop. Strings are valid during the call only. */
typedef int (*hu_ledger_file_cb)(void *ctx, const hu_stored_file *f);
int hu_ledger_list_files(hu_ledger *l, const char *user /* NULL = all */, hu_ledger_file_cb cb,
                         void *ctx);
/* Files whose expires is set and <= now. */
int hu_ledger_expired_files(hu_ledger *l, int64_t now, hu_ledger_file_cb cb, void *ctx);
/* One file by path; -ENOENT when there is no such row. */
int hu_ledger_get_file(hu_ledger *l, const char *path, hu_ledger_file_cb cb, void *ctx);

typedef struct {
    int64_t id, at;
    const char *event, *user, *path, *detail;
    uint64_t size;
} hu_audit_entry;
typedef int (*hu_ledger_audit_cb)(void *ctx, const hu_audit_entry *e);
/* Newest first; user NULL = everybody. */
int hu_ledger_audit_recent(hu_ledger *l, const char *user, unsigned limit, hu_ledger_audit_cb cb,
                           void *ctx);

/* Deletes reservations whose token expired (the maintenance timer's job: a grant never scans
 * them); returns how many, or a negative errno. */
int hu_ledger_purge_reservations(hu_ledger *l, int64_t now);

#endif
