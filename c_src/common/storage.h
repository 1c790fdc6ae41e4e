/* The storage directory (layout 2). Blocking calls, meant for libuv's thread pool, a dirty NIF
 * scheduler, or start-up. Shared by the server and the NIF: one implementation of the layout.
 *
 *   <storage_dir>/files/<k0k1>/<key>  published uploads, and nothing else: the served tree.
 *                                     key = hex(sha256(P)), P = "<slot>/<filename>" (or a
 *                                     legacy multi-segment path); k0k1 = its first two digits.
 *                                     The user's file name never becomes a file name here, so
 *                                     no name can escape the tree or collide with our state.
 *   <storage_dir>/state/              the server's own state, never reachable by a URL:
 *       partial/<key>                 an upload in progress, or a cut one kept for resumption
 *       meta/<key>                    metadata records where the file system has no user
 *                                     xattrs (storage_meta.h)
 *       thumbs/<key>                  an image's thumbnail (WebP), served at its URL with
 *                                     ?thumbnail while the file is; derived data, not fsynced
 *                                     (after a crash it may be missing: 404, never partial)
 *       secret, ledger.sqlite3        default secret file and ledger of new installs
 *       layout                        "2" once storage_migrate.c has converted layout 1
 *
 * Every published file carries its metadata record (file_meta.h), which names its path P: a
 * file is served only when that record exists and names the requested P. Publishing follows
 * redis/nginx: data + record fsync -> link() into files/ (never overwrites: the link is the
 * commit point, EEXIST = slot used) -> directory fsync. A failed upload leaves nothing. */
#ifndef HU_STORAGE_H
#define HU_STORAGE_H

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>

#include "file_meta.h"

#define HU_STORAGE_KEY_LEN 64
#define HU_STORAGE_LAYOUT 2

typedef struct {
    int dirfd;   /* storage_dir, O_DIRECTORY */
    int filesfd; /* files/ */
    int statefd; /* state/ */
    int partfd;  /* state/partial */
    int metafd;  /* state/meta */
    int thumbfd; /* state/thumbs */
    int do_fsync;
    /* 256 bits: the shards whose own entry in files/ this process has synced (or made and
     * synced), so an upload's name never rests on a shard directory another thread or
     * server has just made and not yet synced */
    uint8_t *synced_shards;
} hu_storage;

/* Opens storage_dir, creating it and the layout's directories if needed (mode 0750). Does not
 * migrate an older layout: see hu_storage_migrate (storage_migrate.h). */
int hu_storage_open(const char *dir, int do_fsync, hu_storage *s);
void hu_storage_close(hu_storage *s);

/* hex(sha256(P)) + NUL */
void hu_storage_key(const char *path, size_t len, char key[HU_STORAGE_KEY_LEN + 1]);

/* 1 if key names a published file, 0 if not, or a negative errno. */
int hu_storage_exists(const hu_storage *s, const char *key);

/* An upload's file is locked while a request writes it: an OFD write lock (fcntl
 * F_OFD_SETLK, whole file) on the descriptor hu_storage_begin returns, held until
 * hu_storage_publish or hu_storage_abort closes it (or the process dies). OFD locks hold
 * across processes and map to NFSv4 and CephFS byte-range locks, so the servers sharing a
 * storage directory see each other's: a named partial that is locked is never resumed,
 * started over, swept or removed by anyone else. */

/* The file an upload writes to, locked. With truncate (a PUT, also the retry of a cut one)
 * any kept partial of key is dropped and the new file is anonymous (O_TMPFILE: no name to
 * create or remove, which is most of the cost of a small upload; *named_out = 0); otherwise
 * the named partial file of key is opened for a tus resume and *offset_out is its length.
 * -EBUSY when a request (of any server sharing the storage) is writing the partial of key;
 * -ENOENT when there is none to resume. */
int hu_storage_begin(const hu_storage *s, const char *key, int truncate, int *fd_out,
                     uint64_t *offset_out, int *named_out);

/* 1 when a request (of this or another server) holds the lock of key's named partial, 0
 * when not (or when there is none), or a negative errno. */
int hu_storage_partial_busy(const hu_storage *s, const char *key);

/* Gives an anonymous upload file its state/partial/<key> name, so it can be resumed.
 * -EBUSY when another request's partial holds that name. */
int hu_storage_name_partial(const hu_storage *s, const char *key, int fd);

/* Resumption state of a named partial upload (written when it is cut, or up front for large
 * ones): signed size, type, user, the token's expiry. fd may be -1 (opened by name). */
int hu_storage_save_resume(const hu_storage *s, const char *key, int fd, const hu_file_meta *m);

/* Reads the resumption state and the partial file's length; -ENOENT when there is none. */
int hu_storage_load_resume(const hu_storage *s, const char *key, hu_file_meta *m,
                           uint64_t *offset);

/* What a sweep of state/partial did. */
typedef struct {
    int removed; /* partial uploads (and their state) removed */
    int strays;  /* leftover temp or state files of ours removed */
    int unknown; /* entries not named by our scheme, left alone */
} hu_sweep_report;

