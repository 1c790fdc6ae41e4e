/* The storage directory. Blocking calls, meant for libuv's thread pool (or start-up).
 *
 *   <storage_dir>/<P>                 published files (P = "<slot>/<filename>", validated)
 *   <storage_dir>/.partial/<key>      an upload in progress; <key> = hex(sha256(P)), so one P
 *                                     has at most one upload in flight (O_EXCL)
 *   <storage_dir>/.partial/<key>.meta its metadata until published
 *   <storage_dir>/.meta/<key>         metadata of a published file (file_meta.h)
 *
 * Publishing follows redis/nginx: data fsync -> link() into place (never overwrites: the link
 * is the commit point, EEXIST = slot used) -> metadata rename -> directory fsync. A file is
 * visible only when complete; a failed upload unlinks its partial file. */
#ifndef HU_STORAGE_H
#define HU_STORAGE_H

#include <stdint.h>
#include <sys/stat.h>

#include "file_meta.h"

#define HU_STORAGE_KEY_LEN 64

typedef struct {
    int dirfd;   /* storage_dir, O_DIRECTORY */
    int partfd;  /* .partial */
    int metafd;  /* .meta */
    int do_fsync;
} hu_storage;

/* Opens (creating if needed) storage_dir and its hidden subdirectories. */
int hu_storage_open(const char *dir, int do_fsync, hu_storage *s);
void hu_storage_close(hu_storage *s);

/* hex(sha256(P)) + NUL */
void hu_storage_key(const char *path, size_t len, char key[HU_STORAGE_KEY_LEN + 1]);

/* 1 if P is published, 0 if not, or a negative errno. */
int hu_storage_exists(const hu_storage *s, const char *path);

/* Creates the partial file for key; -EBUSY when an upload of the same P is in flight. */
int hu_storage_begin(const hu_storage *s, const char *key, int *fd_out);

/* Writes all of buf at off; -ENOSPC/-EDQUOT/-EIO as the kernel says. */
int hu_storage_write(int fd, const char *buf, size_t len, uint64_t off);

/* Makes the partial file (open as fd, fully written) the published file P with meta m.
 * Closes fd. On failure the partial file is removed and nothing is visible;
 * -EEXIST when P was published meanwhile. */
int hu_storage_publish(const hu_storage *s, const char *key, int fd, const char *path,
                       const hu_file_meta *m);

/* Drops an upload in progress: closes fd (if >= 0) and unlinks the partial file. */
void hu_storage_abort(const hu_storage *s, const char *key, int fd);

/* Opens a published file for reading; fills st. -ENOENT when absent (or not a regular file). */
int hu_storage_open_file(const hu_storage *s, const char *path, int *fd_out, struct stat *st);

/* Reads the metadata of P; -ENOENT when there is none. */
int hu_storage_read_meta(const hu_storage *s, const char *path, hu_file_meta *m);

#endif
