// Minimal test harness: CHECK counts, reports the first failures with file
// and line, and check_summary() prints "N passed, N failed".
#ifndef HGRID_CHECK_H
#define HGRID_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) {                                                                   \
            check_passed++;                                                           \
        } else {                                                                      \
            if (check_failed++ < 20) {                                                \
                fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__);                                         \
                fputc('\n', stderr);                                                  \
            }                                                                         \
        }                                                                             \
    } while (0)

#define CHECK_EQ(a, b)                                                                \
    do {                                                                              \
        long long check_a_ = (a), check_b_ = (b);                                     \
        CHECK(check_a_ == check_b_, "%s = %lld, expected %lld", #a, check_a_, check_b_); \
    } while (0)

static inline int check_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
