#include "access_log.h"

#include <inttypes.h>
#include <time.h>

#include "http_date.h"

static void put_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
}

void hu_access_log_write(FILE *f, const char *peer, const char *user, const char *method,
                         const char *target, int status, uint64_t bytes_out,
                         uint64_t duration_ns) {
    char when[24];
    hu_rfc3339_format((int64_t)time(NULL), when);
    fprintf(f, "%s - ", peer[0] ? peer : "-");
    if (user[0])
        put_escaped(f, user);
    else
        fputc('-', f);
    fprintf(f, " [%s] \"%s ", when, method);
    put_escaped(f, target);
    fprintf(f, "\" %d %" PRIu64 " %.3fms\n", status, bytes_out, (double)duration_ns / 1e6);
    fflush(f);
}
