/* Inside the ledger: what a backend (ledger_sqlite.c, ledger_pg.c) provides to the front
 * (ledger.c). Callers see ledger.h only. A backend's handle starts with struct hu_ledger; the
 * front checks the arguments every backend would refuse alike, then calls the backend's op. */
#ifndef HU_LEDGER_BACKEND_H
#define HU_LEDGER_BACKEND_H

#include "ledger.h"

typedef struct hu_ledger_ops {
    void (*close)(hu_ledger *l);
    /* each result: 0, -EDQUOT or -EEXIST; any other failure returned */
    int (*reserve)(hu_ledger *l, const hu_reservation *r, size_t n, int64_t now,
                   uint64_t default_quota, int *results, int64_t *retry_at);
    /* each result: 0 or one of hu_completion's own failures; any other failure returned */
    int (*complete)(hu_ledger *l, hu_completion *c, size_t n, int64_t now);
    int (*retention)(hu_ledger *l, const char *path, const char *user, uint64_t size,
                     int64_t now, hu_retention *out);
    int (*usage)(hu_ledger *l, const char *user, int64_t now, uint64_t default_quota,
                 uint64_t *used, uint64_t *reserved, uint64_t *quota);
    int (*set_quota)(hu_ledger *l, const char *user, uint64_t quota);
    int (*clear_quota)(hu_ledger *l, const char *user);
    int (*delete_file)(hu_ledger *l, const char *path, const char *reason);
    int (*audit)(hu_ledger *l, int64_t now, const char *event, const char *user,
                 const char *path, uint64_t size, const char *detail);
    int (*retry_at)(hu_ledger *l, const char *user, int64_t now, int64_t *at);
    int (*claim)(hu_ledger *l, const char *path, const char *user, uint64_t size, int64_t until,
                 int64_t now, uint64_t default_quota, hu_retention *retention);
    int (*release)(hu_ledger *l, const char *path);
    int (*list_files)(hu_ledger *l, const char *user, hu_ledger_file_cb cb, void *ctx);
    int (*expired_files)(hu_ledger *l, int64_t now, hu_ledger_file_cb cb, void *ctx);
    int (*get_file)(hu_ledger *l, const char *path, hu_ledger_file_cb cb, void *ctx);
    int (*audit_recent)(hu_ledger *l, const char *user, unsigned limit, hu_ledger_audit_cb cb,
                        void *ctx);
    int (*purge_reservations)(hu_ledger *l, int64_t now);
    int (*try_sweep_lock)(hu_ledger *l);
    void (*sweep_unlock)(hu_ledger *l);
} hu_ledger_ops;

struct hu_ledger {
    const hu_ledger_ops *ops;
    char errmsg[256];
};

/* A stored-file row's columns, in the order both backends insert them and every file-row
 * read (list, expired, get) returns them ("user" quoted: a reserved word in PostgreSQL).
 * The media columns (schema v4) are NULL where nothing is known: a file recorded before v4,
 * or never probed; width and height are NULL for 0, type_ok for -1. */
#define HU__LEDGER_FILE_COLS                                                                   \
    "path, \"user\", size, content_type, sha256, created, expires, source_ip, scheme,"          \
    " media_type, type_ok, width, height, blurhash, thumbnail"
enum {
    HU__FC_PATH,
    HU__FC_USER,
    HU__FC_SIZE,
    HU__FC_CONTENT_TYPE,
    HU__FC_SHA256,
    HU__FC_CREATED,
    HU__FC_EXPIRES,
    HU__FC_SOURCE_IP,
    HU__FC_SCHEME,
    HU__FC_MEDIA_TYPE,
    HU__FC_TYPE_OK,
    HU__FC_WIDTH,
    HU__FC_HEIGHT,
    HU__FC_BLURHASH,
    HU__FC_THUMBNAIL,
    HU__FC_COUNT
};

/* The quota rule both backends apply: 1 when used + reserved + size exceeds quota (0 =
 * unlimited; compared without overflow), with detail (cap bytes) saying why for the audit row;
 * 0 when it fits. */
int hu__ledger_over_quota(uint64_t used, uint64_t reserved, uint64_t size, uint64_t quota,
                          char *detail, size_t cap);

/* 1 when rc is a failure a completion can have alone (hu_completion's result), leaving the
 * rest of its group to commit; 0 for success and for failures that fail the group. */
int hu__ledger_own_failure(int rc);

/* Each sets *out (also on failure, so the caller can read errmsg; it must still close it) and
 * returns 0 or a negative errno. */
int hu__ledger_sqlite_open(const char *path, hu_ledger **out);
int hu__ledger_pg_open(const char *conninfo, hu_ledger **out);

#endif
