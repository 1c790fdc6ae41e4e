/* Fuzzes the GET validators: Range, conditional headers and HTTP dates. First 8 bytes: size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_conditional.h"
#include "http_date.h"
#include "http_range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) return 0;
    uint64_t fsize;
    memcpy(&fsize, data, 8);
    fsize >>= data[0] & 63;
    hu_slice h = {(const char *)data + 8, size - 8};
    hu_range r;
    if (hu_range_parse(h, fsize, &r) == 1 && (r.first > r.last || r.last >= fsize)) abort();
    int64_t t;
    hu_http_date_parse(h, &t);
    hu_cond_headers c = {h, h, h, h, h};
    int s = hu_conditional_eval(&c, HU_SLICE("\"1-2\""), 5, data[1] & 1);
    if (s != 200 && s != 304 && s != 412) abort();
    hu_if_range_allows(h, HU_SLICE("\"1-2\""), 5);
    return 0;
}
