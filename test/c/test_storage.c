/* Storage layout 2: the metadata record, the served tree as an allow-list, publishing, the
 * sweep of state/partial, and the migration of a layout-1 tree built by hand. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "file_meta.h"
#include "ledger.h"
#include "storage.h"
#include "storage_meta.h"
#include "storage_migrate.h"

static char root[64];

/* This program's fsetxattr (it takes the place of libc's for the storage code linked in): with
 * no_xattrs set, a file system without user xattrs (records go to sidecar files, as on NFS). */
static int no_xattrs;
int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags) {
    if (no_xattrs) {
        errno = ENOTSUP;
        return -1;
    }
    return (int)syscall(SYS_fsetxattr, fd, name, value, size, flags);
}

/* And its fsync: the fsyncs of one watched file or directory are counted (fsync_count), or
 * fail (EIO) with fsync_fails set, as on a failing disk. */
static struct stat fsync_watched;
static int fsync_watching, fsync_fails, fsync_count;
int fsync(int fd) {
    struct stat st;
    if (fsync_watching && fstat(fd, &st) == 0 && st.st_dev == fsync_watched.st_dev &&
        st.st_ino == fsync_watched.st_ino) {
        if (fsync_fails) {
            errno = EIO;
            return -1;
        }
        fsync_count++;
    }
    return (int)syscall(SYS_fsync, fd);
}

static void watch_fsync(const char *rel, int fails) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    fsync_watching = stat(path, &fsync_watched) == 0;
    fsync_fails = fails;
    fsync_count = 0;
}

static void unwatch_fsync(void) { fsync_watching = fsync_fails = 0; }

static void rm_rf(const char *path) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", path);
}

static void put_file(const char *rel, const char *content) {
    char path[1024], dir[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(dir, 0750);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
}

static int exists(const char *rel) {
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", root, rel);
    return lstat(path, &st) == 0;
}

/* How many entries (besides . and ..) the directory rel holds; -1 when it cannot be read. */
static int entries(const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void read_back(const char *rel, char *out, size_t cap) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(out, 1, cap - 1, f);
        out[n] = '\0';
        fclose(f);
    }
}

static void fresh_root(void) {
    snprintf(root, sizeof root, "/tmp/hu-storage-XXXXXX");
    if (mkdtemp(root) == NULL)
        root[0] = '\0';
}

static hu_file_meta meta_for(const char *path, const char *type) {
    hu_file_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.path, sizeof m.path, "%s", path);
    snprintf(m.type, sizeof m.type, "%s", type);
    snprintf(m.user, sizeof m.user, "alice@example.org");
    snprintf(m.sha256, sizeof m.sha256, "%064d", 7);
    snprintf(m.scheme, sizeof m.scheme, "bearer");
    m.uploaded = 1700000000;
    m.size = 5;
    return m;
}

/* An upload as the server does it: O_TMPFILE, write, publish. */
static int publish(hu_storage *s, const char *path, const char *body, const char *type) {
    char key[HU_STORAGE_KEY_LEN + 1];
    int fd, named;
    uint64_t off;
    hu_storage_key(path, strlen(path), key);
    int rc = hu_storage_begin(s, key, 1, &fd, &off, &named);
    if (rc == 0)
        rc = hu_storage_write(fd, body, strlen(body), 0);
    hu_file_meta m = meta_for(path, type);
    return rc == 0 ? hu_storage_publish(s, key, fd, named, &m) : rc;
}

/* Opens the served file of path as a GET would, keeps its record (and stat), closes it. */
static int served(hu_storage *s, const char *path, hu_file_meta *m, struct stat *st) {
    int fd;
    struct stat unused;
    int rc = hu_storage_open_file(s, path, strlen(path), &fd, st ? st : &unused, m);
    if (rc == 0)
        close(fd);
    return rc;
}

