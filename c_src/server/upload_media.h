/* The media metadata of a finished upload (c_src/media), computed on the thread pool just
 * before the file is published, so the record, the ledger and the 201 all have it: the type
 * its bytes say, and for images their size, a BlurHash and a thumbnail. Bounded: images above
 * media_max_pixels are not decoded, the rest are decoded at reduced scale. */
#ifndef HU_UPLOAD_MEDIA_H
#define HU_UPLOAD_MEDIA_H

#include <stdint.h>

#include "config.h"
#include "file_meta.h"
#include "storage.h"

/* Probes the upload file (fd, readable, size bytes; files over 64 MiB are not probed) and
 * fills m's media fields; stores the
 * thumbnail of key when there is one. Never fails the upload: a file it cannot read or decode
 * just has no media metadata (m->media_type stays "" when it could not look at all). */
void hu_upload_media_probe(const hu_config *cfg, const hu_storage *st, const char *key, int fd,
                           uint64_t size, hu_file_meta *m);

#endif
