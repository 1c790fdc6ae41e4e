/* Fuzzes upload-path handling: whatever it accepts must be a relative path of checked
 * segments that cannot leave storage_dir. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "upload_path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[HU_MAX_PATH_LEN + 1];
    hu_slice raw = {(const char *)data, size};
    long n = hu_upload_path_parse(raw, HU_SLICE("/upload"), out, sizeof out);
    if (n < 0) return 0;
    if ((size_t)n != strlen(out) || out[0] == '/' || strstr(out, "//") || strstr(out, "/.") ||
        out[0] == '.' || strchr(out, '\\'))
        abort();
    hu_slice p = {out, (size_t)n};
    hu_slice base = hu_upload_path_basename(p);
    if (hu_segment_check(base) != 0) abort();
    hu_mime_from_filename(base);
    hu_content_type_check(p);
    hu_mime_is_active(p);
    return 0;
}
