#include "upload_hash.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "codec.h"
#include "mapped_read.h"
#include "sha256_md.h"

/* Hashing step (and read-back size): stays in the core's L2 while it is hashed. */
#define HASH_READ (64 * 1024)

int hu_upload_hash_init(hu_upload_hash *h, int fd, uint64_t base, void *data) {
    h->fd = fd;
    h->base = base;
    h->done = h->known = 0;
    h->running = 0;
    h->err = 0;
    h->data = data;
    if ((h->ctx = EVP_MD_CTX_new()) == NULL)
        return -ENOMEM;
    if (EVP_DigestInit_ex(h->ctx, hu_sha256_md(), NULL) != 1)
        return -EIO;
    return 0;
}

void hu_upload_hash_piece(hu_upload_hash *h, const char *p, size_t n) {
    if (h->err == 0 && EVP_DigestUpdate(h->ctx, p, n) != 1)
        h->err = -EIO;
    h->done += n;
}

/* The same, copied out with pread, a step at a time. */
static void read_into_hash(hu_upload_hash *h, uint64_t upto, int polite) {
    char *buf = malloc(HASH_READ);
    if (buf == NULL) {
        h->err = -ENOMEM;
        return;
    }
    while (h->err == 0 && h->done < upto) {
        size_t want = upto - h->done < HASH_READ ? (size_t)(upto - h->done) : HASH_READ;
        ssize_t n = pread(h->fd, buf, want, (off_t)(h->base + h->done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) /* the file is shorter than what was written to it: not ours to publish */
            h->err = n < 0 ? -errno : -EIO;
        else
            hu_upload_hash_piece(h, buf, (size_t)n);
        if (polite)
            sched_yield();
    }
    free(buf);
}

static void hash_step(void *arg, const char *p, size_t n) {
    hu_upload_hash_piece(arg, p, n);
}

static void hash_step_politely(void *arg, const char *p, size_t n) {
    hu_upload_hash_piece(arg, p, n);
    sched_yield();
}

/* Hashed where the bytes lie in the page cache, through a mapping (mapped_read.h): the pread
 * copy into a buffer was 8 % of the server's CPU in a 1 GiB PUT (perf), and the mapping saves
 * 4-5 % (it costs the rest). Read, and copied, only where the file cannot be mapped.
 * With polite, the thread offers its core between steps: the hash job is background work, and
 * the write job and the loop thread it would keep waiting for a core (the next piece's write
 * cannot start, a finished one is not seen) are what the upload's pace depends on. */
static void hash_file(hu_upload_hash *h, uint64_t upto, int polite) {
    if (h->err < 0 || h->done >= upto)
        return;
    int rc = hu_mapped_read(h->fd, h->base + h->done, h->base + upto, HASH_READ,
                            polite ? hash_step_politely : hash_step, h);
    if (rc == -EIO) /* a page that could not be read: the file is not what was written */
        h->err = rc;
    else if (rc < 0)
        read_into_hash(h, upto, polite);
}

void hu_upload_hash_file(hu_upload_hash *h, uint64_t upto) { hash_file(h, upto, 0); }

static void hash_job(uv_work_t *w) {
    hu_upload_hash *h = (hu_upload_hash *)w;
    hash_file(h, h->upto, 1);
}

static void hash_done(uv_work_t *w, int status) {
    hu_upload_hash *h = (hu_upload_hash *)w;
    h->running = 0;
    h->known = h->done;
    if (status < 0 && h->err == 0)
        h->err = -EIO; /* cancelled: the digest misses bytes */
    h->cb(h);
}

int hu_upload_hash_start(hu_upload_hash *h, uv_loop_t *loop, uint64_t upto, hu_upload_hash_cb cb) {
    h->upto = upto;
    h->cb = cb;
    h->running = 1;
    int rc = uv_queue_work(loop, &h->work, hash_job, hash_done);
    if (rc < 0) {
        h->running = 0;
        h->err = -EIO;
    }
    return rc;
}

int hu_upload_hash_final(hu_upload_hash *h, char hex[65]) {
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (h->err == 0 && EVP_DigestFinal_ex(h->ctx, md, &len) != 1)
        h->err = -EIO;
    if (h->err == 0)
        hu_hex_encode(md, len, hex);
    return h->err;
}

void hu_upload_hash_free(hu_upload_hash *h) {
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}
