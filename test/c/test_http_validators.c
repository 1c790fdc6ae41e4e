/* Dates, Range and conditional requests: the parts of GET that decide the status. */
#include <errno.h>

#include "check.h"
#include "http_conditional.h"
#include "http_date.h"
#include "http_range.h"

TEST(dates)
{
    char d[HU_HTTP_DATE_LEN + 1], r[HU_RFC3339_LEN + 1];
    hu_http_date_format(784111777, d);
    CHECK_STR(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    int64_t t = 0;
    CHECK_INT(hu_http_date_parse(HU_SLICE("Sun, 06 Nov 1994 08:49:37 GMT"), &t), 0);
    CHECK_INT(t, 784111777);
    CHECK_INT(hu_http_date_parse(HU_SLICE("Tue, 29 Feb 2028 23:59:59 GMT"), &t), 0);
    CHECK_INT(t, 1835481599);
    CHECK_INT(hu_http_date_parse(HU_SLICE("Sunday, 06-Nov-94 08:49:37 GMT"), &t), -EINVAL);
    CHECK_INT(hu_http_date_parse(HU_SLICE("Sun, 06 Nov 1994 08:49:37 UTC"), &t), -EINVAL);
    CHECK_INT(hu_http_date_parse(HU_SLICE("Sun, 06 Xyz 1994 08:49:37 GMT"), &t), -EINVAL);
    hu_rfc3339_format(1800000000, r);
    CHECK_STR(r, "2027-01-15T08:00:00Z");
}

TEST(ranges)
{
    hu_range r;
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=0-99"), 1000, &r), 1);
    CHECK_INT(r.first, 0);
    CHECK_INT(r.last, 99);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=900-"), 1000, &r), 1);
    CHECK_INT(r.last, 999);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=-100"), 1000, &r), 1);
    CHECK_INT(r.first, 900);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=-5000"), 1000, &r), 1);
    CHECK_INT(r.first, 0);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=990-5000"), 1000, &r), 1);
    CHECK_INT(r.last, 999);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=1000-"), 1000, &r), -ERANGE);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=-0"), 1000, &r), -ERANGE);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=5-1"), 1000, &r), 0);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=0-1,5-6"), 1000, &r), 0);
    CHECK_INT(hu_range_parse(HU_SLICE("items=0-1"), 1000, &r), 0);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=-"), 1000, &r), 0);
    CHECK_INT(hu_range_parse(HU_SLICE("bytes=99999999999999999999999-"), 1000, &r), 0);
}

TEST(conditionals)
{
    char e[HU_ETAG_MAX];
    size_t n = hu_etag_format(255, 16, e);
    CHECK_STR(e, "\"ff-10\"");
    hu_slice etag = {e, n};
    int64_t mtime = 784111777;
    hu_cond_headers h = {0};
    CHECK_INT(hu_conditional_eval(&h, etag, mtime, 1), 200);
    h.if_none_match = HU_SLICE("\"x\", W/\"ff-10\"");
    CHECK_INT(hu_conditional_eval(&h, etag, mtime, 1), 304);
    h.if_none_match = HU_SLICE("*");
    CHECK_INT(hu_conditional_eval(&h, etag, mtime, 0), 412);
    h = (hu_cond_headers){0};
    h.if_modified_since = HU_SLICE("Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK_INT(hu_conditional_eval(&h, etag, mtime, 1), 304);
    CHECK_INT(hu_conditional_eval(&h, etag, mtime + 1, 1), 200);
    h = (hu_cond_headers){0};
    h.if_match = HU_SLICE("W/\"ff-10\"");
    CHECK_INT(hu_conditional_eval(&h, etag, mtime, 1), 412);
    h.if_match = HU_SLICE("\"ff-10\"");
    CHECK_INT(hu_conditional_eval(&h, etag, mtime, 1), 200);
    h = (hu_cond_headers){0};
    h.if_unmodified_since = HU_SLICE("Sun, 06 Nov 1994 08:49:36 GMT");
    CHECK_INT(hu_conditional_eval(&h, etag, mtime, 1), 412);
    CHECK_INT(hu_if_range_allows(etag, etag, mtime), 1);
    CHECK_INT(hu_if_range_allows(HU_SLICE("\"other\""), etag, mtime), 0);
    CHECK_INT(hu_if_range_allows(HU_SLICE("Sun, 06 Nov 1994 08:49:37 GMT"), etag, mtime), 1);
}

TEST_MAIN({
    RUN(dates);
    RUN(ranges);
    RUN(conditionals);
})
