/* The token library and its codecs. The expected MACs were computed independently with
 * OpenSSL's command line, e.g.
 *   printf 'bearer\000alice@example.org\000abc-slot/photo.jpg\0001234\000image/jpeg\0001800000000' |
 *     openssl dgst -sha256 -mac HMAC -macopt key:unit-test-secret-0123456789 -binary | basenc --base64url
 */
#include <errno.h>

#include "check.h"
#include "codec.h"
#include "token.h"

#define SECRET HU_SLICE("unit-test-secret-0123456789")

static hu_bearer_fields alice(void)
{
    hu_bearer_fields f = {HU_SLICE("alice@example.org"), HU_SLICE("abc-slot/photo.jpg"), 1234,
                          HU_SLICE("image/jpeg"), 1800000000};
    return f;
}

TEST(bearer_mint_matches_openssl)
{
    char tok[HU_BEARER_TOKEN_LEN + 1];
    hu_bearer_fields f = alice();
    CHECK_INT(hu_bearer_mint(SECRET, &f, tok), 0);
    CHECK_STR(tok, "yJgfcLTpU7AXr7FTvH06MkVyBqR08FNG8TOHBH9XII8");
    hu_bearer_fields g = {HU_SLICE("j\xc3\xbcrgen@example.org"), HU_SLICE("s/na\xc3\xafve file.pdf"),
                          0, HU_SLICE("application/pdf"), 0};
    CHECK_INT(hu_bearer_mint(SECRET, &g, tok), 0);
    CHECK_STR(tok, "N0wRrwV8vGe_gznLbF81rjb9R54S9f4U2wjIlRryko4");
}

TEST(bearer_verify_checks_mac_then_expiry)
{
    hu_bearer_fields f = alice();
    hu_slice tok = HU_SLICE("yJgfcLTpU7AXr7FTvH06MkVyBqR08FNG8TOHBH9XII8");
    CHECK_INT(hu_bearer_verify(SECRET, &f, tok, 1800000000), 0);
    CHECK_INT(hu_bearer_verify(SECRET, &f, tok, 1800000001), -ETIME);
    f.size = 1235;
    CHECK_INT(hu_bearer_verify(SECRET, &f, tok, 1), -EACCES);
    f = alice();
    f.type = HU_SLICE("image/png");
    CHECK_INT(hu_bearer_verify(SECRET, &f, tok, 1), -EACCES);
    f = alice();
    CHECK_INT(hu_bearer_verify(HU_SLICE("another-secret-0123456789"), &f, tok, 1), -EACCES);
    /* an expired forgery is a forgery, not "expired" */
    CHECK_INT(hu_bearer_verify(SECRET, &f, HU_SLICE("AAAAfcLTpU7AXr7FTvH06MkVyBqR08FNG8TOHBH9XII8"), 1),
              -EINVAL);
    CHECK_INT(hu_bearer_verify(SECRET, &f, HU_SLICE("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 2000000000),
              -EACCES);
}

TEST(bearer_refuses_malformed)
{
    hu_bearer_fields f = alice();
    char tok[HU_BEARER_TOKEN_LEN + 1];
    CHECK_INT(hu_bearer_verify(SECRET, &f, HU_SLICE("yJgfcLTpU7AXr7FTvH06MkVyBqR08FNG8TOHBH9XII8="), 1), -EINVAL);
    CHECK_INT(hu_bearer_verify(SECRET, &f, HU_SLICE("yJgfcLTpU7AXr7FTvH06MkVyBqR08FNG8TOHBH9XII+"), 1), -EINVAL);
    /* non-canonical trailing bits: the same MAC spelled differently is refused */
    CHECK_INT(hu_bearer_verify(SECRET, &f, HU_SLICE("yJgfcLTpU7AXr7FTvH06MkVyBqR08FNG8TOHBH9XII9"), 1), -EINVAL);
    CHECK_INT(hu_bearer_verify(SECRET, &f, HU_SLICE(""), 1), -EINVAL);
    f.user = HU_SLICE("");
    CHECK_INT(hu_bearer_mint(SECRET, &f, tok), -EINVAL);
    f = alice();
    f.path = (hu_slice){"a\0b", 3};
    CHECK_INT(hu_bearer_mint(SECRET, &f, tok), -EINVAL);
    f = alice();
    f.expires = -1;
    CHECK_INT(hu_bearer_mint(SECRET, &f, tok), -EINVAL);
    f = alice();
    CHECK_INT(hu_bearer_mint(HU_SLICE(""), &f, tok), -EINVAL);
}

TEST(legacy_v1_v2_token_match_openssl)
{
    hu_slice p = HU_SLICE("abc-slot/photo.jpg"), t = HU_SLICE("image/jpeg");
    hu_slice v1 = HU_SLICE("ca0ef57fbc8f852327594497198802f87efc7e5628e2404c40fe097f2d90a7e9");
    hu_slice v2 = HU_SLICE("470cb2fef2cfdf93ffaed11deae673539ef4245b1b200fb95ec8c97c3572a694");
    hu_slice v2_upper = HU_SLICE("470CB2FEF2CFDF93FFAED11DEAE673539EF4245B1B200FB95EC8C97C3572A694");
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_V1, p, 1234, t, v1), 0);
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_V1, p, 1234, HU_SLICE("x/y"), v1), 0);
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_V1, p, 1235, t, v1), -EACCES);
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_V2, p, 1234, t, v2), 0);
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_TOKEN, p, 1234, t, v2_upper), 0);
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_V2, p, 1234, HU_SLICE("image/png"), v2), -EACCES);
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_V2, p, 1234, t, v1), -EACCES);
    /* ejabberd's external_secret signs three segments: <user>/<random>/<file> */
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_V1, HU_SLICE("alice@example.org/r4nd0m/photo.jpg"), 1234, t,
                               HU_SLICE("38dbd374f99806beb1d7bc09d8d56f943c72d8bff73fd0a5f140328ca4b612d1")),
              0);
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_V1, p, 1234, t, HU_SLICE("ca0e")), -EINVAL);
    CHECK_INT(hu_legacy_verify(SECRET, HU_LEGACY_V1, p, 1234, t,
                               HU_SLICE("za0ef57fbc8f852327594497198802f87efc7e5628e2404c40fe097f2d90a7e9")),
              -EINVAL);
}

