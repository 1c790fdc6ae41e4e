#include "storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "sha256_md.h"
#include "storage_meta.h"

/* files/<k0k1>/<key>: "ab/" + 64 digits */
#define REL_LEN (3 + HU_STORAGE_KEY_LEN)

static void rel_name(const char *key, char rel[REL_LEN + 1]) {
    snprintf(rel, REL_LEN + 1, "%.2s/%.64s", key, key);
}

/* The sidecar of a partial upload's resumption state (file systems without user xattrs). */
static void resume_sidecar(const char *key, char out[HU_STORAGE_KEY_LEN + 8]) {
    snprintf(out, HU_STORAGE_KEY_LEN + 8, "%.64s.tus", key);
}

static int open_subdir(int dirfd, const char *name, int *out) {
    if (mkdirat(dirfd, name, 0750) < 0 && errno != EEXIST)
        return -errno;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *out = fd;
    return 0;
}

int hu_storage_open(const char *dir, int do_fsync, hu_storage *s) {
    s->dirfd = s->filesfd = s->statefd = s->partfd = s->metafd = s->thumbfd = -1;
    s->do_fsync = do_fsync;
    /* every failure goes through hu_storage_close below: nothing opened or allocated leaks */
    s->synced_shards = calloc(32, 1);
    int rc = s->synced_shards == NULL ? -ENOMEM : 0;
    if (rc == 0 && mkdir(dir, 0750) < 0 && errno != EEXIST)
        rc = -errno;
    if (rc == 0 && (s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        rc = -errno;
    if (rc == 0)
        rc = open_subdir(s->dirfd, "files", &s->filesfd);
    if (rc == 0)
        rc = open_subdir(s->dirfd, "state", &s->statefd);
    if (rc == 0)
        rc = open_subdir(s->statefd, "partial", &s->partfd);
    if (rc == 0)
        rc = open_subdir(s->statefd, "meta", &s->metafd);
    if (rc == 0)
        rc = open_subdir(s->statefd, "thumbs", &s->thumbfd);
    if (rc < 0)
        hu_storage_close(s);
    return rc;
}

void hu_storage_close(hu_storage *s) {
    int *fds[] = {&s->dirfd, &s->filesfd, &s->statefd, &s->partfd, &s->metafd, &s->thumbfd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
    free(s->synced_shards);
    s->synced_shards = NULL;
}

void hu_storage_key(const char *path, size_t len, char key[HU_STORAGE_KEY_LEN + 1]) {
    uint8_t md[SHA256_DIGEST_LENGTH];
    if (EVP_Digest(path, len, md, NULL, hu_sha256_md(), NULL) != 1)
        SHA256((const uint8_t *)path, len, md); /* the legacy path, fetching again */
    hu_hex_encode(md, sizeof md, key);
}

/* name is exactly n lowercase hex digits */
static int is_hex(const char *name, size_t n) {
    size_t i = 0;
    for (; name[i] != '\0'; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return 0;
    return i == n;
}

int hu_storage_is_key(const char *name) { return is_hex(name, HU_STORAGE_KEY_LEN); }

DIR *hu_storage_opendir(int dirfd, const char *rel) {
    int fd = rel ? openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                 : fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL && fd >= 0) {
        int err = errno;
        close(fd);
        errno = err;
    }
    if (d != NULL)
        rewinddir(d); /* a dup shares its offset with dirfd: start from the top */
    return d;
}

struct dirent *hu_storage_readdir(DIR *d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            return e;
    return NULL;
}

int hu_storage_exists(const hu_storage *s, const char *key) {
    char rel[REL_LEN + 1];
    struct stat st;
    rel_name(key, rel);
    if (fstatat(s->filesfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
}

/* The lock of an upload's file (storage.h): an OFD write lock on the whole file, taken
 * without waiting. -EBUSY when another open file (any process) holds one. A file system
 * without OFD locks (an NFS mount with nolock keeps them local; an old kernel) is taken as
 * it is: the lock guards against other servers only where they can see it. */
static int lock_upload(int fd) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    if (errno == EAGAIN || errno == EACCES)
        return -EBUSY;
    return errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP ? 0 : -errno;
}

/* 1 when state/partial/<key> names the file open as fd; with sole, only when that is its
 * one name (not published meanwhile). */
static int named_as(const hu_storage *s, const char *key, int fd, int sole) {
    struct stat a, b;
    return fstat(fd, &a) == 0 && fstatat(s->partfd, key, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino && (!sole || a.st_nlink == 1);
}

/* The named partial of key, opened read-write and locked; -ENOENT when there is none,
 * -EBUSY when a request (of any server) holds it. With sole (to write into it), only while
 * the partial name is its one name: not a published file. */
static int open_partial_locked(const hu_storage *s, const char *key, int sole, int *fd_out) {
    int fd = openat(s->partfd, key, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = lock_upload(fd);
    /* locked after its writer let go: it may have been published or started over since */
    if (rc == 0 && !named_as(s, key, fd, sole))
        rc = -EBUSY;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* Removes the named partial of key and its resumption state, unless a request of any
 * server is writing it (-EBUSY). With fd (the caller's own locked upload file), only when
 * the name is that file's (an anonymous upload leaves another's partial alone); fd is closed
 * after the unlink, so its lock covers it. */
static int drop_partial(const hu_storage *s, const char *key, int fd) {
    char side[HU_STORAGE_KEY_LEN + 8];
    resume_sidecar(key, side);
    int rc = 0;
    /* by name: also a partial name left beside its published file (a crash right after the
     * link), of which only that name goes */
    if (fd < 0 && (rc = open_partial_locked(s, key, 0, &fd)) == -EBUSY)
        return rc;
    /* without fd now: no partial (at most the state of one that is gone), or a name nobody
     * can open and lock, so nobody writes it */
    if (fd < 0 || named_as(s, key, fd, 0)) {
        if (rc != -ENOENT)
            unlinkat(s->partfd, key, 0);
        unlinkat(s->partfd, side, 0);
    }
    if (fd >= 0)
        close(fd);
    return 0;
}

int hu_storage_partial_busy(const hu_storage *s, const char *key) {
    int fd = openat(s->partfd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int rc = fcntl(fd, F_OFD_GETLK, &fl) == 0 ? fl.l_type != F_UNLCK
             : errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP ? 0 : -errno;
    close(fd);
    return rc;
}

int hu_storage_begin(const hu_storage *s, const char *key, int truncate, int *fd_out,
                     uint64_t *offset_out, int *named_out) {
    int fd, rc;
    struct stat st;
    *offset_out = 0;
    if (truncate) {
        /* start over: a kept partial of this slot (and its state) goes, unless a request
         * (here or on another server) is still writing it */
        if ((rc = drop_partial(s, key, -1)) < 0)
            return rc;
        /* read-write: the media probe maps what was written (upload_media.c) */
        fd = openat(s->partfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0640);
        *named_out = fd >= 0 ? 0 : 1;
        if (fd < 0) { /* a file system without O_TMPFILE: a named partial file */
            fd = openat(s->partfd, key, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
            if (fd < 0 && errno == EEXIST)
                return -EBUSY; /* another request started this slot since */
        }
        if (fd < 0)
            return -errno;
        /* locked from the start: named later (hu_storage_name_partial), it is already */
        if ((rc = lock_upload(fd)) < 0) {
            close(fd);
            return rc;
        }
        *fd_out = fd;
        return 0;
    }
    *named_out = 1;
    if ((rc = open_partial_locked(s, key, 1, &fd)) < 0)
        return rc;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    *fd_out = fd;
    *offset_out = (uint64_t)st.st_size;
    return 0;
}

/* linkat() of an open file by its /proc/self/fd path: AT_EMPTY_PATH would need a capability. */
static int link_fd(int fd, int dirfd, const char *name) {
    char proc[40];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
}

int hu_storage_name_partial(const hu_storage *s, const char *key, int fd) {
    int rc = link_fd(fd, s->partfd, key);
    if (rc == -EEXIST) { /* a stale partial of the same slot, unless another request's */
        rc = drop_partial(s, key, -1);
        if (rc == 0)
            rc = link_fd(fd, s->partfd, key);
    }
    return rc;
}

int hu_storage_save_resume(const hu_storage *s, const char *key, int fd, const hu_file_meta *m) {
    char side[HU_STORAGE_KEY_LEN + 8];
    resume_sidecar(key, side);
    int own = fd < 0;
    if (own && (fd = openat(s->partfd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return -errno;
    int rc = hu_meta_put(fd, s->partfd, side, m, 0);
    if (own)
        close(fd);
    return rc < 0 ? rc : 0;
}

int hu_storage_load_resume(const hu_storage *s, const char *key, hu_file_meta *m,
                           uint64_t *offset) {
    char side[HU_STORAGE_KEY_LEN + 8];
    struct stat st;
    resume_sidecar(key, side);
    int fd = openat(s->partfd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : -errno;
    int rc = fstat(fd, &st) < 0 ? -errno : hu_meta_get(fd, s->partfd, side, m);
    close(fd);
    if (rc == 0)
        *offset = (uint64_t)st.st_size;
    return rc;
}

int hu_storage_key_name(const char *name, const char *suffix, char key[HU_STORAGE_KEY_LEN + 1]) {
    size_t n = strlen(name), sl = strlen(suffix);
    if (n != HU_STORAGE_KEY_LEN + sl || strcmp(name + HU_STORAGE_KEY_LEN, suffix) != 0)
        return 0;
    memcpy(key, name, HU_STORAGE_KEY_LEN);
    key[HU_STORAGE_KEY_LEN] = '\0';
    return hu_storage_is_key(key);
}

/* 1 when dirfd/name was last changed before `before` (Unix seconds): left alone that long, it
 * is nobody's work in progress (storage.h). */
static int settled(int dirfd, const char *name, int64_t before) {
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (int64_t)st.st_mtime < before;
}

int hu_storage_sweep_partials(const hu_storage *s, int64_t now, int leftovers, int64_t settled_before,
                              int (*skip)(const char *key, void *ctx), void *ctx,
                              hu_sweep_report *r) {
    memset(r, 0, sizeof *r);
    DIR *d = hu_storage_opendir(s->partfd, NULL);
    if (d == NULL)
        return -errno;
    struct dirent *e;
    char key[HU_STORAGE_KEY_LEN + 1];
    struct stat st;
    while ((e = hu_storage_readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (hu_storage_key_name(name, "", key)) {
            if (skip != NULL && skip(key, ctx))
                continue;
            hu_file_meta m;
            uint64_t off;
            int rc = hu_storage_load_resume(s, key, &m, &off);
            /* without its state: a crash's leftover, or a server (this one or another on the
             * same storage) between creating the file and saving its state */
            if ((rc == 0 && m.expires > 0 && m.expires < now) ||
                (rc < 0 && leftovers && settled(s->partfd, name, settled_before))) {
                /* never one a request (of any server) is writing: its lock says so */
                if (drop_partial(s, key, -1) == 0)
                    r->removed++;
            }
        } else if (hu_storage_key_name(name, ".tus", key) || hu_storage_key_name(name, ".tus.tmp", key)) {
            if (!leftovers)
                continue;
            /* state of a partial that is gone, or a half-written one nobody is writing */
            int stale = fstatat(s->partfd, key, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                        strcmp(name + HU_STORAGE_KEY_LEN, ".tus.tmp") == 0;
            if (stale && settled(s->partfd, name, settled_before) &&
                (skip == NULL || !skip(key, ctx)) && unlinkat(s->partfd, name, 0) == 0)
                r->strays++;
        } else {
            r->unknown++;
        }
    }
    closedir(d);
    return 0;
}

int hu_storage_sweep_records(const hu_storage *s, int64_t settled_before) {
    DIR *d = hu_storage_opendir(s->metafd, NULL);
    if (d == NULL)
        return 0;
    int removed = 0;
    struct dirent *e;
    char key[HU_STORAGE_KEY_LEN + 1];
    while ((e = hu_storage_readdir(d)) != NULL) {
        /* a record is written just before its file's link (hu_storage_publish): a young one
         * without a file may be another server's upload being published */
        int stale = (hu_storage_key_name(e->d_name, "", key) && hu_storage_exists(s, key) == 0) ||
                    hu_storage_key_name(e->d_name, ".tmp", key);
        if (stale && settled(s->metafd, e->d_name, settled_before) &&
            unlinkat(s->metafd, e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    /* thumbnails whose file is gone (a crash between the file's removal and theirs) */
    if ((d = hu_storage_opendir(s->thumbfd, NULL)) == NULL)
        return removed;
    while ((e = hu_storage_readdir(d)) != NULL)
        if (hu_storage_key_name(e->d_name, "", key) && hu_storage_exists(s, key) == 0 &&
            settled(s->thumbfd, e->d_name, settled_before) && unlinkat(s->thumbfd, e->d_name, 0) == 0)
            removed++;
    closedir(d);
    return removed;
}

int hu_storage_put_thumbnail(const hu_storage *s, const char *key, const void *buf, size_t len) {
    /* anonymous until complete, then linked: a reader never sees half a thumbnail */
    int fd = openat(s->thumbfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int rc = hu_storage_write(fd, buf, len, 0);
    if (rc == 0) {
        unlinkat(s->thumbfd, key, 0); /* a leftover of an upload of the same path */
        rc = link_fd(fd, s->thumbfd, key);
    }
    close(fd);
    return rc;
}

int hu_storage_open_thumbnail(const hu_storage *s, const char *key, int *fd_out, struct stat *st) {
    int fd = openat(s->thumbfd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    int rc = fstat(fd, st) < 0 ? -errno : S_ISREG(st->st_mode) ? 0 : -ENOENT;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int hu_storage_hash_partial(const hu_storage *s, const char *key, char hex[65]) {
    int fd = openat(s->partfd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = buf && ctx && EVP_DigestInit_ex(ctx, hu_sha256_md(), NULL) == 1 ? 0 : -ENOMEM;
    ssize_t n;
    while (rc == 0 && (n = read(fd, buf, CHUNK)) != 0) {
        if (n < 0)
            rc = errno == EINTR ? 0 : -errno;
        else if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
            rc = -EIO;
    }
    uint8_t md[32];
    unsigned len = 0;
    if (rc == 0 && EVP_DigestFinal_ex(ctx, md, &len) != 1)
        rc = -EIO;
    if (rc == 0)
        hu_hex_encode(md, len, hex);
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    return rc;
}

int hu_storage_write(int fd, const char *buf, size_t len, uint64_t off) {
    uint64_t start = off;
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    /* Start writeback of each completed 8 MiB window now, so the fsync before the 201 of a
     * large upload finds little left to flush (and dirty pages do not pile up). */
    const uint64_t window = 8u << 20;
    if (off / window > start / window) {
        uint64_t end = off / window * window;
        sync_file_range(fd, (off_t)(end - window), (off_t)window, SYNC_FILE_RANGE_WRITE);
    }
    return 0;
}

static int fsync_dir_at(int dirfd, const char *rel) {
    int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* The byte of s->synced_shards that holds the shard of key, and its bit there. */
static uint8_t *shard_bit(const hu_storage *s, const char *key, uint8_t *bit) {
    uint8_t v = 0;
    (void)hu_hex_decode(key, 2, &v, 1); /* a key is hex */
    *bit = (uint8_t)(1u << (v % 8));
    return &s->synced_shards[v / 8];
}

/* Whether the shard of key has a durable entry in files/ (this process synced it). */
static int shard_synced(const hu_storage *s, const char *key) {
    uint8_t bit, *b = shard_bit(s, key, &bit);
    return (__atomic_load_n(b, __ATOMIC_ACQUIRE) & bit) != 0;
}

static void mark_shard_synced(const hu_storage *s, const char *key) {
    uint8_t bit, *b = shard_bit(s, key, &bit);
    __atomic_fetch_or(b, bit, __ATOMIC_RELEASE);
}

/* link() the upload into files/<k0k1>/<key>, creating the shard directory on first use. */
static int link_published(const hu_storage *s, const char *key, int fd, int named) {
    char rel[REL_LEN + 1], shard[3] = {key[0], key[1], '\0'};
    rel_name(key, rel);
    for (int attempt = 0;; attempt++) {
        int rc = named ? (linkat(s->partfd, key, s->filesfd, rel, 0) < 0 ? -errno : 0)
                       : link_fd(fd, s->filesfd, rel);
        if (rc != -ENOENT || attempt > 0)
            return rc;
        if (mkdirat(s->filesfd, shard, 0750) < 0 && errno != EEXIST)
            return -errno;
        if (s->do_fsync && fsync(s->filesfd) < 0)
            return -errno;
        mark_shard_synced(s, key);
    }
}

/* The shard directory of key, synced: its new name durable; first, once per shard, the
 * shard's own entry in files/ (another thread or server may have just made it). Each upload
 * syncs its own, on its own pool thread: concurrent directory fsyncs overlap in the device
 * (and its flushes merge), where one thread syncing a group's shards one after the other
 * made every upload wait for the whole chain (4 KiB PUTs at 64 connections: 4,150 ->
 * 5,170/s). */
static int sync_shard(const hu_storage *s, const char *key) {
    if (!s->do_fsync)
        return 0;
    if (!shard_synced(s, key)) {
        if (fsync(s->filesfd) < 0)
            return -errno;
        mark_shard_synced(s, key);
    }
    char shard[3] = {key[0], key[1], '\0'};
    return fsync_dir_at(s->filesfd, shard);
}

int hu_storage_publish(const hu_storage *s, const char *key, int fd, int named,
                       const hu_file_meta *m) {
    int flags = HU_META_EXCL | (s->do_fsync ? HU_META_FSYNC : 0);
    /* The record first: on the inode (or as a sidecar) before the file has a public name. */
    int rc = hu_meta_put(fd, s->metafd, key, m, flags);
    if (rc == -EEXIST && hu_storage_exists(s, key) == 0) {
        /* A sidecar without its file: left by a crash before the link, or written by another
         * server publishing this slot right now (its link to come). Only one left alone for
         * long is a leftover; dropping another's would cost it its record. */
        if (settled(s->metafd, key, (int64_t)time(NULL) - HU_STORAGE_RECORD_SETTLE_S)) {
            hu_meta_drop(s->metafd, key);
            rc = hu_meta_put(fd, s->metafd, key, m, flags);
        } else {
            rc = -EBUSY;
        }
    }
    int sidecar = rc == 1;
    rc = rc < 0 ? rc : 0;
    if (rc == 0 && s->do_fsync && fsync(fd) < 0)
        rc = -errno;
    /* The commit point: link() never replaces an existing file. */
    if (rc == 0)
        rc = link_published(s, key, fd, named);
    if (rc < 0 && sidecar)
        hu_meta_drop(s->metafd, key);
    if (rc == 0 && (rc = sync_shard(s, key)) < 0)
        hu_storage_unpublish(s, key); /* a name that may not survive a crash: not kept */
    /* the partial name and any resumption state go, before fd's lock: nobody takes the
     * partial of a published upload for a resumable one */
    if (named || rc < 0)
        hu_storage_abort(s, key, fd);
    else
        close(fd);
    return rc;
}

void hu_storage_abort(const hu_storage *s, const char *key, int fd) { drop_partial(s, key, fd); }

int hu_storage_unpublish(const hu_storage *s, const char *key) {
    char rel[REL_LEN + 1], shard[3] = {key[0], key[1], '\0'};
    rel_name(key, rel);
    int rc = unlinkat(s->filesfd, rel, 0) < 0 ? -errno : 0;
    hu_meta_drop(s->metafd, key);
    unlinkat(s->thumbfd, key, 0);
    if (rc == 0 && s->do_fsync)
        fsync_dir_at(s->filesfd, shard);
    return rc;
}

int hu_storage_open_file(const hu_storage *s, const char *path, size_t len, int *fd_out,
                         struct stat *st, hu_file_meta *m) {
    char key[HU_STORAGE_KEY_LEN + 1], rel[REL_LEN + 1];
    hu_storage_key(path, len, key);
    rel_name(key, rel);
    int fd = openat(s->filesfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOTDIR || errno == ELOOP || errno == EISDIR ? -ENOENT : -errno;
    int rc = fstat(fd, st) < 0 || !S_ISREG(st->st_mode) ? -ENOENT
                                                          : hu_meta_get(fd, s->metafd, key, m);
    if (rc == 0 && (strlen(m->path) != len || memcmp(m->path, path, len) != 0))
        rc = -ENOENT; /* not the record of this path: never served */
    if (rc < 0) {
        close(fd);
        return rc == -ENOENT || rc == -EINVAL ? -ENOENT : rc;
    }
    *fd_out = fd;
    return 0;
}

static int each_in_shard(const hu_storage *s, const char *shard, hu_storage_file_cb cb,
                         void *ctx, int *seen) {
    DIR *d = hu_storage_opendir(s->filesfd, shard);
    if (d == NULL)
        return 0;
    struct dirent *e;
    int stop = 0;
    while (!stop && (e = hu_storage_readdir(d)) != NULL) {
        const char *name = e->d_name;
        char rel[REL_LEN + 300];
        snprintf(rel, sizeof rel, "%s/%.255s", shard, name);
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        (*seen)++;
        int ours = hu_storage_is_key(name) && memcmp(name, shard, 2) == 0 && S_ISREG(st.st_mode);
        hu_file_meta m;
        int valid = 0;
        if (ours) {
            int fd = openat(dirfd(d), name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
            char check[HU_STORAGE_KEY_LEN + 1];
            if (fd >= 0 && hu_meta_get(fd, s->metafd, name, &m) == 0) {
                hu_storage_key(m.path, strlen(m.path), check);
                valid = strcmp(check, name) == 0;
            }
            if (fd >= 0)
                close(fd);
        }
        stop = cb(ctx, rel, ours ? name : NULL, valid ? &m : NULL, &st);
    }
    closedir(d);
    return stop;
}

int hu_storage_each_file(const hu_storage *s, hu_storage_file_cb cb, void *ctx) {
    DIR *d = hu_storage_opendir(s->filesfd, NULL);
    if (d == NULL)
        return -errno;
    int seen = 0, stop = 0;
    struct dirent *e;
    while (!stop && (e = hu_storage_readdir(d)) != NULL) {
        const char *name = e->d_name;
        struct stat st;
        int shard = is_hex(name, 2) &&
                    fstatat(s->filesfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        if (shard) {
            stop = each_in_shard(s, name, cb, ctx, &seen);
        } else if (fstatat(s->filesfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            seen++;
            stop = cb(ctx, name, NULL, NULL, &st);
        }
    }
    closedir(d);
    return seen;
}

int hu_storage_default_path(const char *storage_dir, const char *name, char *out, size_t cap) {
    struct stat st;
    int n = snprintf(out, cap, "%s/state/%s", storage_dir, name);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    if (stat(out, &st) == 0)
        return 0;
    char legacy[4200];
    snprintf(legacy, sizeof legacy, "%s/%s", storage_dir, name);
    if (stat(legacy, &st) == 0 && (size_t)snprintf(out, cap, "%s", legacy) < cap)
        return 0;
    snprintf(out, cap, "%s/state/%s", storage_dir, name);
    return 0;
}
