/* The media metadata of a finished upload (c_src/media), computed on the thread pool just
 * before the file is published, so the record, the ledger and the 201 all have it: the type
 * its bytes say, and for images their size, a BlurHash and a thumbnail (stored once the file
 * is published: never beside a file this upload did not publish). Bounded: images above
 * media_max_pixels are not decoded, the rest are decoded at reduced scale. */
#ifndef HU_UPLOAD_MEDIA_H
#define HU_UPLOAD_MEDIA_H

#include <stdint.h>

#include "config.h"
#include "file_meta.h"

/* A thumbnail made by the probe, for hu_storage_put_thumbnail once the file is published. */
typedef struct {
    unsigned char *data; /* malloc'd; NULL when none */
    size_t len;
} hu_upload_thumb;

/* Probes the upload file (fd, readable, size bytes; images over 64 MiB are typed, not decoded) and
 * fills m's media fields; *thumb gets the thumbnail when there is one (m->thumbnail is then
 * set; the caller stores it and frees data). Never fails the upload: a file it cannot read or
 * decode just has no media metadata (m->media_type stays "" when it could not look at all, or
 * did not: a file signed as application/octet-stream is not probed). */
void hu_upload_media_probe(const hu_config *cfg, int fd, uint64_t size, hu_file_meta *m,
                           hu_upload_thumb *thumb);

#endif
