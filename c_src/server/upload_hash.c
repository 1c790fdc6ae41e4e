#include "upload_hash.h"

#include <errno.h>
#include <stdint.h>

#include "codec.h"

int hu_upload_hash_init(hu_upload_hash *h, void *data) {
    h->data = data;
    h->err = 0;
    if ((h->ctx = EVP_MD_CTX_new()) == NULL)
        return -ENOMEM;
    if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
        return -EIO;
    return 0;
}

void hu_upload_hash_update(hu_upload_hash *h, const char *p, size_t n) {
    if (h->err == 0 && EVP_DigestUpdate(h->ctx, p, n) != 1)
        h->err = -EIO;
}

static void hash_job(uv_work_t *w) {
    hu_upload_hash *h = (hu_upload_hash *)w;
    hu_upload_hash_update(h, h->piece, h->len);
}

static void hash_done(uv_work_t *w, int status) {
    hu_upload_hash *h = (hu_upload_hash *)w;
    if (status < 0 && h->err == 0)
        h->err = -EIO; /* cancelled: the digest misses a piece */
    h->done(h);
}

int hu_upload_hash_queue(hu_upload_hash *h, uv_loop_t *loop, const char *p, size_t n,
                         hu_upload_hash_cb done) {
    h->piece = p;
    h->len = n;
    h->done = done;
    int rc = uv_queue_work(loop, &h->work, hash_job, hash_done);
    if (rc < 0)
        h->err = -EIO;
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