TEST(record_round_trip_any_name)
{
    char buf[HU_META_MAX_BYTES];
    hu_file_meta m = meta_for("slot/a\nb=c%d\\e f.txt", "text/plain; charset=utf-8"), back;
    m.expires = 42;
    long n = hu_file_meta_format(&m, buf, sizeof buf);
    CHECK(n > 0);
    CHECK(memchr(buf, '\0', (size_t)n) == NULL);
    CHECK_INT(hu_file_meta_parse(buf, (size_t)n, &back), 0);
    CHECK_STR(back.path, m.path);
    CHECK_STR(back.type, m.type);
    CHECK_STR(back.user, m.user);
    CHECK_STR(back.sha256, m.sha256);
    CHECK_INT(back.uploaded, 1700000000);
    CHECK_INT(back.expires, 42);
    /* format 1, as layout 1 wrote it: raw values, no path */
    const char v1[] = "type=image/png\nuser=bob@x\nsha256=ab\nscheme=v1\nuploaded=5\nsize=3\nexpires=0\n";
    CHECK_INT(hu_file_meta_parse(v1, sizeof v1 - 1, &back), 0);
    CHECK_STR(back.type, "image/png");
    CHECK_STR(back.path, "");
    CHECK_INT(hu_file_meta_parse("path=x\n", 7, &back), -EINVAL); /* path is format 2 only */
    CHECK_INT(hu_file_meta_parse("v=3\n", 4, &back), -EINVAL);
    CHECK_INT(hu_file_meta_parse("v=2\npath=%zz\n", 13, &back), -EINVAL);
    CHECK_INT(hu_file_meta_parse("v=2\nnokey\n", 10, &back), -EINVAL);
    CHECK_INT(hu_file_meta_format(&m, buf, 10), -ENOSPC);
    /* media metadata: written only for a probed file, read back whole */
    CHECK(strstr(buf, "media_type") == NULL);
    snprintf(m.media_type, sizeof m.media_type, "image/png");
    snprintf(m.blurhash, sizeof m.blurhash, "LEHV6nWB2yk8pyo0adR*.7kCMdnj");
    m.type_ok = 1;
    m.width = 4000;
    m.height = 3000;
    m.thumbnail = 1;
    n = hu_file_meta_format(&m, buf, sizeof buf);
    CHECK(n > 0);
    CHECK_INT(hu_file_meta_parse(buf, (size_t)n, &back), 0);
    CHECK_STR(back.media_type, "image/png");
    CHECK_STR(back.blurhash, m.blurhash);
    CHECK_INT(back.type_ok, 1);
    CHECK_INT(back.width, 4000);
    CHECK_INT(back.height, 3000);
    CHECK_INT(back.thumbnail, 1);
    CHECK_INT(hu_file_meta_parse("v=2\nwidth=99999999999\n", 22, &back), -EINVAL);
    CHECK_INT(hu_file_meta_parse("v=2\ntype_ok=2\n", 14, &back), -EINVAL);
}

/* Only what an upload published, with a record naming that very path, is ever opened. */
TEST(served_tree_is_an_allow_list)
{
    fresh_root();
    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    CHECK_INT(publish(&s, "slot/photo.jpg", "hello", "image/jpeg"), 0);
    CHECK_INT(publish(&s, "slot/photo.jpg", "again", "image/jpeg"), -EEXIST);
    int fd;
    struct stat st;
    hu_file_meta m;
    CHECK_INT(served(&s, "slot/photo.jpg", &m, &st), 0);
    CHECK_INT(st.st_size, 5);
    CHECK_STR(m.type, "image/jpeg");
    CHECK_STR(m.path, "slot/photo.jpg");
    /* state and other paths are not reachable, whatever they are called */
    put_file("state/secret", "0123456789abcdef0123456789abcdef");
    const char *internal[] = {"state/secret", "state/ledger.sqlite3", "files", "../secret",
                              "secret", "slot/photo.jpg/x", "slot/PHOTO.jpg"};
    for (size_t i = 0; i < sizeof internal / sizeof internal[0]; i++)
        CHECK_INT(hu_storage_open_file(&s, internal[i], strlen(internal[i]), &fd, &st, &m), -ENOENT);
    /* a file planted under a key, without a record, or with the record of another path */
    char key[HU_STORAGE_KEY_LEN + 1], rel[128];
    hu_storage_key("slot/planted", 12, key);
    snprintf(rel, sizeof rel, "files/%.2s/%s", key, key);
    put_file(rel, "planted");
    CHECK_INT(hu_storage_open_file(&s, "slot/planted", 12, &fd, &st, &m), -ENOENT);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    fd = open(path, O_RDONLY);
    hu_file_meta other = meta_for("slot/photo.jpg", "text/html");
    CHECK(hu_meta_put(fd, s.metafd, key, &other, 0) >= 0);
    close(fd);
    CHECK_INT(hu_storage_open_file(&s, "slot/planted", 12, &fd, &st, &m), -ENOENT);
    /* unpublish takes the file and its record */
    hu_storage_key("slot/photo.jpg", 14, key);
    CHECK_INT(hu_storage_unpublish(&s, key), 0);
    CHECK_INT(hu_storage_open_file(&s, "slot/photo.jpg", 14, &fd, &st, &m), -ENOENT);
    hu_storage_close(&s);
    rm_rf(root);
}

