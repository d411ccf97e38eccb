// Softmax cross-entropy fused with the LM head's logits: one block per row
// computes the masked loss and, optionally, overwrites the logits with dlogits.
// Floor: read the logits once, write dlogits once. Rows of 16-byte packs that
// fit in shared memory (bf16 Vp up to ~113K: every config's) reach it: one
// pass reads the row (16-byte loads) into shared memory and a running
// (max, sum of exp), the block merges those in a fixed order, a second pass
// writes dlogits from shared memory. Longer rows take the same kernel reading
// the row again for dlogits; rows not in 16-byte packs a scalar kernel.
// Masked rows (weight 0) are not read.
#include <math.h>
#include <stdint.h>

#include "kernels/common.cuh"

#define CE_THREADS 512
#define CE_BATCH 4  // 16-byte loads a thread keeps in flight while copying the row

// ---- kernels

// Running (max, sum of exp(x - max)) pairs, merged without NaNs for empty pairs.
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2)
{
    float mx = fmaxf(m, m2);
    if (mx == -INFINITY) return;
    s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
    m = mx;
}

// Adds n values to a running (max, sum of exp(x - max)): one exponential a
// value (and one to rescale the sum when the max grows); -inf adds nothing.
template <int n> __device__ __forceinline__ void online_add(float &m, float &s, const float *f)
{
    float mx = f[0];
#pragma unroll
    for (int k = 1; k < n; k++) mx = fmaxf(mx, f[k]);
    if (mx > m) s *= __expf(m - mx), m = mx;
    if (m == -INFINITY) return;
#pragma unroll
    for (int k = 0; k < n; k++) s += __expf(f[k] - m);
}

// Merges a warp's (max, sum) pairs by a fixed butterfly; every lane gets
// the same result (lse_merge is symmetric).
__device__ __forceinline__ void warp_lse_merge(float &m, float &s)
{
    for (int off = 16; off > 0; off >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
        lse_merge(m, s, m2, s2);
    }
}

// log(sum exp) of the row from every thread's (max, sum) pair, merged in a
// fixed order (deterministic); every thread gets it.
__device__ float block_lse(float m, float s)
{
    __shared__ float wm[CE_THREADS / 32], ws[CE_THREADS / 32], lse;
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    warp_lse_merge(m, s);
    if (lane == 0) wm[warp] = m, ws[warp] = s;
    __syncthreads();
    if (warp == 0) {
        m = lane < CE_THREADS / 32 ? wm[lane] : -INFINITY;
        s = lane < CE_THREADS / 32 ? ws[lane] : 0.0f;
        warp_lse_merge(m, s);
        if (lane == 0) lse = m + logf(s);
    }
    __syncthreads();
    return lse;
}

// The 16 / sizeof(T) values of a 16-byte pack, and back (round to nearest).
__device__ __forceinline__ void unpack16(float *f, uint4 u, const float *)
{
    f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void unpack16(float *f, uint4 u, const __nv_bfloat16 *)
{
    unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 4; k++) f[2 * k] = __uint_as_float(w[k] << 16), f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
}
__device__ __forceinline__ uint4 pack16(const float *f, const float *)
{
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
}
__device__ __forceinline__ uint4 pack16(const float *f, const __nv_bfloat16 *)
{
    union {
        uint4 u;
        __nv_bfloat162 h[4];
    } p;
#pragma unroll
    for (int k = 0; k < 4; k++) p.h[k] = __floats2bfloat162_rn(f[2 * k], f[2 * k + 1]);
    return p.u;
}

// Rows of 16-byte packs (Vp * sizeof(T) a multiple of 16, aligned). Thread
// t owns packs t, t + CE_THREADS, ... of its row. The first pass reads them,
// CE_BATCH loads in flight, into a running (max, sum of exp); the block
// merges those; the second pass writes dlogits. CACHED: the first pass also
// keeps the row in shared memory (Vp * sizeof(T) bytes) and the second reads
// it there, so the row is read from global memory once; else the second
// pass reads the row again.
template <typename T, bool CACHED>
__global__ void __launch_bounds__(CE_THREADS, 3)  // 3 rows of 64 KB (bf16 V = 32000) an SM
crossentropy_vec_kernel(T *logits, float *losses, const int *targets, const float *mask, float dloss,
                        int V, int Vp, int write_dlogits)
{
    constexpr int E = 16 / sizeof(T);  // values in a pack
    extern __shared__ uint4 row_packs[];  // CACHED: (Vp / E)
    const T *tag = NULL;
    int row = blockIdx.x, packs = Vp / E;
    uint4 *x = (uint4 *)(logits + (size_t)row * Vp);
    float w = mask[row];
    if (w == 0.0f) {  // not counted: loss 0 and dlogits 0, the row unread
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (write_dlogits)
            for (int i = threadIdx.x; i < packs; i += CE_THREADS) x[i] = make_uint4(0, 0, 0, 0);
        return;
    }
    // Pack i's values; padding columns [V, Vp) become -inf: they add nothing
    // to the sum, and their dlogits come out 0.
    auto values = [&](float *f, uint4 u, int i) {
        unpack16(f, u, tag);
        if ((i + 1) * E > V)  // the pack holding column V - 1, or padding only
#pragma unroll
            for (int k = 0; k < E; k++)
                if (i * E + k >= V) f[k] = -INFINITY;
    };
    float m = -INFINITY, s = 0.0f, f[E];
    for (int i0 = threadIdx.x; i0 < packs; i0 += CE_BATCH * CE_THREADS) {
        uint4 u[CE_BATCH];
#pragma unroll
        for (int b = 0; b < CE_BATCH; b++)
            if (i0 + b * CE_THREADS < packs) u[b] = x[i0 + b * CE_THREADS];
#pragma unroll
        for (int b = 0; b < CE_BATCH; b++) {
            int i = i0 + b * CE_THREADS;
            if (i >= packs) continue;
            values(f, u[b], i);
            if (CACHED) row_packs[i] = u[b];
            online_add<E>(m, s, f);
        }
    }
    int target = targets[row];
    float xt = !CACHED && threadIdx.x == 0 ? to_f(logits[(size_t)row * Vp + target]) : 0.0f;  // before any write
    float lse = block_lse(m, s);  // its barriers also publish row_packs
    if (threadIdx.x == 0) losses[row] = w * (lse - (CACHED ? to_f(((const T *)row_packs)[target]) : xt));
    if (!write_dlogits) return;
    float g = dloss * w;
    for (int i = threadIdx.x; i < packs; i += CE_THREADS) {
        int t = target - i * E;  // the target's place in this pack, if there
        values(f, CACHED ? row_packs[i] : x[i], i);
#pragma unroll
        for (int k = 0; k < E; k++) f[k] = g * (__expf(f[k] - lse) - (k == t ? 1.0f : 0.0f));
        x[i] = pack16(f, tag);
    }
}

