/* test.h - the few macros every test program uses.
 *
 * A test program is a main() that runs checks and returns the number of failed ones (0 = pass),
 * so ctest reports it. CHECK never aborts: one run shows every failing check with file and line. */
#ifndef MTP_TEST_H
#define MTP_TEST_H

#include <math.h>
#include <stdio.h>

static int test_failures = 0;
static int test_checks = 0;

#define CHECK(cond)                                                               \
    do {                                                                          \
        test_checks++;                                                            \
        if (!(cond)) {                                                            \
            test_failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                         \
    } while (0)

#define CHECK_MSG(cond, ...)                                                      \
    do {                                                                          \
        test_checks++;                                                            \
        if (!(cond)) {                                                            \
            test_failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

/* |a - b| <= atol + rtol * |b| */
#define CHECK_CLOSE(a, b, atol, rtol)                                                          \
    do {                                                                                       \
        double ca_ = (double)(a), cb_ = (double)(b);                                           \
        CHECK_MSG(fabs(ca_ - cb_) <= (atol) + (rtol) * fabs(cb_), "%s = %.9g, %s = %.9g", #a, ca_, \
                  #b, cb_);                                                                    \
    } while (0)

#define TEST_DONE()                                                                     \
    do {                                                                                \
        fprintf(stderr, "%s: %d checks, %d failed\n", __FILE__, test_checks, test_failures); \
        return test_failures ? 1 : 0;                                                   \
    } while (0)

#endif
