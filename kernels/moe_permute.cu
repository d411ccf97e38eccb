// MoE token permutation: the routing plan (group assignments by expert, stable
// in (token, slot) order), permute / unpermute (gated combine) and their
// backward. Every output row has one writer: deterministic.
#include <cub/block/block_scan.cuh>

#include "kernels/common.cuh"

#define PLAN_THREADS 1024

// ---- kernels

// One block per expert: counts its assignments.
__global__ void plan_count_kernel(int *counts, const int *topk_idx, int NK)
{
    int e = blockIdx.x, c = 0;
    for (int i = threadIdx.x; i < NK; i += blockDim.x) c += topk_idx[i] == e;
    c = (int)block_sum((float)c);  // exact: counts stay far below 2^24
    if (threadIdx.x == 0) counts[e] = c;
}

__global__ void plan_offsets_kernel(int *offsets, const int *counts, int E)
{
    offsets[0] = 0;
    for (int e = 0; e < E; e++) offsets[e + 1] = offsets[e] + counts[e];
}

// One block per expert: a block-wide scan over the assignments in order.
__global__ void plan_positions_kernel(int *pos, const int *offsets, const int *topk_idx, int NK)
{
    typedef cub::BlockScan<int, PLAN_THREADS> Scan;
    __shared__ typename Scan::TempStorage temp;
    int e = blockIdx.x, base = offsets[e];
    for (int i0 = 0; i0 < NK; i0 += PLAN_THREADS) {
        int i = i0 + threadIdx.x;
        int flag = i < NK && topk_idx[i] == e, before, total;
        Scan(temp).ExclusiveSum(flag, before, total);
        if (flag) pos[i] = base + before;
        base += total;
        __syncthreads();  // temp is reused by the next chunk's scan
    }
}

// One block per assignment i = n*K + j.
template <typename T>
__global__ void permute_kernel(T *xp, const T *x, const int *pos, int K, int C)
{
    int i = blockIdx.x;
    const T *src = x + (size_t)(i / K) * C;
    T *dst = xp + (size_t)pos[i] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

// One block per token: dx[n] = sum_j dxp[pos[n, j]], or with gates the
// gated combine y[n] = sum_j gates[n, j] yp[pos[n, j]].
template <typename T>
__global__ void combine_kernel(T *out, const T *rows, const float *gates, const int *pos, int K, int C)
{
    int n = blockIdx.x;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < K; j++) {
            float g = gates ? gates[n * K + j] : 1.0f;
            acc += g * to_f(rows[(size_t)pos[n * K + j] * C + c]);
        }
        out[(size_t)n * C + c] = from_f<T>(acc);
    }
}

// One block per assignment: dyp row and the gate's gradient.
template <typename T>
__global__ void unpermute_backward_kernel(T *dyp, float *dgates, const T *dy, const T *yp,
                                          const float *gates, const int *pos, int K, int C)
{
    int i = blockIdx.x;
    const T *d = dy + (size_t)(i / K) * C, *y = yp + (size_t)pos[i] * C;
    T *out = dyp + (size_t)pos[i] * C;
    float g = gates[i], dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float dv = to_f(d[c]);
        out[c] = from_f<T>(g * dv);
        dot += dv * to_f(y[c]);
    }
    dot = block_sum(dot);
    if (threadIdx.x == 0) dgates[i] = dot;
}

// ---- launchers

static int row_threads(int C) { return C < 256 ? (C + 31) / 32 * 32 : 256; }

extern "C" void moe_permute_plan(int *pos, int *offsets, const int *topk_idx, int N, int E, int K,
                                 cudaStream_t stream)
{
    kassert(N > 0 && K > 0 && K <= E, "moe_permute_plan shape");
    int *counts = (int *)kernels_scratch(sizeof(int) * E, "moe_permute_plan");
    plan_count_kernel<<<E, 1024, 0, stream>>>(counts, topk_idx, N * K);
    launchCheck();
    plan_offsets_kernel<<<1, 1, 0, stream>>>(offsets, counts, E);
    launchCheck();
    plan_positions_kernel<<<E, PLAN_THREADS, 0, stream>>>(pos, offsets, topk_idx, N * K);
    launchCheck();
}

extern "C" void moe_permute_forward(void *xp, const void *x, const int *pos, int N, int K, int C,
                                    kdtype dt, cudaStream_t stream)
{
    kassert(N > 0 && K > 0 && C > 0, "moe_permute_forward shape");
    if (dt == KD_F32)
        permute_kernel<<<N * K, row_threads(C), 0, stream>>>((float *)xp, (const float *)x, pos, K, C);
    else
        permute_kernel<<<N * K, row_threads(C), 0, stream>>>((__nv_bfloat16 *)xp,
                                                             (const __nv_bfloat16 *)x, pos, K, C);
    launchCheck();
}

extern "C" void moe_permute_backward(void *dx, const void *dxp, const int *pos, int N, int K, int C,
                                     kdtype dt, cudaStream_t stream)
{
    kassert(N > 0 && K > 0 && C > 0, "moe_permute_backward shape");
    if (dt == KD_F32)
        combine_kernel<<<N, row_threads(C), 0, stream>>>((float *)dx, (const float *)dxp, NULL, pos, K, C);
    else
        combine_kernel<<<N, row_threads(C), 0, stream>>>((__nv_bfloat16 *)dx, (const __nv_bfloat16 *)dxp,
                                                         NULL, pos, K, C);
    launchCheck();
}

extern "C" void moe_unpermute_forward(void *y, const void *yp, const float *gates, const int *pos,
                                      int N, int K, int C, kdtype dt, cudaStream_t stream)
{
    kassert(N > 0 && K > 0 && C > 0, "moe_unpermute_forward shape");
    if (dt == KD_F32)
        combine_kernel<<<N, row_threads(C), 0, stream>>>((float *)y, (const float *)yp, gates, pos, K, C);
    else
        combine_kernel<<<N, row_threads(C), 0, stream>>>((__nv_bfloat16 *)y, (const __nv_bfloat16 *)yp,
                                                         gates, pos, K, C);
    launchCheck();
}

extern "C" void moe_unpermute_backward(void *dyp, float *dgates, const void *dy, const void *yp,
                                       const float *gates, const int *pos, int N, int K, int C,
                                       kdtype dt, cudaStream_t stream)
{
    kassert(N > 0 && K > 0 && C > 0, "moe_unpermute_backward shape");
    if (dt == KD_F32)
        unpermute_backward_kernel<<<N * K, row_threads(C), 0, stream>>>(
            (float *)dyp, dgates, (const float *)dy, (const float *)yp, gates, pos, K, C);
    else
        unpermute_backward_kernel<<<N * K, row_threads(C), 0, stream>>>(
            (__nv_bfloat16 *)dyp, dgates, (const __nv_bfloat16 *)dy, (const __nv_bfloat16 *)yp, gates,
            pos, K, C);
    launchCheck();
}