static int never_busy(const char *key, void *ctx) {
    (void)key;
    (void)ctx;
    return 0;
}

TEST(sweep_touches_only_our_names)
{
    fresh_root();
    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    char key[HU_STORAGE_KEY_LEN + 1], rel[160];
    /* a resumable partial (token valid), an expired one, an orphan, a half-written state file,
     * and a stranger's file */
    const char *names[] = {"a/live", "a/expired", "a/orphan"};
    int64_t expiry[] = {2000000000, 1000, -1};
    for (int i = 0; i < 3; i++) {
        hu_storage_key(names[i], strlen(names[i]), key);
        snprintf(rel, sizeof rel, "state/partial/%s", key);
        put_file(rel, "partial bytes");
        if (expiry[i] >= 0) {
            hu_file_meta m = meta_for(names[i], "image/png");
            m.expires = expiry[i];
            CHECK_INT(hu_storage_save_resume(&s, key, -1, &m), 0);
        }
    }
    snprintf(rel, sizeof rel, "state/partial/%s.tus.tmp", key);
    put_file(rel, "half");
    put_file("state/partial/notes.txt", "mine");
    hu_sweep_report r;
    /* just written: the orphan and the half state file may be another server's work */
    int64_t young = (int64_t)time(NULL) - 600;
    CHECK_INT(hu_storage_sweep_partials(&s, 1500, 1, young, never_busy, NULL, &r), 0);
    CHECK_INT(r.removed, 1); /* the expired one: its token says nobody can go on with it */
    CHECK_INT(r.strays, 0);
    CHECK_INT(r.unknown, 1);
    hu_storage_key("a/orphan", 8, key);
    snprintf(rel, sizeof rel, "state/partial/%s", key);
    CHECK(exists(rel));
    CHECK_INT(hu_storage_sweep_partials(&s, 1500, 0, INT64_MAX, never_busy, NULL, &r), 0);
    CHECK_INT(r.removed, 0); /* the orphan stays while the server runs */
    CHECK_INT(r.strays, 0);
    CHECK_INT(r.unknown, 1);
    CHECK_INT(hu_storage_sweep_partials(&s, 1500, 1, INT64_MAX, never_busy, NULL, &r), 0);
    CHECK_INT(r.removed, 1); /* at start-up the orphan goes too */
    CHECK_INT(r.strays, 1);  /* nobody writes that half state file: a crash left it */
    CHECK_INT(r.unknown, 1);
    CHECK(!exists(rel));
    hu_storage_key("a/live", 6, key);
    snprintf(rel, sizeof rel, "state/partial/%s", key);
    CHECK(exists(rel));
    CHECK(exists("state/partial/notes.txt"));
    hu_file_meta m;
    uint64_t off;
    CHECK_INT(hu_storage_load_resume(&s, key, &m, &off), 0);
    CHECK_INT(off, 13);
    CHECK_STR(m.path, "a/live");
    hu_storage_close(&s);
    rm_rf(root);
}

