#include "mapped_read.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Mapped and unmapped a window at a time. A mapped window counts in the server's RSS (file
 * pages, not memory of its own, but counted all the same; the read-back runs only while fewer
 * uploads stream than there are cores, upload.c): 1 MiB keeps that small, and its
 * mapping (page tables filled in one pass with MAP_POPULATE) and unmapping (a TLB shootdown)
 * still cost far less than copying it out. 1 GiB PUT, A B A B: 8 MiB windows saved 8 % of
 * the CPU and added 8 MiB to the peak RSS; 1 MiB windows save 4-5 % and add 0.5 MiB. */
#define WINDOW (1u << 20)

/* The window the calling thread is reading, and where to go back to when one of its pages
 * raises SIGBUS (per thread: several pool threads may read at once). initial-exec: the
 * handler reads them without a call that could allocate. */
#define HU_TLS _Thread_local __attribute__((tls_model("initial-exec")))
static HU_TLS sigjmp_buf *volatile guard;
static HU_TLS volatile uintptr_t guard_lo, guard_hi;

static struct sigaction before; /* SIGBUS's action before ours, for a signal not ours */
static pthread_once_t installed = PTHREAD_ONCE_INIT;
static int install_err;

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
    uintptr_t at = (uintptr_t)si->si_addr;
    /* a fault (si_code > 0: from the kernel, not sent) on a page of the window being read */
    if (si->si_code > 0 && guard != NULL && at >= guard_lo && at < guard_hi)
        siglongjmp(*guard, 1);
    int saved = errno;
    if (si->si_code > 0) {
        /* a fault elsewhere: the action before ours, which the fault meets again on return
         * (by default, the end of the process, with a core) */
        sigaction(SIGBUS, &before, NULL);
    } else if (before.sa_flags & SA_SIGINFO) { /* sent: passed on as it was before */
        before.sa_sigaction(sig, si, uc);
    } else if (before.sa_handler == SIG_DFL) {
        sigaction(SIGBUS, &before, NULL);
        raise(sig); /* delivered, by default, once this returns */
    } else if (before.sa_handler != SIG_IGN) {
        before.sa_handler(sig);
    }
    errno = saved;
}

/* Installed once; where it does not take (a sanitizer that keeps SIGBUS for itself), every
 * read falls back to the caller's other way. */
static void install(void) {
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO}, now;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &before) < 0 || sigaction(SIGBUS, NULL, &now) < 0)
        install_err = -errno;
    else if (!(now.sa_flags & SA_SIGINFO) || now.sa_sigaction != on_sigbus)
        install_err = -ENOTSUP;
}

/* fn over [lo, hi) of the mapping, step bytes at a time. */
static void each_step(const char *lo, const char *hi, size_t step, hu_mapped_fn fn, void *arg) {
    for (const char *p = lo; p < hi;) {
        size_t n = (size_t)(hi - p) < step ? (size_t)(hi - p) : step;
        fn(arg, p, n);
        p += n;
    }
}

/* One window: [start, start + len) mapped, fn over it from start + skip. */
static int read_window(int fd, uint64_t start, size_t len, size_t skip, size_t step,
                       hu_mapped_fn fn, void *arg) {
    char *map = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)start);
    if (map == MAP_FAILED)
        return -errno;
    sigjmp_buf back;
    if (sigsetjmp(back, 1)) { /* a page of it raised SIGBUS */
        guard = NULL;
        munmap(map, len);
        return -EIO;
    }
    guard_lo = (uintptr_t)map;
    guard_hi = (uintptr_t)map + len;
    guard = &back;
    each_step(map + skip, map + len, step, fn, arg);
    guard = NULL;
    munmap(map, len);
    return 0;
}

int hu_mapped_read(int fd, uint64_t from, uint64_t to, size_t step, hu_mapped_fn fn, void *arg) {
    if (step == 0)
        return -EINVAL;
    pthread_once(&installed, install);
    if (install_err < 0)
        return install_err;
    /* A file that ends inside the last page would read as zeros there, not fault: what it
     * has is read, then the read fails as a short pread would. */
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    uint64_t size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
    uint64_t end_of_read = to < size ? to : size;
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    int rc = 0;
    while (rc == 0 && from < end_of_read) {
        uint64_t start = from - from % page;
        uint64_t end = end_of_read - start > WINDOW ? start + WINDOW : end_of_read;
        rc = read_window(fd, start, (size_t)(end - start), (size_t)(from - start), step, fn, arg);
        from = end;
    }
    return rc == 0 && end_of_read < to ? -EIO : rc;
}
