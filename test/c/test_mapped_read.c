/* Reading a file through a mapping (mapped_read.h): the bytes in order, and a page that
 * cannot be read (past the end of a file cut short) failing the read instead of the process. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
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

TEST(a_file_cut_short_fails_the_read_not_the_process)
{
    /* The file ends 1 MiB + 100 bytes in; the read asks for 3 MiB. The page past the end
     * raises SIGBUS: caught, -EIO, and fn saw only what the file had (up to the end of its
     * last page, zeros after its last byte). */
    size_t size = (1u << 20) + 100;
    int fd = make_file(size);
    CHECK(fd >= 0);
    reader r = {.at = 0};
    int rc = hu_mapped_read(fd, 0, 3u << 20, 4096, take, &r);
    /* and again: the handler stays, for the next read */
    reader r2 = {.at = 0};
    int rc2 = hu_mapped_read(fd, 0, 3u << 20, 4096, take, &r2);
    close(fd);
    CHECK_INT(rc, -EIO);
    CHECK_INT(rc2, -EIO);
    CHECK(r.seen <= (1u << 20) + 4096);
    CHECK(r.seen >= (1u << 20));
}

/* The server reads on libuv's thread pool: the fault must come back to the pool thread that
 * took it (a pool thread that blocked SIGBUS would die of it instead). */
typedef struct {
    uv_work_t work;
    int fd, rc;
    reader r;
} pool_read;

static void pool_job(uv_work_t *w) {
    pool_read *j = (pool_read *)w;
    j->rc = hu_mapped_read(j->fd, 0, 3u << 20, 65536, take, &j->r);
}

static void pool_done(uv_work_t *w, int status) { (void)w, (void)status; }

TEST(a_file_cut_short_fails_the_read_on_a_pool_thread_too)
{
    pool_read j = {.fd = make_file((1u << 20) + 100), .rc = 1};
    CHECK(j.fd >= 0);
    uv_loop_t loop;
    CHECK_INT(uv_loop_init(&loop), 0);
    CHECK_INT(uv_queue_work(&loop, &j.work, pool_job, pool_done), 0);
    CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_INT(uv_loop_close(&loop), 0);
    close(j.fd);
    CHECK_INT(j.rc, -EIO);
    CHECK(j.r.seen >= (1u << 20));
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
        raise(SIGBUS);
        _exit(0); /* went on: the handler swallowed it */
    }
    int status = 0;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
    CHECK(WIFEXITED(status) || WTERMSIG(status) == SIGBUS);
}

TEST_MAIN({
    RUN(every_byte_in_order_in_steps);
    RUN(a_file_cut_short_fails_the_read_not_the_process);
    RUN(a_file_cut_short_fails_the_read_on_a_pool_thread_too);
    RUN(a_sigbus_not_from_a_read_still_ends_the_process);
})
