/* PUT authorization: every way a request can be refused before its body is read. Tokens are
 * minted with the token library (its own vectors are checked independently in test_token). */
#include <errno.h>
#include <openssl/hmac.h>
#include <stdlib.h>

#include "check.h"
#include "http_request.h"
#include "upload_auth.h"

#define NOW 1800000000
#define SECRET "unit-test-secret-0123456789"
#define SLOT "6f1c2a0e-3b7d-4c55-9a2e-0d9b1e2f3a4b"

static char *exts_jpg_png[] = {".jpg", ".png"};

static hu_config test_config(void) {
    static char secret[] = SECRET, old[] = "previous-secret-abcdefghij";
    hu_config c;
    memset(&c, 0, sizeof c);
    c.url_prefix = "/upload";
    c.secrets[0] = secret;
    c.secret_lens[0] = strlen(secret);
    c.secrets[1] = old;
    c.secret_lens[1] = strlen(old);
    c.n_secrets = 2;
    c.max_size = 1000;
    return c;
}

static hu_http_parser parser;

static const hu_http_head *parse(const char *req) {
    hu_http_parser_free(&parser);
    hu_http_parser_init(&parser);
    int done = 0;
    long n = hu_http_parser_feed(&parser, req, strlen(req), &done);
    return n > 0 && done ? parser.head : NULL;
}

static void bearer(const char *secret, const char *user, const char *path, uint64_t size,
                   const char *type, int64_t expires, char out[HU_BEARER_TOKEN_LEN + 1]) {
    hu_bearer_fields f = {HU_CSTR(user), HU_CSTR(path), size, HU_CSTR(type), expires};
    if (hu_bearer_mint(HU_CSTR(secret), &f, out) != 0)
        abort();
}

static int authorize(const hu_config *cfg, const char *req, hu_upload_grant *g) {
    const hu_http_head *h = parse(req);
    return h ? hu_upload_authorize(cfg, h, NOW, g) : -999;
}

TEST(bearer_in_header) {
    hu_config cfg = test_config();
    char tok[HU_BEARER_TOKEN_LEN + 1], req[1024];
    bearer(SECRET, "a+b@example.org", SLOT "/my photo.jpg", 5, "image/jpeg", NOW + 60, tok);
    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/my%%20photo.jpg?user=a%%2Bb%%40example.org&type=image%%2Fjpeg"
             "&expires=%d HTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Length: 5\r\n"
             "Content-Type: text/plain\r\n\r\n", NOW + 60, tok);
    hu_upload_grant g;
    CHECK_INT(authorize(&cfg, req, &g), 0);
    CHECK_STR(g.path, SLOT "/my photo.jpg");
    CHECK_STR(g.user, "a+b@example.org");
    CHECK_STR(g.type, "image/jpeg"); /* the signed type, not the PUT's */
    CHECK_STR(g.scheme, "bearer");
    CHECK_INT(g.size, 5);
}

TEST(bearer_in_query_and_previous_secret) {
    hu_config cfg = test_config();
    char tok[HU_BEARER_TOKEN_LEN + 1], req[1024];
    bearer("previous-secret-abcdefghij", "u@h", SLOT "/a.png", 0, "application/octet-stream",
           NOW, tok);
    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.png?user=u%%40h&expires=%d&token=%s HTTP/1.1\r\n"
             "Content-Length: 0\r\n\r\n", NOW, tok);
    hu_upload_grant g;
    CHECK_INT(authorize(&cfg, req, &g), 0);
    CHECK_STR(g.type, "application/octet-stream");
}

TEST(bearer_refusals) {
    hu_config cfg = test_config();
    char tok[HU_BEARER_TOKEN_LEN + 1], req[1024];
    hu_upload_grant g;
    bearer(SECRET, "u@h", SLOT "/a.png", 5, "image/png", NOW - 1, tok);
    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.png?user=u%%40h&type=image%%2Fpng&expires=%d HTTP/1.1\r\n"
             "Authorization: Bearer %s\r\nContent-Length: 5\r\n\r\n", NOW - 1, tok);
    CHECK_INT(authorize(&cfg, req, &g), -ETIME);

    bearer(SECRET, "u@h", SLOT "/a.png", 5, "image/png", NOW + 9, tok);
    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.png?user=u%%40h&type=image%%2Fpng&expires=%d HTTP/1.1\r\n"
             "Authorization: Bearer %s\r\nContent-Length: 6\r\n\r\n", NOW + 9, tok);
    CHECK_INT(authorize(&cfg, req, &g), -EACCES); /* Content-Length != signed size */

    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.png?user=v%%40h&type=image%%2Fpng&expires=%d HTTP/1.1\r\n"
             "Authorization: Bearer %s\r\nContent-Length: 5\r\n\r\n", NOW + 9, tok);
    CHECK_INT(authorize(&cfg, req, &g), -EACCES); /* another user */

    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.png?user=u%%40h&type=image%%2Fpng&expires=%d HTTP/1.1\r\n"
             "Content-Length: 5\r\n\r\n", NOW + 9);
    CHECK_INT(authorize(&cfg, req, &g), -EACCES); /* no token at all */

    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.png?user=u%%40h&type=image%%2Fpng&expires=%d HTTP/1.1\r\n"
             "Authorization: Bearer %s\r\nContent-Length: 5000\r\n\r\n", NOW + 9, tok);
    CHECK_INT(authorize(&cfg, req, &g), -EFBIG);

    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.png?user=u%%40h&expires=%d HTTP/1.1\r\n"
             "Authorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n", NOW + 9, tok);
    CHECK_INT(authorize(&cfg, req, &g), -ENODATA);

    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.png?user=u%%40h&type=image%%2Fpng&expires=1x HTTP/1.1\r\n"
             "Authorization: Bearer %s\r\nContent-Length: 5\r\n\r\n", tok);
    CHECK_INT(authorize(&cfg, req, &g), -EINVAL);
}

