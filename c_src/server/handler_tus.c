/* tus 1.0 core on the slot URL, for resuming a cut upload (README: "Resumable uploads"):
 * HEAD reports Upload-Offset, PATCH appends at it. The Bearer token of the slot authorizes
 * both, checked against the size recorded when the upload started. */
#include <errno.h>
#include <sys/stat.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <time.h>

#include "handlers.h"
#include "http_status.h"
#include "storage.h"
#include "upload.h"

static int header_is(const hu_http_head *h, const char *name, const char *value) {
    hu_slice v = hu_http_header(h, name);
    return v.ptr != NULL && v.len == strlen(value) && strncasecmp(v.ptr, value, v.len) == 0;
}

/* 412 with the version we speak, as tus says for an unsupported Tus-Resumable. */
static int version_ok(hu_conn *c, const hu_http_head *h) {
    if (header_is(h, "Tus-Resumable", HU_TUS_VERSION))
        return 1;
    hu_response *r = &c->resp;
    hu_response_start(r, 412, &c->set->cfg, h);
    hu_response_header(r, "Tus-Version", HU_TUS_VERSION);
    hu_response_header(r, "Content-Length", "0");
    hu_response_end(r, 0);
    hu_conn_send(c, NULL, 0, hu_conn_close);
    return 0;
}

/* The upload's state: its partial file and what was signed, or the published file. */
typedef struct {
    hu_file_meta m;
    uint64_t offset;
    int complete;
} tus_state;

static int load_state(hu_conn *c, const hu_http_head *h, tus_state *s, hu_upload_grant *g) {
    const hu_storage *st = &c->set->storage;
    char path[HU_MAX_PATH_LEN + 1], key[HU_STORAGE_KEY_LEN + 1];
    long n = hu_request_path(&c->set->cfg, h, path, sizeof path);
    if (n < 0)
        return (int)n;
    hu_storage_key(path, (size_t)n, key);
    /* the offset is not settled while a request still writes the file (a cut connection
     * whose last bytes are still being stored, or a request on another server sharing the
     * storage, whose lock on the partial file says so): 423, and the client asks again */
    if (hu_upload_key_busy(c->srv, key) || hu_storage_partial_busy(st, key) == 1)
        return -ENOLCK;
    s->complete = 0;
    int rc = hu_storage_load_resume(st, key, &s->m, &s->offset);
    if (rc == -ENOENT) {
        /* Already published: the upload is complete at its full length. */
        int fd;
        struct stat sb;
        if (hu_storage_open_file(st, path, (size_t)n, &fd, &sb, &s->m) < 0)
            return -ENOENT;
        close(fd);
        s->complete = 1;
        s->offset = s->m.size = (uint64_t)sb.st_size;
    } else if (rc < 0) {
        return rc;
    }
    return hu_upload_authorize_resume(&c->set->cfg, h, (int64_t)time(NULL), s->m.size, g);
}

void hu_handle_tus_head(hu_conn *c, const hu_http_head *h) {
    if (!version_ok(c, h))
        return;
    tus_state s;
    hu_upload_grant g;
    int rc = load_state(c, h, &s, &g);
    if (rc < 0) {
        hu_conn_send_error(c, hu_status_from_errno(rc), 0);
        return;
    }
    hu_response *r = &c->resp;
    hu_response_start(r, 200, &c->set->cfg, h);
    hu_response_header(r, "Tus-Resumable", HU_TUS_VERSION);
    hu_response_header(r, "Upload-Offset", "%llu", (unsigned long long)s.offset);
    hu_response_header(r, "Upload-Length", "%llu", (unsigned long long)s.m.size);
    hu_response_header(r, "Cache-Control", "no-store");
    hu_response_header(r, "Content-Length", "0");
    hu_response_end(r, c->keep_alive);
    hu_conn_send(c, NULL, 0, NULL);
}

void hu_handle_patch(hu_conn *c, const hu_http_head *h) {
    if (!version_ok(c, h))
        return;
    tus_state s;
    hu_upload_grant g;
    uint64_t offset;
    hu_slice off = hu_http_header(h, "Upload-Offset");
    int rc = 0;
    if (!header_is(h, "Content-Type", "application/offset+octet-stream"))
        rc = -EMEDIUMTYPE;
    else if (off.ptr == NULL || hu_parse_u64(off, &offset) < 0)
        rc = -EINVAL;
    else if (h->chunked || !h->has_content_length)
        rc = -ENODATA;
    if (rc == 0)
        rc = load_state(c, h, &s, &g);
    if (rc == 0 && s.complete)
        rc = -EEXIST;
    if (rc < 0) {
        hu_conn_send_error(c, hu_status_from_errno(rc), 1);
        return;
    }
    hu_upload_start(c, h, &g, HU_UPLOAD_PATCH, offset);
}