/* The OFD lock of an upload's file: while one request holds a named partial, nobody else
 * (another descriptor: another server on the same storage) resumes it, starts it over,
 * sweeps or removes it. */
TEST(locked_partial_is_left_to_its_writer)
{
    fresh_root();
    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    char key[HU_STORAGE_KEY_LEN + 1], rel[160];
    hu_storage_key("c/live", 6, key);
    snprintf(rel, sizeof rel, "state/partial/%s", key);
    put_file(rel, "partial bytes");
    hu_file_meta m = meta_for("c/live", "image/png");
    m.expires = 1000; /* expired: only its lock keeps it */
    CHECK_INT(hu_storage_save_resume(&s, key, -1, &m), 0);
    CHECK_INT(hu_storage_partial_busy(&s, key), 0);
    int fd, fd2, named;
    uint64_t off;
    CHECK_INT(hu_storage_begin(&s, key, 0, &fd, &off, &named), 0);
    CHECK_INT(off, 13);
    CHECK_INT(hu_storage_partial_busy(&s, key), 1);
    CHECK_INT(hu_storage_begin(&s, key, 0, &fd2, &off, &named), -EBUSY); /* a resume */
    CHECK_INT(hu_storage_begin(&s, key, 1, &fd2, &off, &named), -EBUSY); /* a new PUT */
    hu_sweep_report r;
    CHECK_INT(hu_storage_sweep_partials(&s, 1500, 1, INT64_MAX, never_busy, NULL, &r), 0);
    CHECK_INT(r.removed, 0);
    hu_storage_abort(&s, key, -1);
    CHECK(exists(rel));
    close(fd); /* the writer is done (or gone) */
    CHECK_INT(hu_storage_partial_busy(&s, key), 0);
    CHECK_INT(hu_storage_sweep_partials(&s, 1500, 1, INT64_MAX, never_busy, NULL, &r), 0);
    CHECK_INT(r.removed, 1);
    CHECK(!exists(rel));
    hu_storage_close(&s);
    rm_rf(root);
}

/* A sidecar record without its file: a crash's leftover once old, another server's upload
 * being published (record first, link next) while young. */
