/* The server's use of the ledger (ledger.h): one handle per settings generation, guarded by
 * a mutex because thread-pool jobs of different connections use it. ledger_path: "none"
 * disables it (benchmarks measure its cost that way). */
#ifndef HU_SERVER_LEDGER_H
#define HU_SERVER_LEDGER_H

#include <uv.h>

#include "file_meta.h"
#include "ledger.h"
#include "storage.h"

typedef struct hu_queued_completion hu_queued_completion;

typedef struct {
    hu_ledger *ledger; /* NULL when disabled */
    uv_mutex_t lock;   /* the ledger handle's */
    /* A second handle for the reads an upload makes before its completion (the retention):
     * they never wait behind a group commit's transaction, which holds lock throughout. */
    hu_ledger *reader;
    uv_mutex_t read_lock;
    /* group commit (hu_server_ledger_complete): completions waiting for the next commit */
    uv_mutex_t queue_lock;
    uv_cond_t committed;
    hu_queued_completion *queue;
    int committing;
} hu_server_ledger;

/* Opens cfg's ledger (or nothing for "none"): two handles (two PostgreSQL connections); one
 * error line into err. */
int hu_server_ledger_open(hu_server_ledger *sl, const char *path, char *err, size_t errlen);
void hu_server_ledger_close(hu_server_ledger *sl);

/* A claim an upload did not make when it started (a small body taken whole: upload.c), made
 * with its completion instead. */
typedef struct {
    int64_t until;          /* the token's expiry */
    uint64_t default_quota;
    hu_retention retention; /* the file was stored with (hu_server_ledger_retention) */
} hu_server_claim;

/* The upload's file is durable and linked under key: make its name durable and record it
 * (dropping its reservation; claiming it first when claim is not NULL), then return; 0 means
 * the upload may be acknowledged. Blocking, from a thread-pool job. Group commit: completions
 * that arrive while a commit runs wait for the next one, which syncs their shard directories
 * once each and records them all in one ledger transaction (the window is the length of one
 * commit: no timer, no added latency when idle). -EDQUOT: the claim was refused; -ESTALE: the
 * reservation changed since its retention was read (try again). */
int hu_server_ledger_complete(hu_server_ledger *sl, const hu_storage *st, const char *key,
                              const hu_stored_file *f, const hu_server_claim *claim);

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
