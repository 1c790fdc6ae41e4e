/* The sha256 of a PUT body, computed beside the writes instead of after each of them: a job
 * on the thread pool reads back from the upload file (the page cache) what the writes have
 * put there so far, while the next pieces are received and written. The pieces' buffers go
 * back to the connection as soon as they are written; the hash follows on another core, as
 * far behind as the caller lets it. One job at a time per upload; the bytes are hashed in
 * order: from the file, or from memory for a piece the caller holds (the last one, or each
 * piece when the caller's write job hashes it itself: then no hash job runs, and done and
 * ctx are that job's until it ends). */
#ifndef HU_UPLOAD_HASH_H
#define HU_UPLOAD_HASH_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct hu_upload_hash hu_upload_hash;
typedef void (*hu_upload_hash_cb)(hu_upload_hash *h);

struct hu_upload_hash {
    uv_work_t work; /* first: the request is the job */
    EVP_MD_CTX *ctx;
    int fd;         /* the upload file, read back */
    uint64_t base;  /* the file offset of the body's first byte */
    uint64_t done;  /* body bytes hashed */
    uint64_t known; /* done as the loop thread may read it: as of the last job's end */
    uint64_t upto;  /* the running job's goal */
    int running;    /* a job is running (done and ctx are its own until cb) */
    int err;        /* 0, or a negative errno once a read or an update failed (sticky) */
    hu_upload_hash_cb cb;
    void *data; /* the caller's */
};

/* A digest of the body that starts at file offset base of fd. 0, -ENOMEM or -EIO. */
int hu_upload_hash_init(hu_upload_hash *h, int fd, uint64_t base, void *data);

/* Hashes n bytes held in memory, the next ones of the body (at done), in the calling thread. */
void hu_upload_hash_piece(hu_upload_hash *h, const char *p, size_t n);

/* Hashes the body from done up to upto, read back from the file, in the calling thread. */
void hu_upload_hash_file(hu_upload_hash *h, uint64_t upto);

/* The same on the thread pool; cb runs on the loop thread when it is done. 0, or a negative
 * errno when the job could not be queued (cb is not called; h->err says so). */
int hu_upload_hash_start(hu_upload_hash *h, uv_loop_t *loop, uint64_t upto, hu_upload_hash_cb cb);

/* The digest of everything hashed, as 64 hex digits and a NUL; 0 or a negative errno. */
int hu_upload_hash_final(hu_upload_hash *h, char hex[65]);

void hu_upload_hash_free(hu_upload_hash *h);

#endif