TEST(record_sweep_leaves_young_records)
{
    fresh_root();
    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    char young[HU_STORAGE_KEY_LEN + 1], old[HU_STORAGE_KEY_LEN + 1], rel[160];
    hu_storage_key("b/young", 7, young);
    hu_storage_key("b/old", 5, old);
    snprintf(rel, sizeof rel, "state/meta/%s", young);
    put_file(rel, "record");
    snprintf(rel, sizeof rel, "state/meta/%s", old);
    put_file(rel, "record");
    struct timespec long_ago[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    CHECK_INT(utimensat(s.metafd, old, long_ago, 0), 0);
    CHECK_INT(hu_storage_sweep_records(&s, (int64_t)time(NULL) - 600), 1);
    CHECK(!exists(rel));
    snprintf(rel, sizeof rel, "state/meta/%s", young);
    CHECK(exists(rel));
    CHECK_INT(hu_storage_sweep_records(&s, INT64_MAX), 1);
    CHECK(!exists(rel));
    hu_storage_close(&s);
    rm_rf(root);
}

/* Without xattrs, a record is a sidecar written just before its file's link. Another server
 * publishing the same slot meanwhile finds that young record without a file: it must not take
 * it for a crash's leftover (dropping it, then its own on losing the link, would leave the
 * first server's acknowledged file without a record: never served). Busy (409) while young;
 * an old one is a leftover and goes. */
TEST(a_young_record_of_another_publish_is_left_alone)
{
    fresh_root();
    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    no_xattrs = 1;
    char key[HU_STORAGE_KEY_LEN + 1], rel[160], buf[256];
    hu_storage_key("c/race.bin", 10, key);
    snprintf(rel, sizeof rel, "state/meta/%s", key);
    put_file(rel, "the other server's record");
    CHECK_INT(publish(&s, "c/race.bin", "mine", "image/jpeg"), -EBUSY);
    read_back(rel, buf, sizeof buf);
    CHECK_STR(buf, "the other server's record");
    snprintf(rel, sizeof rel, "files/%.2s/%s", key, key);
    CHECK(!exists(rel));
    /* left alone for long: a crash's, replaced */
    struct timespec long_ago[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    CHECK_INT(utimensat(s.metafd, key, long_ago, 0), 0);
    CHECK_INT(publish(&s, "c/race.bin", "mine", "image/jpeg"), 0);
    hu_file_meta m;
    CHECK_INT(served(&s, "c/race.bin", &m, NULL), 0);
    CHECK_STR(m.path, "c/race.bin");
    no_xattrs = 0;
    hu_storage_close(&s);
    rm_rf(root);
}

/* Makes the shard directory of key as another server would (not synced); rel gets its path
 * under the storage root. */
static int make_shard(const hu_storage *s, const char *key, char *rel, size_t cap) {
    snprintf(rel, cap, "files/%.2s", key);
    return mkdirat(s->dirfd, rel, 0750);
}

/* Linked, but its directory not synced: the name may not survive a power cut, so the upload
 * is not acknowledged and nothing of it stays (no file, record or partial). */
TEST(a_name_whose_directory_cannot_be_synced_is_taken_back)
{
    fresh_root();
    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    char key[HU_STORAGE_KEY_LEN + 1], rel[160];
    hu_storage_key("d/name.bin", 10, key);
    CHECK_INT(make_shard(&s, key, rel, sizeof rel), 0); /* the link succeeds */
    watch_fsync(rel, 1);
    CHECK(fsync_watching);
    CHECK_INT(publish(&s, "d/name.bin", "unsynced", "text/plain"), -EIO);
    unwatch_fsync();
    hu_file_meta m;
    CHECK_INT(served(&s, "d/name.bin", &m, NULL), -ENOENT);
    snprintf(rel, sizeof rel, "files/%.2s/%s", key, key);
    CHECK(!exists(rel));
    CHECK_INT(entries("state/partial"), 0);
    /* and with the disk well again, the same slot publishes */
    CHECK_INT(publish(&s, "d/name.bin", "synced", "text/plain"), 0);
    CHECK(exists(rel));
    hu_storage_close(&s);
    rm_rf(root);
}

/* A shard directory another server (or thread) has just made, its entry in files/ maybe not
 * yet durable: the first name published in it waits for files/ to be synced too (once per
 * shard), else a power cut could take the shard, and the acknowledged file with it. */
TEST(a_name_rests_on_a_synced_shard_entry)
{
    fresh_root();
    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    char key[HU_STORAGE_KEY_LEN + 1], other[HU_STORAGE_KEY_LEN + 1], path[32], rel[160];
    hu_storage_key("e/one.bin", 9, key);
    CHECK_INT(make_shard(&s, key, rel, sizeof rel), 0);
    int i = 0; /* a second path in the same shard */
    do
        hu_storage_key(path, (size_t)snprintf(path, sizeof path, "e/%d.bin", ++i), other);
    while (memcmp(other, key, 2) != 0);
    watch_fsync("files", 0);
    CHECK(fsync_watching);
    CHECK_INT(publish(&s, "e/one.bin", "first", "text/plain"), 0);
    CHECK_INT(fsync_count, 1);
    CHECK_INT(publish(&s, path, "second", "text/plain"), 0);
    CHECK_INT(fsync_count, 1); /* once per shard */
    unwatch_fsync();
    hu_storage_close(&s);
    rm_rf(root);
}

/* Layout 1, as today's main leaves it, with everything an operator may have put there. */
TEST(migration_moves_only_what_is_ours)
{
    fresh_root();
    char key[HU_STORAGE_KEY_LEN + 1], rel[200], buf[256];
    put_file("6f1c0e5a-1111-4111-8111-111111111111/photo.jpg", "ours");
    hu_storage_key("6f1c0e5a-1111-4111-8111-111111111111/photo.jpg", 46, key);
    snprintf(rel, sizeof rel, ".meta/%s", key);
    put_file(rel, "type=image/png\nuser=alice@x\nsha256=ab\nscheme=bearer\nuploaded=7\nsize=4\nexpires=0\n");
    put_file("7a2d0e5a-2222-4222-8222-222222222222/notes.txt", "no record");
    put_file("README-ops.txt", "operator notes");
    put_file("docroot/abc/def/photo.jpg", "old docroot");
    put_file("secret", "0123456789abcdef0123456789abcdef\n");
    put_file("my.key", "custom secret file");
    put_file("db/uploads.db", "custom ledger");
    put_file("http.log", "access log");
    /* a resumable partial with its state, and temp files of ours */
    hu_storage_key("8b3e0e5a-3333-4333-8333-333333333333/big.bin", 44, key);
    snprintf(rel, sizeof rel, ".partial/%s", key);
    put_file(rel, "partial");
    snprintf(rel, sizeof rel, ".partial/%s.tus", key);
    put_file(rel, "type=video/mp4\nuser=bob@x\nsha256=\nscheme=bearer\nuploaded=7\nsize=99\nexpires=2000000000\n");
    char orphan[HU_STORAGE_KEY_LEN + 1];
    hu_storage_key("x/y", 3, orphan);
    snprintf(rel, sizeof rel, ".partial/%s.meta", orphan);
    put_file(rel, "leftover");
    snprintf(rel, sizeof rel, ".partial/%s.tus.tmp", orphan);
    put_file(rel, "leftover");

    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    hu_migrate_report r;
    CHECK_INT(hu_storage_migrate(&s, NULL, NULL, &r), 0);
    CHECK_INT(r.done, 1);
    CHECK_INT(r.files, 1);
    CHECK_INT(r.partials, 1);
    CHECK_INT(r.removed, 2);
    CHECK(r.foreign >= 7);
    char line[512];
    hu_migrate_report_line(&r, line, sizeof line);
    CHECK(strstr(line, "1 published file(s) moved") && strstr(line, "untouched"));
    /* ours: served at its URL with its recorded type */
    hu_file_meta m;
    CHECK_INT(served(&s, "6f1c0e5a-1111-4111-8111-111111111111/photo.jpg", &m, NULL), 0);
    CHECK_STR(m.type, "image/png");
    CHECK_STR(m.user, "alice@x");
    CHECK(!exists("6f1c0e5a-1111-4111-8111-111111111111"));
    CHECK(!exists(".meta"));
    CHECK(!exists(".partial"));
    /* the resumable partial kept its state */
    uint64_t off;
    CHECK_INT(hu_storage_load_resume(&s, key, &m, &off), 0);
    CHECK_STR(m.type, "video/mp4");
    CHECK_INT(off, 7);
    /* everything else untouched, byte for byte */
    const char *kept[][2] = {{"7a2d0e5a-2222-4222-8222-222222222222/notes.txt", "no record"},
                             {"README-ops.txt", "operator notes"},
                             {"docroot/abc/def/photo.jpg", "old docroot"},
                             {"secret", "0123456789abcdef0123456789abcdef\n"},
                             {"my.key", "custom secret file"},
                             {"db/uploads.db", "custom ledger"},
                             {"http.log", "access log"}};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        read_back(kept[i][0], buf, sizeof buf);
        CHECK_STR(buf, kept[i][1]);
    }
    /* once done, never again: a file that appears later is not adopted */
    CHECK(exists("state/layout"));
    put_file("9c4f0e5a-4444-4444-8444-444444444444/late.jpg", "late");
    CHECK_INT(hu_storage_migrate(&s, NULL, NULL, &r), 0);
    CHECK_INT(r.done, 0);
    CHECK(exists("9c4f0e5a-4444-4444-8444-444444444444/late.jpg"));
    hu_storage_close(&s);
    rm_rf(root);
}

/* The ledger's row is proof too: a layout-1 file whose .meta was lost moves with it. */
static int known(void *ctx, const char *path, hu_file_meta *m) {
    (void)ctx;
    if (strcmp(path, "slot/no-meta.pdf") != 0)
        return 0;
    snprintf(m->type, sizeof m->type, "application/pdf");
    return 1;
}

TEST(migration_uses_the_ledger_as_proof)
{
    fresh_root();
    put_file("slot/no-meta.pdf", "pdf");
    put_file("slot/unknown.pdf", "stranger");
    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    hu_migrate_report r;
    CHECK_INT(hu_storage_migrate(&s, known, NULL, &r), 0);
    CHECK_INT(r.files, 1);
    hu_file_meta m;
    CHECK_INT(served(&s, "slot/no-meta.pdf", &m, NULL), 0);
    CHECK_STR(m.type, "application/pdf");
    CHECK(exists("slot/unknown.pdf"));
    hu_storage_close(&s);
    rm_rf(root);
}

/* The same through a real ledger: a stored-file row is proof, a reservation is not. */
TEST(migration_asks_the_ledger)
{
    fresh_root();
    put_file("slot/row.pdf", "pdf");
    put_file("slot/reserved.pdf", "reserved only");
    char db[128];
    snprintf(db, sizeof db, "%s/ledger.sqlite3", root);
    hu_ledger *l;
    CHECK_INT(hu_ledger_open(db, &l), 0);
    hu_stored_file f = {.path = "slot/row.pdf", .user = "carol@x", .size = 3,
                        .content_type = "application/pdf", .sha256_hex = "cd", .created = 9,
                        .scheme = "v1", .type_ok = -1};
    CHECK_INT(hu_ledger_commit_upload(l, &f), 0);
    int64_t retry;
    hu_reservation res = {"slot/reserved.pdf", "carol@x", 13, 2000000000, 2000000000,
                          HU_RETENTION_DEFAULT};
    CHECK_INT(hu_ledger_reserve(l, &res, 1, 0, &retry), 0);
    hu_storage s;
    CHECK_INT(hu_storage_open(root, 1, &s), 0);
    hu_migrate_report r;
    CHECK_INT(hu_storage_migrate(&s, hu_migrate_known_in_ledger, l, &r), 0);
    CHECK_INT(r.files, 1);
    hu_file_meta m;
    CHECK_INT(served(&s, "slot/row.pdf", &m, NULL), 0);
    CHECK_STR(m.type, "application/pdf");
    CHECK_STR(m.user, "carol@x");
    CHECK_STR(m.scheme, "v1");
    CHECK(exists("slot/reserved.pdf"));
    hu_storage_close(&s);
    hu_ledger_close(l);
    rm_rf(root);
}

TEST(default_state_paths)
{
    fresh_root();
    char out[512], want[512];
    CHECK_INT(hu_storage_default_path(root, "secret", out, sizeof out), 0);
    snprintf(want, sizeof want, "%s/state/secret", root);
    CHECK_STR(out, want);
    put_file("ledger.sqlite3", "");
    CHECK_INT(hu_storage_default_path(root, "ledger.sqlite3", out, sizeof out), 0);
    snprintf(want, sizeof want, "%s/ledger.sqlite3", root);
    CHECK_STR(out, want);
    put_file("state/ledger.sqlite3", "");
    CHECK_INT(hu_storage_default_path(root, "ledger.sqlite3", out, sizeof out), 0);
    snprintf(want, sizeof want, "%s/state/ledger.sqlite3", root);
    CHECK_STR(out, want);
    rm_rf(root);
}

TEST_MAIN({
    RUN(record_round_trip_any_name);
    RUN(served_tree_is_an_allow_list);
    RUN(sweep_touches_only_our_names);
    RUN(record_sweep_leaves_young_records);
    RUN(a_young_record_of_another_publish_is_left_alone);
    RUN(a_name_whose_directory_cannot_be_synced_is_taken_back);
    RUN(a_name_rests_on_a_synced_shard_entry);
    RUN(locked_partial_is_left_to_its_writer);
    RUN(migration_moves_only_what_is_ours);
    RUN(migration_uses_the_ledger_as_proof);
    RUN(migration_asks_the_ledger);
    RUN(default_state_paths);
})
