/* Reading a file through a mapping (mapped_read.h): the bytes in order, a file shorter than
 * asked failing the read, and a page that cannot be read (the file cut short under the read)
 * failing the read instead of the process, while any other SIGBUS still ends it. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "mapped_read.h"

/* A file of n bytes, byte i being (i * 7 + i / 4096) % 251, unlinked (the fd keeps it). */
static int make_file(size_t n) {
    char path[] = "/tmp/hu-mapped-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    unsigned char buf[8192];
    for (size_t off = 0; off < n;) {
        size_t k = n - off < sizeof buf ? n - off : sizeof buf;
        for (size_t i = 0; i < k; i++)
            buf[i] = (unsigned char)(((off + i) * 7 + (off + i) / 4096) % 251);
        if (pwrite(fd, buf, k, (off_t)off) != (ssize_t)k) {
            close(fd);
            return -1;
        }
        off += k;
    }
    return fd;
}

typedef struct {
    uint64_t at;   /* the file offset the next call should start at */
    uint64_t seen; /* bytes passed */
    size_t max_n;  /* the largest single call */
    int wrong;     /* a byte differed from what make_file wrote there */
} reader;

static void take(void *arg, const char *p, size_t n) {
    reader *r = arg;
    for (size_t i = 0; i < n; i++) {
        uint64_t off = r->at + i;
        if ((unsigned char)p[i] != (unsigned char)((off * 7 + off / 4096) % 251))
            r->wrong = 1;
    }
    r->at += n;
    r->seen += n;
    if (n > r->max_n)
        r->max_n = n;
}

TEST(every_byte_in_order_in_steps)
{
    /* over many windows, from an offset inside a page to one inside another */
    size_t size = (20u << 20) + 123;
    int fd = make_file(size);
    CHECK(fd >= 0);
    reader r = {.at = 5000};
    int rc = hu_mapped_read(fd, 5000, size - 77, 65536, take, &r);
    close(fd);
    CHECK_INT(rc, 0);
    CHECK_INT(r.seen, size - 77 - 5000);
    CHECK_INT(r.wrong, 0);
    CHECK_INT(r.max_n, 65536);
}

TEST(a_file_that_ends_before_to_fails_the_read)
{
    /* inside the last page (the rest of it would read as zeros, not fault) and pages before */
    size_t sizes[] = {1000, (1u << 20) + 100};
    for (size_t k = 0; k < 2; k++) {
        int fd = make_file(sizes[k]);
        CHECK(fd >= 0);
        reader r = {.at = 0};
        int rc = hu_mapped_read(fd, 0, 3u << 20, 4096, take, &r);
        close(fd);
        CHECK_INT(rc, -EIO);
        CHECK_INT(r.seen, sizes[k]);
        CHECK_INT(r.wrong, 0);
    }
}

/* A reader that cuts its own file to one page once it has seen cut_at bytes: the pages after
 * it, mapped already, raise SIGBUS when read. */
typedef struct {
    reader r;
    int fd;
    uint64_t cut_at;
} cutter;

static void take_and_cut(void *arg, const char *p, size_t n) {
    cutter *c = arg;
    take(&c->r, p, n);
    if (c->cut_at > 0 && c->r.seen >= c->cut_at) {
        c->cut_at = 0;
        if (ftruncate(c->fd, 4096) < 0)
            c->r.wrong = 2;
    }
}

TEST(a_file_cut_short_under_the_read_fails_it_not_the_process)
{
    /* twice: the handler stays for the next read */
    for (int round = 0; round < 2; round++) {
        cutter c = {.fd = make_file(3u << 20), .cut_at = 64 * 1024};
        CHECK(c.fd >= 0);
        int rc = hu_mapped_read(c.fd, 0, 3u << 20, 16384, take_and_cut, &c);
        close(c.fd);
        CHECK_INT(rc, -EIO);
        CHECK_INT(c.r.wrong, 0);
        CHECK(c.r.seen >= 64 * 1024 && c.r.seen < (1u << 20));
    }
}

/* The server reads on libuv's thread pool: the fault must come back to the pool thread that
 * took it (a pool thread that blocked SIGBUS would die of it instead). */
typedef struct {
    uv_work_t work;
    cutter c;
    int rc;
} pool_read;

static void pool_job(uv_work_t *w) {
    pool_read *j = (pool_read *)w;
    j->rc = hu_mapped_read(j->c.fd, 0, 3u << 20, 65536, take_and_cut, &j->c);
}

static void pool_done(uv_work_t *w, int status) { (void)w, (void)status; }

TEST(a_file_cut_short_under_the_read_fails_it_on_a_pool_thread_too)
{
    pool_read j = {.c = {.fd = make_file(3u << 20), .cut_at = 65536}, .rc = 1};
    CHECK(j.c.fd >= 0);
    uv_loop_t loop;
    CHECK_INT(uv_loop_init(&loop), 0);
    CHECK_INT(uv_queue_work(&loop, &j.work, pool_job, pool_done), 0);
    CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_INT(uv_loop_close(&loop), 0);
    close(j.c.fd);
    CHECK_INT(j.rc, -EIO);
    CHECK(j.c.r.seen >= 65536 && j.c.r.seen < (1u << 20));
}

/* The process ended the way SIGBUS ends it (killed by it; under ASan, its report and exit 1),
 * not by going on. */
static int ended_by_sigbus(int status) {
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
           (WIFEXITED(status) || WTERMSIG(status) == SIGBUS);
}

/* In a child: a page past the end of another file, touched from inside a read. */
static const volatile char *elsewhere;

static void touch_elsewhere(void *arg, const char *p, size_t n) {
    (void)arg, (void)p, (void)n;
    (void)elsewhere[0];
}

TEST(a_fault_outside_the_window_still_ends_the_process)
{
    /* only faults on the window being read are taken back, even during a read */
    int fd = make_file(8192), empty = make_file(0);
    CHECK(fd >= 0 && empty >= 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(10); /* a handler that swallowed the fault would have it fault forever */
        elsewhere = mmap(NULL, 4096, PROT_READ, MAP_SHARED, empty, 0);
        if (elsewhere == MAP_FAILED)
            _exit(3);
        hu_mapped_read(fd, 0, 8192, 4096, touch_elsewhere, NULL);
        _exit(0); /* went on: the handler took a fault not its own */
    }
    close(fd);
    close(empty);
    int status = 0;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(ended_by_sigbus(status));
}

TEST(a_sigbus_not_from_a_read_still_ends_the_process)
{
    /* the handler only takes back the faults of a window being read: any other SIGBUS does
     * what it did before (by default, ends the process; under ASan, its report and exit 1) */
    int fd = make_file(4096);
    CHECK(fd >= 0);
    reader r = {.at = 0};
    CHECK_INT(hu_mapped_read(fd, 0, 4096, 4096, take, &r), 0); /* the handler is installed */
    close(fd);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(10);
        raise(SIGBUS);
        _exit(0); /* went on: the handler swallowed it */
    }
    int status = 0;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(ended_by_sigbus(status));
}

TEST_MAIN({
    RUN(every_byte_in_order_in_steps);
    RUN(a_file_that_ends_before_to_fails_the_read);
    RUN(a_file_cut_short_under_the_read_fails_it_not_the_process);
    RUN(a_file_cut_short_under_the_read_fails_it_on_a_pool_thread_too);
    RUN(a_fault_outside_the_window_still_ends_the_process);
    RUN(a_sigbus_not_from_a_read_still_ends_the_process);
})