TEST(parse_u64_is_strict)
{
    uint64_t v = 7;
    CHECK_INT(hu_parse_u64(HU_SLICE("0"), &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(hu_parse_u64(HU_SLICE("18446744073709551615"), &v), 0);
    CHECK(v == UINT64_MAX);
    CHECK_INT(hu_parse_u64(HU_SLICE("18446744073709551616"), &v), -EINVAL);
    CHECK_INT(hu_parse_u64(HU_SLICE("01"), &v), -EINVAL);
    CHECK_INT(hu_parse_u64(HU_SLICE("+1"), &v), -EINVAL);
    CHECK_INT(hu_parse_u64(HU_SLICE(" 1"), &v), -EINVAL);
    CHECK_INT(hu_parse_u64(HU_SLICE("1a"), &v), -EINVAL);
    CHECK_INT(hu_parse_u64(HU_SLICE(""), &v), -EINVAL);
}

TEST(codecs_round_trip)
{
    uint8_t in[5] = {0xfb, 0xff, 0x00, 0x10, 0x80}, out[8];
    char enc[16];
    for (size_t n = 0; n <= 5; n++) {
        size_t el = hu_b64url_encode(in, n, enc);
        CHECK_INT(el, HU_B64URL_LEN(n));
        CHECK_INT(hu_b64url_decode(enc, el, out, sizeof out), n);
        CHECK(memcmp(in, out, n) == 0);
    }
    hu_b64url_encode(in, 3, enc);
    CHECK_STR(enc, "-_8A");
    CHECK_INT(hu_b64url_decode("-_8A", 4, out, 2), -EINVAL);
    CHECK_INT(hu_b64url_decode("A", 1, out, 8), -EINVAL);
    hu_hex_encode(in, 5, enc);
    CHECK_STR(enc, "fbff001080");
    CHECK_INT(hu_hex_decode("FBff001080", 10, out, 5), 0);
    CHECK(memcmp(in, out, 5) == 0);
    CHECK_INT(hu_hex_decode("fbff00108", 9, out, 5), -EINVAL);
    CHECK_INT(hu_hex_decode("fbff00108g", 10, out, 5), -EINVAL);
}

TEST(ct_equal)
{
    CHECK(hu_ct_equal("abc", "abc", 3));
    CHECK(!hu_ct_equal("abc", "abd", 3));
}

TEST_MAIN({
    RUN(bearer_mint_matches_openssl);
    RUN(bearer_verify_checks_mac_then_expiry);
    RUN(bearer_refuses_malformed);
    RUN(legacy_v1_v2_token_match_openssl);
    RUN(parse_u64_is_strict);
    RUN(codecs_round_trip);
    RUN(ct_equal);
})
