// Helpers shared by the CPU kernel-reference tests: seeded random inputs, a
// tolerance compare that prints the worst element, and finite differences.
#ifndef HGRID_TEST_KERNELS_UTIL_H
#define HGRID_TEST_KERNELS_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/check.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static inline float rand_uniform(float lo, float hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (float)((rng_state >> 40) * (1.0 / 16777216.0));
}

static inline float *rand_array(size_t n, float lo, float hi)
{
    float *a = (float *)malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) a[i] = rand_uniform(lo, hi);
    return a;
}

static inline float *zeros(size_t n) { return (float *)calloc(n, sizeof(float)); }

// CHECKs |got - want| <= atol + rtol |want| for every element; prints the worst.
static inline void expect_close(const char *name, const float *got, const float *want, size_t n,
                                float atol, float rtol)
{
    size_t worst = 0, wrong = 0;
    double worst_ratio = -1.0;  // |got - want| / tolerance; NaN counts as worst
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - want[i]), tol = atol + rtol * fabs((double)want[i]);
        double ratio = isnan(diff) ? INFINITY : tol > 0 ? diff / tol : diff > 0 ? INFINITY : 0.0;
        if (!(diff <= tol)) wrong++;
        if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
    }
    printf("  %-34s n=%-6zu worst [%zu] got %.7g want %.7g  #wrong %zu\n", name, n, worst,
           n ? got[worst] : 0.0f, n ? want[worst] : 0.0f, wrong);
    CHECK(wrong == 0, "%s: %zu of %zu elements outside atol %g rtol %g", name, wrong, n, atol, rtol);
}

// Central differences of loss() with respect to each element of param, written to fd.
typedef double (*loss_fn)(void *ctx);
static inline void finite_diff(float *fd, float *param, size_t n, loss_fn loss, void *ctx, float h)
{
    for (size_t i = 0; i < n; i++) {
        float keep = param[i];
        param[i] = keep + h;
        double up = loss(ctx);
        param[i] = keep - h;
        double down = loss(ctx);
        param[i] = keep;
        fd[i] = (float)((up - down) / (2.0 * h));
    }
}

// sum_i a[i] * w[i] in double: the scalar "loss" that projects an output.
static inline double dot_d(const float *a, const float *w, size_t n)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) acc += (double)a[i] * w[i];
    return acc;
}

#endif
