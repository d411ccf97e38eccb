// Helpers of the GPU kernel tests: typed device buffers made from host floats
// (inputs rounded to the tested type so the CPU reference sees the same
// values), poisoned outputs, and a compare that prints worst element and #wrong.
#ifndef HGRID_TESTS_GPU_UTIL_H
#define HGRID_TESTS_GPU_UTIL_H

#include <cuda_bf16.h>
#include <math.h>
#include <string.h>

#include "kernels/common.cuh"
#include "tests/test_kernels_util.h"

static kdtype g_dt;
static void *g_allocs[256];
static int g_nallocs;

static const char *dt_name(void) { return g_dt == KD_F32 ? "fp32" : "bf16"; }

static void *dev_alloc(size_t bytes)
{
    void *p;
    cudaCheck(cudaMalloc(&p, bytes ? bytes : 1));
    kassert(g_nallocs < 256, "test allocations");
    g_allocs[g_nallocs++] = p;
    return p;
}

static void dev_free_all(void)
{
    for (int i = 0; i < g_nallocs; i++) cudaCheck(cudaFree(g_allocs[i]));
    g_nallocs = 0;
}

// Rounds host values to the tested type in place (a no-op for fp32).
static void round_to_dt(float *h, size_t n)
{
    if (g_dt == KD_BF16)
        for (size_t i = 0; i < n; i++) h[i] = __bfloat162float(__float2bfloat16(h[i]));
}

// Device copy of h in the tested type; h is rounded first.
static void *upload(float *h, size_t n)
{
    round_to_dt(h, n);
    void *d = dev_alloc(n * kdtype_size(g_dt));
    if (g_dt == KD_F32) {
        cudaCheck(cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice));
    } else {
        __nv_bfloat16 *t = (__nv_bfloat16 *)malloc(n * 2 + 2);
        for (size_t i = 0; i < n; i++) t[i] = __float2bfloat16(h[i]);
        cudaCheck(cudaMemcpy(d, t, n * 2, cudaMemcpyHostToDevice));
        free(t);
    }
    return d;
}

static void download(float *h, const void *d, size_t n)
{
    if (g_dt == KD_F32) {
        cudaCheck(cudaMemcpy(h, d, n * 4, cudaMemcpyDeviceToHost));
    } else {
        __nv_bfloat16 *t = (__nv_bfloat16 *)malloc(n * 2 + 2);
        cudaCheck(cudaMemcpy(t, d, n * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < n; i++) h[i] = __bfloat162float(t[i]);
        free(t);
    }
}

static float *upload_f32(const float *h, size_t n)
{
    float *d = (float *)dev_alloc(n * 4);
    cudaCheck(cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice));
    return d;
}

static int *upload_i32(const int *h, size_t n)
{
    int *d = (int *)dev_alloc(n * 4);
    cudaCheck(cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice));
    return d;
}

static void download_f32(float *h, const float *d, size_t n)
{
    cudaCheck(cudaMemcpy(h, d, n * 4, cudaMemcpyDeviceToHost));
}

// A device buffer of bytes filled with 0xFF: NaN as fp32 and bf16, -1 as int.
static void *poisoned(size_t bytes)
{
    void *d = dev_alloc(bytes);
    cudaCheck(cudaMemset(d, 0xFF, bytes));
    return d;
}

// Compares with atol = abs_frac * max |want| and rtol; prints worst and #wrong.
static void expect_near(const char *name, const float *got, const float *want, size_t n,
                        float abs_frac, float rtol)
{
    float mx = 0.0f;
    for (size_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(want[i]));
    char label[96];
    snprintf(label, sizeof label, "%s %s", dt_name(), name);
    expect_close(label, got, want, n, abs_frac * mx, rtol);
}

// Tolerances for results stored in the tested type.
static float tol_abs(void) { return g_dt == KD_F32 ? 2e-5f : 1e-2f; }
static float tol_rel(void) { return g_dt == KD_F32 ? 2e-4f : 2e-2f; }

// Whether two runs wrote bit-identical results.
static void expect_same_bits(const char *name, const void *a, const void *b, size_t bytes)
{
    void *ha = malloc(bytes), *hb = malloc(bytes);
    cudaCheck(cudaMemcpy(ha, a, bytes, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hb, b, bytes, cudaMemcpyDeviceToHost));
    int same = memcmp(ha, hb, bytes) == 0;
    printf("  %s %-34s %s\n", dt_name(), name, same ? "bit-identical" : "DIFFERS");
    CHECK(same, "%s %s: two runs on the same inputs differ", dt_name(), name);
    free(ha), free(hb);
}

#endif
