#include "mime.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* Extensions clients commonly upload; anything else is served as HU_DEFAULT_TYPE. */
static const struct {
    const char *ext, *type;
} mime_table[] = {
    {"jpg", "image/jpeg"},        {"jpeg", "image/jpeg"},       {"png", "image/png"},
    {"gif", "image/gif"},         {"webp", "image/webp"},       {"heic", "image/heic"},
    {"heif", "image/heif"},       {"avif", "image/avif"},       {"bmp", "image/bmp"},
    {"svg", "image/svg+xml"},     {"ico", "image/x-icon"},      {"tif", "image/tiff"},
    {"tiff", "image/tiff"},       {"mp4", "video/mp4"},         {"m4v", "video/mp4"},
    {"webm", "video/webm"},       {"mkv", "video/x-matroska"},  {"mov", "video/quicktime"},
    {"3gp", "video/3gpp"},        {"avi", "video/x-msvideo"},   {"mp3", "audio/mpeg"},
    {"m4a", "audio/mp4"},         {"aac", "audio/aac"},         {"ogg", "audio/ogg"},
    {"oga", "audio/ogg"},         {"opus", "audio/ogg"},        {"flac", "audio/flac"},
    {"wav", "audio/wav"},         {"pdf", "application/pdf"},   {"txt", "text/plain"},
    {"md", "text/markdown"},      {"csv", "text/csv"},          {"html", "text/html"},
    {"htm", "text/html"},         {"xml", "application/xml"},   {"json", "application/json"},
    {"js", "text/javascript"},    {"css", "text/css"},          {"zip", "application/zip"},
    {"gz", "application/gzip"},   {"tar", "application/x-tar"}, {"7z", "application/x-7z-compressed"},
    {"doc", "application/msword"}, {"odt", "application/vnd.oasis.opendocument.text"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"apk", "application/vnd.android.package-archive"}, {"vcf", "text/vcard"},
};

const char *hu_mime_from_filename(hu_slice filename)
{
    const char *dot = NULL;
    for (size_t i = filename.len; i > 0; i--) {
        if (filename.ptr[i - 1] == '.') { dot = filename.ptr + i; break; }
        if (filename.ptr[i - 1] == '/') break;
    }
    if (!dot) return HU_DEFAULT_TYPE;
    size_t elen = (size_t)(filename.ptr + filename.len - dot);
    for (size_t k = 0; k < sizeof mime_table / sizeof mime_table[0]; k++)
        if (strlen(mime_table[k].ext) == elen && strncasecmp(dot, mime_table[k].ext, elen) == 0)
            return mime_table[k].type;
    return HU_DEFAULT_TYPE;
}

static int has_prefix_ci(hu_slice s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && strncasecmp(s.ptr, p, n) == 0;
}

int hu_mime_is_active(hu_slice type)
{
    size_t n = 0;
    while (n < type.len && type.ptr[n] != ';' && type.ptr[n] != ' ') n++;
    hu_slice t = {type.ptr, n};
    /* Inline only what browsers render passively; anything that can script goes as attachment. */
    static const char *const passive[] = {
        "image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/heic",
        "image/heif", "image/bmp", "image/tiff", "image/x-icon", "text/plain",
        "application/pdf", "application/octet-stream",
    };
    for (size_t k = 0; k < sizeof passive / sizeof passive[0]; k++)
        if (strlen(passive[k]) == t.len && strncasecmp(t.ptr, passive[k], t.len) == 0) return 0;
    if (has_prefix_ci(t, "audio/") || has_prefix_ci(t, "video/")) return 0;
    return 1;
}

static int tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

int hu_content_type_check(hu_slice type)
{
    if (!type.ptr || type.len == 0 || type.len > HU_MAX_TYPE_LEN) return -EINVAL;
    size_t i = 0, start = 0;
    while (i < type.len && tchar((unsigned char)type.ptr[i])) i++;
    if (i == start || i >= type.len || type.ptr[i] != '/') return -EINVAL;
    start = ++i;
    while (i < type.len && tchar((unsigned char)type.ptr[i])) i++;
    if (i == start) return -EINVAL;
    if (i < type.len && type.ptr[i] != ';' && type.ptr[i] != ' ') return -EINVAL;
    for (; i < type.len; i++) {
        unsigned char c = (unsigned char)type.ptr[i];
        if (c < 0x20 || c >= 0x7f) return -EINVAL;
    }
    return 0;
}