TEST(extension_and_strict_type) {
    hu_config cfg = test_config();
    char tok[HU_BEARER_TOKEN_LEN + 1], req[1024];
    hu_upload_grant g;
    bearer(SECRET, "u@h", SLOT "/a.exe", 1, "image/png", NOW + 9, tok);
    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.exe?user=u%%40h&type=image%%2Fpng&expires=%d HTTP/1.1\r\n"
             "Authorization: Bearer %s\r\nContent-Length: 1\r\n\r\n", NOW + 9, tok);
    cfg.allowed_extensions = exts_jpg_png;
    cfg.n_allowed_extensions = 2;
    CHECK_INT(authorize(&cfg, req, &g), -EPERM);

    bearer(SECRET, "u@h", SLOT "/a.PNG", 1, "image/png", NOW + 9, tok);
    snprintf(req, sizeof req,
             "PUT /upload/" SLOT "/a.PNG?user=u%%40h&type=image%%2Fpng&expires=%d HTTP/1.1\r\n"
             "Authorization: Bearer %s\r\nContent-Length: 1\r\nContent-Type: image/gif\r\n\r\n",
             NOW + 9, tok);
    CHECK_INT(authorize(&cfg, req, &g), 0);
    cfg.strict_content_type = 1;
    CHECK_INT(authorize(&cfg, req, &g), -EMEDIUMTYPE);
}

TEST(legacy_tokens_only_when_enabled) {
    hu_config cfg = test_config();
    hu_upload_grant g;
    /* v1 = hex(HMAC(secret, P " " S)) */
    const char *v1 = "PUT /upload/user/rnd/f.jpg?v=%s HTTP/1.1\r\nContent-Length: 3\r\n"
                     "Content-Type: image/jpeg\r\n\r\n";
    char hex[65], req[512];
    unsigned char mac[32];
    unsigned int len;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)"user/rnd/f.jpg 3", 16,
         mac, &len);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", mac[i]);
    snprintf(req, sizeof req, v1, hex);
    CHECK_INT(authorize(&cfg, req, &g), -EACCES);
    cfg.legacy_protocols = HU_LEGACY_V1;
    CHECK_INT(authorize(&cfg, req, &g), 0);
    CHECK_STR(g.scheme, "v1");
    CHECK_STR(g.user, "");
    CHECK_STR(g.type, "image/jpeg");
    CHECK_STR(g.path, "user/rnd/f.jpg");
}

TEST(paths) {
    hu_config cfg = test_config();
    hu_upload_grant g;
    CHECK_INT(authorize(&cfg, "PUT /other/s/f.jpg?v=00 HTTP/1.1\r\nContent-Length: 1\r\n\r\n", &g),
              -ENOENT);
    CHECK_INT(authorize(&cfg, "PUT /upload/%2e%2e/f.jpg?v=00 HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
                        &g), -EINVAL);
    CHECK_INT(authorize(&cfg, "PUT /upload/s//f.jpg?v=00 HTTP/1.1\r\nContent-Length: 1\r\n\r\n", &g),
              -EINVAL);
    char out[64];
    const hu_http_head *h = parse("GET /upload/s/a%2Fb HTTP/1.1\r\n\r\n");
    CHECK_INT(hu_request_path(&cfg, h, out, sizeof out), -EINVAL);
}

TEST_MAIN({
    RUN(bearer_in_header);
    RUN(bearer_in_query_and_previous_secret);
    RUN(bearer_refusals);
    RUN(extension_and_strict_type);
    RUN(legacy_tokens_only_when_enabled);
    RUN(paths);
    hu_http_parser_free(&parser);
})
