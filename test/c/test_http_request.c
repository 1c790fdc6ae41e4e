#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "http_request.h"

/* Feeds text in pieces of `step` bytes until a head completes; returns bytes consumed or the
 * error. */
static long feed_all(hu_http_parser *p, const char *text, size_t step, int *done) {
    size_t len = strlen(text), off = 0;
    *done = 0;
    while (off < len && !*done) {
        size_t n = len - off < step ? len - off : step;
        long used = hu_http_parser_feed(p, text + off, n, done);
        if (used < 0)
            return used;
        off += (size_t)used;
    }
    return (long)off;
}

TEST(parses_a_put_head) {
    hu_http_parser p;
    hu_http_parser_init(&p);
    int done;
    const char *req = "PUT /upload/s/a.jpg?token=x&v=1 HTTP/1.1\r\nHost: h\r\n"
                      "Content-Length: 12\r\nExpect: 100-continue\r\nContent-Type: image/jpeg\r\n\r\n";
    long n = feed_all(&p, req, 4096, &done);
    CHECK_INT(n, strlen(req));
    CHECK_INT(done, 1);
    hu_http_head *h = p.head;
    CHECK_INT(h->method, HU_METHOD_PUT);
    CHECK_MEM(h->path.ptr, h->path.len, "/upload/s/a.jpg");
    CHECK_MEM(h->query.ptr, h->query.len, "token=x&v=1");
    CHECK_INT(h->has_content_length, 1);
    CHECK_INT(h->content_length, 12);
    CHECK_INT(h->expect_continue, 1);
    CHECK_INT(h->keep_alive, 1);
    hu_slice ct = hu_http_header(h, "content-type");
    CHECK_MEM(ct.ptr, ct.len, "image/jpeg");
    CHECK(hu_http_header(h, "Authorization").ptr == NULL);
    hu_http_parser_free(&p);
}

TEST(byte_by_byte_equals_one_piece) {
    hu_http_parser p;
    hu_http_parser_init(&p);
    int done;
    const char *req = "GET /upload/slot/file%20name.png HTTP/1.1\r\nHost: example\r\n"
                      "Range: bytes=0-9\r\nIf-None-Match: \"abc\"\r\n\r\n";
    CHECK_INT(feed_all(&p, req, 1, &done), strlen(req));
    CHECK_INT(done, 1);
    CHECK_MEM(p.head->path.ptr, p.head->path.len, "/upload/slot/file%20name.png");
    CHECK(p.head->query.ptr == NULL);
    hu_slice r = hu_http_header(p.head, "Range");
    CHECK_MEM(r.ptr, r.len, "bytes=0-9");
    hu_slice inm = hu_http_header(p.head, "If-None-Match");
    CHECK_MEM(inm.ptr, inm.len, "\"abc\"");
    CHECK_INT(p.head->n_headers, 3);
    hu_http_parser_free(&p);
}

TEST(stops_after_each_pipelined_head) {
    hu_http_parser p;
    hu_http_parser_init(&p);
    const char *two = "GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\nConnection: close\r\n\r\n";
    int done;
    long n = hu_http_parser_feed(&p, two, strlen(two), &done);
    CHECK_INT(done, 1);
    CHECK_INT(n, strlen("GET /a HTTP/1.1\r\n\r\n"));
    CHECK_MEM(p.head->path.ptr, p.head->path.len, "/a");
    hu_http_parser_next(&p);
    long m = hu_http_parser_feed(&p, two + n, strlen(two) - (size_t)n, &done);
    CHECK_INT(done, 1);
    CHECK_INT(n + m, strlen(two));
    CHECK_INT(p.head->method, HU_METHOD_HEAD);
    CHECK_INT(p.head->keep_alive, 0);
    hu_http_parser_free(&p);
}

TEST(body_bytes_are_left_to_the_caller) {
    hu_http_parser p;
    hu_http_parser_init(&p);
    const char *req = "PUT /u/s/f HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
    int done;
    long n = hu_http_parser_feed(&p, req, strlen(req), &done);
    CHECK_INT(done, 1);
    CHECK_MEM(req + n, 5, "hello");
    hu_http_parser_next(&p);
    long m = hu_http_parser_feed(&p, req + n + 5, strlen(req) - (size_t)n - 5, &done);
    CHECK_INT(done, 1);
    CHECK_INT(m, strlen("GET / HTTP/1.1\r\n\r\n"));
    CHECK_INT(p.head->method, HU_METHOD_GET);
    hu_http_parser_free(&p);
}

TEST(flags_chunked_bodies) {
    hu_http_parser p;
    hu_http_parser_init(&p);
    int done;
    feed_all(&p, "PUT /u/s/f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 4096, &done);
    CHECK_INT(done, 1);
    CHECK_INT(p.head->chunked, 1);
    CHECK_INT(p.head->has_content_length, 0);
    hu_http_parser_free(&p);
}

TEST(refuses_too_many_headers) {
    hu_http_parser p;
    hu_http_parser_init(&p);
    char req[8192] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < HU_MAX_HEADERS + 1; i++)
        sprintf(req + strlen(req), "X-%d: v\r\n", i);
    strcat(req, "\r\n");
    int done;
    CHECK_INT(feed_all(&p, req, 100, &done), -E2BIG);
    hu_http_parser_free(&p);
}

TEST(refuses_an_oversized_head) {
    hu_http_parser p;
    hu_http_parser_init(&p);
    size_t big = HU_MAX_HEAD_BYTES + 100;
    char *req = malloc(big + 64);
    strcpy(req, "GET / HTTP/1.1\r\nX-Big: ");
    size_t o = strlen(req);
    memset(req + o, 'a', big);
    strcpy(req + o + big, "\r\n\r\n");
    int done;
    long rc = feed_all(&p, req, 1000, &done);
    free(req);
    CHECK_INT(rc, -E2BIG);
    hu_http_parser_free(&p);
}

TEST(refuses_malformed_and_unsupported) {
    const struct {
        const char *req;
        long err;
    } cases[] = {
        {"GARBAGE\r\n\r\n", -EINVAL},
        {"GET / HTTP/2.0\r\n\r\n", -EPROTONOSUPPORT},
        {"CONNECT a:443 HTTP/1.1\r\n\r\n", -ENOSYS},
        {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", -ENOSYS},
        {"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -EINVAL},
        {"PUT / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", -EINVAL},
        {"GET / HTTP/1.1\r\nX\x01y: x\r\n\r\n", -EINVAL},
        {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", -EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hu_http_parser p;
        hu_http_parser_init(&p);
        int done;
        long rc = feed_all(&p, cases[i].req, 4096, &done);
        hu_http_parser_free(&p);
        if (rc != cases[i].err)
            fprintf(stderr, "case %zu: %s\n", i, cases[i].req);
        CHECK_INT(rc, cases[i].err);
    }
}

TEST_MAIN({
    RUN(parses_a_put_head);
    RUN(byte_by_byte_equals_one_piece);
    RUN(stops_after_each_pipelined_head);
    RUN(body_bytes_are_left_to_the_caller);
    RUN(flags_chunked_bodies);
    RUN(refuses_too_many_headers);
    RUN(refuses_an_oversized_head);
    RUN(refuses_malformed_and_unsupported);
})
