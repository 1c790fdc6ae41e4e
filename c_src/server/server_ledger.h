/* The server's use of the ledger (ledger.h): one handle per settings generation, guarded by
 * a mutex because thread-pool jobs of different connections use it. ledger_path: "none"
 * disables it (benchmarks measure its cost that way). */
#ifndef HU_SERVER_LEDGER_H
#define HU_SERVER_LEDGER_H

#include <uv.h>

#include "file_meta.h"
#include "ledger.h"
#include "storage.h"

/* A completion for the group commit (hu_server_ledger_record): the caller's, kept alive
 * until its callback has run. */
typedef struct hu_server_record hu_server_record;
struct hu_server_record {
    const char *key;  /* the published file's storage key */
    hu_completion c;  /* its row (strings the caller's), and a claim to make with it */
    void (*cb)(void *arg, int rc);
    void *arg;
    hu_server_record *next;
};

typedef struct {
    hu_ledger *ledger; /* NULL when disabled */
    uv_mutex_t lock;   /* the ledger handle's */
    /* A second handle for the reads an upload makes before its completion (the retention):
     * they never wait behind a group commit's transaction, which holds lock throughout. */
    hu_ledger *reader;
    uv_mutex_t read_lock;
    /* group commit, on the loop thread: completions waiting for the next commit, and the
     * group being committed on the thread pool */
    hu_server_record *queue, **queue_tail, *group;
    int committing;
    uv_work_t work;
    const hu_storage *storage;
} hu_server_ledger;

/* Opens cfg's ledger (or nothing for "none"): two handles (two PostgreSQL connections); one
 * error line into err. */
int hu_server_ledger_open(hu_server_ledger *sl, const char *path, char *err, size_t errlen);
void hu_server_ledger_close(hu_server_ledger *sl);

/* The upload's file is durable and linked under r->key, its name durable: record r->c
 * (dropping its reservation; claiming it first when r->c.claim is set), then call
 * r->cb(r->arg, rc) on the loop thread (at once, with 0, without a ledger): 0 means the upload
 * may be acknowledged; otherwise the
 * file was taken back (unpublished): -EDQUOT the claim was refused, -ESTALE the reservation
 * changed since its retention was read (try again), or the ledger's or the disk's error.
 * Group commit: completions that arrive while a commit runs (on the thread pool) wait for
 * the next one, which records them all in one ledger transaction (the window is the length
 * of one commit: no timer, no added latency when idle); no thread waits meanwhile. From the
 * loop thread; st is the storage of every completion of sl. */
void hu_server_ledger_record(hu_server_ledger *sl, uv_loop_t *loop, const hu_storage *st,
                             hu_server_record *r);

/* The ledger row of a published file from its record (the completion's and the start-up
 * adoption's): path and user as the caller knows them, size as stored, source_ip or NULL.
 * The strings stay m's and the caller's. */
hu_stored_file hu_server_ledger_row(const hu_file_meta *m, const char *path, const char *user,
                                    uint64_t size, const char *source_ip);

/* An upload starts on a slot: claims (or makes again) its reservation and learns the file's
 * retention (ledger.h); without a ledger, the default retention. Blocking. */
int hu_server_ledger_claim(hu_server_ledger *sl, const char *path, const char *user,
                           uint64_t size, int64_t until, uint64_t default_quota,
                           hu_retention *retention);

/* The retention of the reservation an upload will claim with its completion (ledger.h:
 * hu_ledger_retention); without a ledger, the default. Blocking. */
int hu_server_ledger_retention(hu_server_ledger *sl, const char *path, const char *user,
                               uint64_t size, hu_retention *retention);

/* An audit row; blocking; errors are logged, not returned (auditing never fails a request). */
void hu_server_ledger_audit(hu_server_ledger *sl, const char *event, const char *user,
                            const char *path, uint64_t size, const char *detail);

#endif
