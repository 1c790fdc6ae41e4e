/* One line per request, in a Common-Log-like format:
 *   127.0.0.1 - alice@example.org [2026-11-23T03:24:56Z] "PUT /upload/<slot>/a.jpg" 201 0 12.345ms
 * The query string is never logged (it may carry a token); bytes outside printable ASCII in
 * the path are written as \xNN so a log line is always one line. */
#ifndef HU_ACCESS_LOG_H
#define HU_ACCESS_LOG_H

#include <stdint.h>
#include <stdio.h>

void hu_access_log_write(FILE *f, const char *peer, const char *user, const char *method,
                         const char *target, int status, uint64_t bytes_out,
                         uint64_t duration_ns);

#endif