// Any row: one online max/sum pass over the logits, then the dlogits pass.
template <typename T>
__global__ void __launch_bounds__(CE_THREADS)
crossentropy_kernel(T *logits, float *losses, const int *targets, const float *mask, float dloss,
                    int V, int Vp, int write_dlogits)
{
    int row = blockIdx.x;
    T *x = logits + (size_t)row * Vp;
    float w = mask[row];
    if (w == 0.0f) {  // not counted: loss 0 and dlogits 0, the row unread
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (write_dlogits)
            for (int v = threadIdx.x; v < Vp; v += CE_THREADS) x[v] = from_f<T>(0.0f);
        return;
    }
    int target = targets[row];
    float m = -INFINITY, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += CE_THREADS) {
        float f = to_f(x[v]);
        online_add<1>(m, s, &f);
    }
    float xt = threadIdx.x == 0 ? to_f(x[target]) : 0.0f;  // read before anything is overwritten
    float lse = block_lse(m, s);
    if (threadIdx.x == 0) losses[row] = w * (lse - xt);
    if (!write_dlogits) return;
    float g = dloss * w;
    for (int v = threadIdx.x; v < Vp; v += CE_THREADS) {
        float d = v < V ? g * (__expf(to_f(x[v]) - lse) - (v == target ? 1.0f : 0.0f)) : 0.0f;
        x[v] = from_f<T>(d);
    }
}

// ---- launchers

// Whether a row of `bytes` fits in shared memory, and if so prepares the
// kernel for it (the opt-in size; all of the SM's unified memory as shared,
// since the kernel does not use the L1 cache).
static bool smem_fits(const void *kernel, size_t bytes)
{
    int dev, optin;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (bytes + 1024 > (size_t)optin) return false;  // 1 KB: block_lse's
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                   cudaSharedmemCarveoutMaxShared));
    return true;
}

// Rows of 16-byte packs: cached in shared memory where they fit, else read
// twice; other rows: the scalar kernel.
template <typename T>
static void crossentropy_t(T *logits, float *losses, const int *targets, const float *mask, float dloss,
                           int N, int V, int Vp, int write_dlogits, cudaStream_t stream)
{
    size_t bytes = (size_t)Vp * sizeof(T);
    if (bytes % 16 || (uintptr_t)logits % 16)
        crossentropy_kernel<T><<<N, CE_THREADS, 0, stream>>>(logits, losses, targets, mask, dloss, V, Vp,
                                                              write_dlogits);
    else if (smem_fits((const void *)crossentropy_vec_kernel<T, true>, bytes))
        crossentropy_vec_kernel<T, true><<<N, CE_THREADS, bytes, stream>>>(logits, losses, targets, mask, dloss,
                                                                           V, Vp, write_dlogits);
    else
        crossentropy_vec_kernel<T, false><<<N, CE_THREADS, 0, stream>>>(logits, losses, targets, mask, dloss,
                                                                        V, Vp, write_dlogits);
    launchCheck();
}

extern "C" void crossentropy_forward_backward(void *logits, float *losses, const int *targets,
                                              const float *loss_mask, float dloss, int N, int V,
                                              int Vp, int write_dlogits, kdtype dt,
                                              cudaStream_t stream)
{
    kassert(N > 0 && V > 0 && Vp >= V, "crossentropy_forward_backward shape");
    if (dt == KD_F32)
        crossentropy_t((float *)logits, losses, targets, loss_mask, dloss, N, V, Vp, write_dlogits, stream);
    else
        crossentropy_t((__nv_bfloat16 *)logits, losses, targets, loss_mask, dloss, N, V, Vp, write_dlogits,
                       stream);
}
