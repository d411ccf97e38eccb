// Internal to kernels/: error checks, fp32 <-> activation type conversions,
// deterministic warp/block reductions, the shared scratch and cuBLASLt handle.
#ifndef HGRID_KERNELS_COMMON_CUH
#define HGRID_KERNELS_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_check.h"
#include "kernels/kernels.h"

#define cublasCheck(call)                                                                 \
    do {                                                                                  \
        cublasStatus_t st_ = (call);                                                      \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                               \
            fprintf(stderr, "%s:%d: cuBLAS error %d: %s\n", __FILE__, __LINE__, (int)st_, \
                    cublasGetStatusString(st_));                                          \
            exit(EXIT_FAILURE);                                                           \
        }                                                                                 \
    } while (0)

// A launcher's shape assumption; says which one failed and exits.
#define kassert(cond, what)                                                               \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: %s: %s does not hold\n", __FILE__, __LINE__, what,    \
                    #cond);                                                               \
            exit(EXIT_FAILURE);                                                           \
        }                                                                                 \
    } while (0)

#define launchCheck() cudaCheck(cudaGetLastError())

__host__ __device__ static inline unsigned ceil_div(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x)
{
    return __float2bfloat16(x);
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets
// the result. Fixed reduction tree: deterministic.
__device__ __forceinline__ float block_sum(float v)
{
    __shared__ float part[32];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads();  // part[] may still be read by a previous call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nwarps ? part[lane] : 0.0f;
    return warp_sum(v);
}

// The library state made by kernels_init().
void *kernels_scratch(size_t bytes, const char *who);
cublasLtHandle_t kernels_lt(void);
void *kernels_lt_workspace(size_t *bytes);

// The fused cuBLASLt epilogues of matmul_forward_gelu (N % 8 == 0) and of
// matmul_backward_dgelu's dinp (K % 8 == 0), in either type (the launchers
// use them in bf16 only; the GPU test measures them in fp32 too). Return 0,
// or -1 when cuBLASLt has no algorithm for the type (nothing launched).
extern "C" int lt_matmul_forward_gelu(void *out, void *pre, const void *inp, const void *weight,
                                      const void *bias, int M, int K, int N, kdtype dt,
                                      cudaStream_t stream);
extern "C" int lt_matmul_dgelu(void *dinp, const void *dout, const void *weight, const void *pre,
                                int M, int K, int N, kdtype dt, cudaStream_t stream);

// out (cols) fp32 += column sums of in (rows, cols), deterministic.   [scratch]
void column_sum_accumulate(float *out, const void *in, int rows, int cols, kdtype dt,
                           cudaStream_t stream);

#endif
