/* A tiny unit-test harness: one behaviour per TEST, asserts that print both values.
 * Each binary prints "ok - name" / "not ok - name" per test and exits non-zero on any failure;
 * test/run collects the lines. */
#ifndef HU_CHECK_H
#define HU_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_failed_;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);       \
            check_failed_ = 1;                                                             \
            return;                                                                        \
        }                                                                                  \
    } while (0)

#define CHECK_INT(a, b)                                                                    \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        if (a_ != b_) {                                                                    \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__,   \
                    #a, #b, a_, b_);                                                       \
            check_failed_ = 1;                                                             \
            return;                                                                        \
        }                                                                                  \
    } while (0)

#define CHECK_STR(a, b)                                                                    \
    do {                                                                                   \
        const char *a_ = (a), *b_ = (b);                                                   \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                             \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,        \
                    __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");             \
            check_failed_ = 1;                                                             \
            return;                                                                        \
        }                                                                                  \
    } while (0)

/* Compares n bytes of a (not NUL-terminated) with the C string b. */
#define CHECK_MEM(a, n, b)                                                                 \
    do {                                                                                   \
        size_t n_ = (size_t)(n);                                                           \
        if (n_ != strlen(b) || memcmp((a), (b), n_) != 0) {                                \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%.*s\" != \"%s\"\n", __FILE__,      \
                    __LINE__, #a, #b, (int)n_, (const char *)(a), (b));                    \
            check_failed_ = 1;                                                             \
            return;                                                                        \
        }                                                                                  \
    } while (0)

#define TEST(name) static void name(void)

#define RUN(name)                                                                          \
    do {                                                                                   \
        check_failed_ = 0;                                                                 \
        name();                                                                            \
        printf("%s - %s\n", check_failed_ ? "not ok" : "ok", #name);                       \
        failures_ += check_failed_;                                                        \
    } while (0)

#define TEST_MAIN(body)                                                                    \
    int main(void) {                                                                       \
        int failures_ = 0;                                                                 \
        body;                                                                              \
        return failures_ ? 1 : 0;                                                          \
    }

#endif
