// Times bf16 attention forward and backward on every backend hgrid has
// (hgrid's kernels; cuDNN deterministic; cuDNN fast) for the shapes the
// configs use, median of repeats with CUDA events. One line per shape and
// backend, read by tests/bench/bench_attention.py:
//   attn B T NH HD causal backend fwd_ms bwd_ms
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kernels/attention_cudnn.h"
#include "kernels/common.cuh"
#include "tests/bench/median_ms.cuh"

#define REPEATS 20



static void *bf_random(size_t n)
{
    std::vector<__nv_bfloat16> h(n);
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = __float2bfloat16(((s >> 8) / 16777216.0f) * 2.0f - 1.0f);
    }
    void *d;
    cudaCheck(cudaMalloc(&d, n * 2));
    cudaCheck(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
    return d;
}

struct shape { int B, T, NH, HD, causal; };

// The configs' shapes: the encoders' (197 and 257 patches + cls, bidirectional),
// `small` and `1b` (causal), and long LLM sequences up to 8192.
static const shape shapes[] = {
    {64, 197, 12, 64, 0}, {32, 257, 16, 64, 0}, {8, 1024, 12, 64, 1}, {8, 1024, 12, 64, 0},
    {4, 2048, 16, 128, 1}, {4, 2048, 16, 128, 0}, {2, 4096, 16, 128, 1}, {1, 8192, 16, 128, 1},
    {1, 8192, 32, 64, 1},
};

int main(void)
{
    kernels_init();
    const char *names[] = {"hgrid", "cudnn-det", "cudnn-fast"};
    for (const shape &s : shapes) {
        size_t nqkv = (size_t)s.B * s.T * 3 * s.NH * s.HD, no = nqkv / 3;
        void *qkv = bf_random(nqkv), *dout = bf_random(no), *out, *dqkv;
        float *lse;
        cudaCheck(cudaMalloc(&out, no * 2));
        cudaCheck(cudaMalloc(&dqkv, nqkv * 2));
        cudaCheck(cudaMalloc(&lse, (size_t)s.B * s.NH * s.T * 4));
        for (int b = 0; b < 3; b++) {
            setenv("HGRID_ATTENTION", b == 0 ? "hgrid" : "cudnn", 1);
            setenv("HGRID_DETERMINISTIC", b == 2 ? "0" : "1", 1);
            if (b > 0 && attention_cudnn_forward(out, lse, qkv, s.B, s.T, s.NH, s.HD, s.causal, 0) != 0) {
                printf("attn %d %d %d %d %d %s unavailable\n", s.B, s.T, s.NH, s.HD, s.causal, names[b]);
                continue;
            }
            double f = median_ms([&] {
                attention_forward(out, lse, qkv, s.B, s.T, s.NH, s.HD, s.causal, KD_BF16, 0);
            }, REPEATS, 3);
            attention_forward(out, lse, qkv, s.B, s.T, s.NH, s.HD, s.causal, KD_BF16, 0);
            double g = median_ms([&] {
                attention_backward(dqkv, dout, qkv, out, lse, s.B, s.T, s.NH, s.HD, s.causal, KD_BF16, 0);
            }, REPEATS, 3);
            printf("attn %d %d %d %d %d %s %.4f %.4f\n", s.B, s.T, s.NH, s.HD, s.causal, names[b], f, g);
            fflush(stdout);
        }
        for (void *p : {qkv, dout, out, dqkv, (void *)lse})
            cudaCheck(cudaFree(p));
    }
    kernels_free();
    return 0;
}
