// Softmax cross-entropy fused with the LM head's logits: one block per row
// computes the masked loss and, optionally, overwrites the logits with dlogits.
#include <math.h>

#include "kernels/common.cuh"

#define CE_THREADS 512

// ---- kernels

// Running (max, sum of exp(x - max)) pairs, merged without NaNs for empty pairs.
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2)
{
    float mx = fmaxf(m, m2);
    if (mx == -INFINITY) return;
    s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
    m = mx;
}

template <typename T>
__global__ void __launch_bounds__(CE_THREADS)
crossentropy_kernel(T *logits, float *losses, const int *targets, const float *mask, float dloss,
                    int V, int Vp, int write_dlogits)
{
    __shared__ float wm[32], ws[32];
    __shared__ float row_lse;
    int row = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    T *x = logits + (size_t)row * Vp;
    float m = -INFINITY, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += CE_THREADS) lse_merge(m, s, to_f(x[v]), 1.0f);
    for (int off = 16; off > 0; off >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
        lse_merge(m, s, m2, s2);
    }
    if (lane == 0) wm[warp] = m, ws[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float bm = -INFINITY, bs = 0.0f;
        for (int w = 0; w < CE_THREADS / 32; w++) lse_merge(bm, bs, wm[w], ws[w]);
        row_lse = bm + logf(bs);
        float w = mask[row];
        losses[row] = w != 0.0f ? w * (row_lse - to_f(x[targets[row]])) : 0.0f;
    }
    __syncthreads();  // the target logit is read before anything is overwritten
    if (!write_dlogits) return;
    float w = mask[row], lse = row_lse, g = dloss * w;
    int target = w != 0.0f ? targets[row] : -1;
    for (int v = threadIdx.x; v < Vp; v += CE_THREADS) {
        float d = 0.0f;
        if (v < V && w != 0.0f) d = g * (__expf(to_f(x[v]) - lse) - (v == target ? 1.0f : 0.0f));
        x[v] = from_f<T>(d);
    }
}

// ---- launchers

extern "C" void crossentropy_forward_backward(void *logits, float *losses, const int *targets,
                                              const float *loss_mask, float dloss, int N, int V,
                                              int Vp, int write_dlogits, kdtype dt,
                                              cudaStream_t stream)
{
    kassert(N > 0 && V > 0 && Vp >= V, "crossentropy_forward_backward shape");
    if (dt == KD_F32)
        crossentropy_kernel<<<N, CE_THREADS, 0, stream>>>((float *)logits, losses, targets, loss_mask,
                                                          dloss, V, Vp, write_dlogits);
    else
        crossentropy_kernel<<<N, CE_THREADS, 0, stream>>>((__nv_bfloat16 *)logits, losses, targets,
                                                          loss_mask, dloss, V, Vp, write_dlogits);
    launchCheck();
}
