// Median milliseconds of a GPU operation, timed with CUDA events on the
// default stream, for the kernel benchmarks.
#ifndef HGRID_BENCH_MEDIAN_MS_CUH
#define HGRID_BENCH_MEDIAN_MS_CUH

#include <algorithm>
#include <vector>

#include "kernels/cuda_check.h"

// Median of repeats timed calls of f after warmup untimed ones.
template <typename F> static double median_ms(F f, int repeats, int warmup)
{
    cudaEvent_t ev0, ev1;
    cudaCheck(cudaEventCreate(&ev0));
    cudaCheck(cudaEventCreate(&ev1));
    std::vector<float> t;
    for (int i = 0; i < warmup; i++) f();
    for (int i = 0; i < repeats; i++) {
        cudaCheck(cudaEventRecord(ev0));
        f();
        cudaCheck(cudaEventRecord(ev1));
        cudaCheck(cudaEventSynchronize(ev1));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, ev0, ev1));
        t.push_back(ms);
    }
    cudaCheck(cudaEventDestroy(ev0));
    cudaCheck(cudaEventDestroy(ev1));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

#endif