/* Several servers may share one storage directory (a cluster, or a rolling restart): what
 * looks like a crash's leftover may be another server's work in progress. Sweeps that judge by
 * "no state" or "no file" (orphans, strays, records) therefore touch only entries whose mtime
 * is before settled_before, a time the caller chooses well past any server's idle and ledger
 * timeouts (maintenance.c); INT64_MAX takes every entry. */

/* Removes partial uploads whose token expired before now and, with leftovers (the start-up
 * checks, after a crash), partial files without valid resumption state (nobody can resume
 * those) and leftover temp and state files of ours. A partial a request of any server holds
 * locked is never removed; skip(key, ctx) protects keys a request of this process is working
 * on besides. Only names of our own scheme are touched. */
int hu_storage_sweep_partials(const hu_storage *s, int64_t now, int leftovers, int64_t settled_before,
                              int (*skip)(const char *key, void *ctx), void *ctx,
                              hu_sweep_report *report);

/* At start-up: removes sidecar records in state/meta whose file is not in files/ (a crash
 * between the record and the link), half-written ones, and thumbnails whose file is gone.
 * Returns how many. */
int hu_storage_sweep_records(const hu_storage *s, int64_t settled_before);

/* Stores the thumbnail of key (replacing any); no fsync (storage.h). */
int hu_storage_put_thumbnail(const hu_storage *s, const char *key, const void *buf, size_t len);

/* Opens the thumbnail of key: fd and its stat; -ENOENT when there is none. */
int hu_storage_open_thumbnail(const hu_storage *s, const char *key, int *fd_out, struct stat *st);

/* The sha256 of the partial file, read back (for resumed uploads, whose bytes arrived in
 * several requests). */
int hu_storage_hash_partial(const hu_storage *s, const char *key, char hex[65]);

/* Writes all of buf at off; -ENOSPC/-EDQUOT/-EIO as the kernel says. */
int hu_storage_write(int fd, const char *buf, size_t len, uint64_t off);

/* A sidecar record (no xattrs) without its file, younger than this, may be another server's
 * publish in progress (record first, link next): left alone. */
#define HU_STORAGE_RECORD_SETTLE_S 600

/* Makes the upload file (open as fd, fully written; named or anonymous) the published file
 * with record m (m->path is P; key must be its key), durable with its name (file, then its
 * shard directory, when fsync is on). Closes fd (its lock goes after the partial name). On
 * failure the partial file is removed and nothing is visible (a name whose directory could
 * not be synced is taken back); -EEXIST when key was published meanwhile, -EBUSY when
 * another server is publishing it (its sidecar record is there, its file not yet). */
int hu_storage_publish(const hu_storage *s, const char *key, int fd, int named,
                       const hu_file_meta *m);

/* Drops an upload: unlinks the partial file of key and its state, then closes fd. With fd
 * (the upload's own file) only when that file has the name; without (-1) only when no
 * request holds the partial's lock. */
void hu_storage_abort(const hu_storage *s, const char *key, int fd);

/* Removes a published file and its record (expiry, deletion, or a failed ledger commit). */
int hu_storage_unpublish(const hu_storage *s, const char *key);

/* Opens the published file of path P for reading, with its record: fills st and m. -ENOENT
 * unless a regular file of key exists and its record names exactly P (the allow-list: only
 * what an upload published is ever served). */
int hu_storage_open_file(const hu_storage *s, const char *path, size_t len, int *fd_out,
                         struct stat *st, hu_file_meta *m);

/* Calls cb for every entry of files/: key is NULL for a name not of our scheme (rel is the
 * name relative to files/); m is NULL when the file has no valid record naming its key.
 * cb returns non-zero to stop. Returns how many entries were seen, or a negative errno. */
typedef int (*hu_storage_file_cb)(void *ctx, const char *rel, const char *key,
                                  const hu_file_meta *m, const struct stat *st);
int hu_storage_each_file(const hu_storage *s, hu_storage_file_cb cb, void *ctx);

/* 1 when name is 64 lowercase hex digits (a key), else 0. */
int hu_storage_is_key(const char *name);

/* 1 when name is a key followed by exactly suffix ("" for a bare key); key gets the key. */
int hu_storage_key_name(const char *name, const char *suffix, char key[HU_STORAGE_KEY_LEN + 1]);

/* Directory walking for this file and storage_migrate.c: a stream over dirfd/rel (rel NULL:
 * dirfd itself, from its start), or NULL with errno set; and its next entry other than "."
 * and "..". */
DIR *hu_storage_opendir(int dirfd, const char *rel);
struct dirent *hu_storage_readdir(DIR *d);

/* Where a state file lives by default: <storage_dir>/state/<name>, or <storage_dir>/<name>
 * when that exists and the state/ one does not (installs from before layout 2 keep their
 * secret and ledger where they are; neither is under files/). out gets the path. */
int hu_storage_default_path(const char *storage_dir, const char *name, char *out, size_t cap);

#endif
