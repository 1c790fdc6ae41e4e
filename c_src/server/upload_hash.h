/* The sha256 of a PUT body, computed as the pieces pass. A piece can be hashed on the thread
 * pool by its own job while another job writes the same piece (both only read it): on a
 * second core the piece costs the longer of the two instead of their sum. One hash job at a
 * time per upload (pieces are hashed in order); the caller keeps the piece alive until the
 * job's callback. */
#ifndef HU_UPLOAD_HASH_H
#define HU_UPLOAD_HASH_H

#include <openssl/evp.h>
#include <stddef.h>
#include <uv.h>

typedef struct hu_upload_hash hu_upload_hash;
typedef void (*hu_upload_hash_cb)(hu_upload_hash *h);

struct hu_upload_hash {
    uv_work_t work; /* first: the request is the job */
    EVP_MD_CTX *ctx;
    const char *piece;
    size_t len;
    int err; /* 0, or -EIO once an update failed (sticky) */
    hu_upload_hash_cb done;
    void *data; /* the caller's */
};

/* 0, -ENOMEM or -EIO. */
int hu_upload_hash_init(hu_upload_hash *h, void *data);

/* Hashes a piece in the calling thread. */
void hu_upload_hash_update(hu_upload_hash *h, const char *p, size_t n);

/* Hashes a piece on the thread pool, then calls done on the loop thread. 0, or a negative
 * errno when the job could not be queued (done is not called; h->err is set). */
int hu_upload_hash_queue(hu_upload_hash *h, uv_loop_t *loop, const char *p, size_t n,
                         hu_upload_hash_cb done);

/* The digest of everything hashed, as 64 hex digits and a NUL; 0 or -EIO. */
int hu_upload_hash_final(hu_upload_hash *h, char hex[65]);

void hu_upload_hash_free(hu_upload_hash *h);

#endif
