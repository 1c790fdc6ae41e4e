/* HTTP statuses the server sends, and the one table that maps internal negative errno values
 * to them (libuv / lwan style X-macros). */
#ifndef HU_HTTP_STATUS_H
#define HU_HTTP_STATUS_H

#define HU_HTTP_STATUSES(X)                                                                \
    X(100, "Continue")                                                                     \
    X(200, "OK")                                                                           \
    X(201, "Created")                                                                      \
    X(204, "No Content")                                                                   \
    X(206, "Partial Content")                                                              \
    X(304, "Not Modified")                                                                 \
    X(400, "Bad Request")                                                                  \
    X(403, "Forbidden")                                                                    \
    X(404, "Not Found")                                                                    \
    X(405, "Method Not Allowed")                                                           \
    X(408, "Request Timeout")                                                              \
    X(409, "Conflict")                                                                     \
    X(411, "Length Required")                                                              \
    X(412, "Precondition Failed")                                                          \
    X(413, "Content Too Large")                                                            \
    X(415, "Unsupported Media Type")                                                       \
    X(416, "Range Not Satisfiable")                                                        \
    X(423, "Locked")                                                                       \
    X(429, "Too Many Requests")                                                            \
    X(431, "Request Header Fields Too Large")                                              \
    X(500, "Internal Server Error")                                                        \
    X(501, "Not Implemented")                                                              \
    X(503, "Service Unavailable")                                                          \
    X(505, "HTTP Version Not Supported")                                                   \
    X(507, "Insufficient Storage")

/* errno -> status; anything not listed is 500. */
#define HU_ERRNO_STATUSES(X)                                                               \
    X(EINVAL, 400)      /* malformed request, path or query */                             \
    X(EACCES, 403)      /* token does not verify */                                        \
    X(ETIME, 403)       /* token expired */                                                \
    X(EPERM, 403)       /* file extension not allowed */                                   \
    X(ENOENT, 404)                                                                         \
    X(ETIMEDOUT, 408)                                                                      \
    X(EEXIST, 409)      /* slot already used */                                            \
    X(EBUSY, 409)       /* slot being uploaded right now */                                \
    X(ENODATA, 411)     /* no Content-Length */                                            \
    X(EFBIG, 413)       /* over max_size */                                                \
    X(EMEDIUMTYPE, 415) /* Content-Type differs from the signed one (strict mode) */       \
    X(ERANGE, 416)                                                                         \
    X(ENOLCK, 423)      /* tus HEAD: another request is still writing this upload */       \
    X(EUSERS, 429)      /* over a rate limit (rate_limit_per_ip, rate_limit_per_user) */  \
    X(E2BIG, 431)       /* header too large or too many headers */                         \
    X(ENOSYS, 501)      /* method or feature not implemented */                           \
    X(EAGAIN, 503)      /* the ledger stayed locked or busy past its timeout */            \
    X(ENOTCONN, 503)    /* the ledger (PostgreSQL) cannot be reached right now */          \
    X(ESTALE, 503)      /* the slot's reservation changed while its upload was stored */  \
    X(EPROTONOSUPPORT, 505)                                                                \
    X(ENOSPC, 507)                                                                         \
    X(EDQUOT, 507)

const char *hu_status_reason(int status);
int hu_status_from_errno(int neg_errno);

#endif
