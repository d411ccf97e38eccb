// Vocab-parallel embedding and cross-entropy pieces: the masked row gather,
// the embedding gradient by a CSR list of rows, and the three per-row
// passes of the split softmax (local max, sums against the global max,
// loss and dlogits). One block per row; fixed reduction trees.
#include <math.h>

#include "kernels/common.cuh"
#include "kernels/vocab_parallel.h"

#define VP_THREADS 256

// ---- kernels

template <typename T>
__global__ void vp_embedding_forward_kernel(T *out, const int *tokens, const T *wte, int C, int v0,
                                            int Vl)
{
    int i = blockIdx.x, row = tokens[i] - v0;
    bool mine = row >= 0 && row < Vl;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        out[(size_t)i * C + c] = mine ? wte[(size_t)row * C + c] : from_f<T>(0.0f);
}

template <typename T>
__global__ void embedding_backward_rows_kernel(float *dwte, const T *dout, const int *rows,
                                               const int *starts, const int *positions, int C)
{
    int r = blockIdx.x;
    for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < C; c += gridDim.y * blockDim.x) {
        float acc = 0.0f;
        for (int k = starts[r]; k < starts[r + 1]; k++)
            acc += to_f(dout[(size_t)positions[k] * C + c]);
        dwte[(size_t)rows[r] * C + c] += acc;
    }
}

template <typename T>
__global__ void vp_max_kernel(float *mx, const T *logits, int Vl)
{
    __shared__ float part[32];
    const T *x = logits + (size_t)blockIdx.x * Vl;
    float m = -INFINITY;
    for (int v = threadIdx.x; v < Vl; v += VP_THREADS) m = fmaxf(m, to_f(x[v]));
    m = warp_max(m);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < VP_THREADS / 32; w++) m = fmaxf(m, part[w]);
        mx[blockIdx.x] = m;
    }
}

template <typename T>
__global__ void vp_sums_kernel(float *mx, float *sums, const float *gathered, int tp,
                               const T *logits, const int *targets, int N, int v0, int Vl)
{
    int i = blockIdx.x;
    float m = -INFINITY;
    for (int r = 0; r < tp; r++) m = fmaxf(m, gathered[(size_t)r * N + i]);
    const T *x = logits + (size_t)i * Vl;
    float s = 0.0f;
    for (int v = threadIdx.x; v < Vl; v += VP_THREADS) s += __expf(to_f(x[v]) - m);
    s = block_sum(s);
    if (threadIdx.x == 0) {
        int t = targets[i] - v0;
        mx[i] = m;
        sums[i] = s;
        sums[N + i] = t >= 0 && t < Vl ? to_f(x[t]) : 0.0f;
    }
}

template <typename T>
__global__ void vp_finish_kernel(T *logits, float *losses, const float *sums, const float *mx,
                                 const int *targets, const float *mask, float dloss, int N, int v0,
                                 int Vl)
{
    int i = blockIdx.x;
    float w = mask[i], sum = sums[i], m = mx[i];
    if (threadIdx.x == 0) losses[i] = w != 0.0f ? w * (logf(sum) + m - sums[N + i]) : 0.0f;
    T *x = logits + (size_t)i * Vl;
    int t = w != 0.0f ? targets[i] - v0 : -1;
    for (int v = threadIdx.x; v < Vl; v += VP_THREADS) {
        float g = 0.0f;
        if (w != 0.0f) g = dloss * w * (__expf(to_f(x[v]) - m) / sum - (v == t ? 1.0f : 0.0f));
        x[v] = from_f<T>(g);
    }
}

// ---- launchers

#define BY_TYPE(dt, launch)                                                                \
    do {                                                                                   \
        if ((dt) == KD_F32) {                                                              \
            typedef float T;                                                               \
            launch;                                                                        \
        } else {                                                                           \
            typedef __nv_bfloat16 T;                                                       \
            launch;                                                                        \
        }                                                                                  \
        launchCheck();                                                                     \
    } while (0)

extern "C" void vp_embedding_forward(void *out, const int *tokens, const void *wte, int N, int C,
                                     int v0, int Vl, kdtype dt, cudaStream_t stream)
{
    kassert(N >= 0 && C > 0 && Vl > 0 && v0 >= 0, "vp_embedding_forward shape");
    if (N == 0) return;
    BY_TYPE(dt, (vp_embedding_forward_kernel<T><<<N, VP_THREADS, 0, stream>>>(
                    (T *)out, tokens, (const T *)wte, C, v0, Vl)));
}

extern "C" void embedding_backward_rows(float *dwte, const void *dout, const int *rows,
                                        const int *starts, const int *positions, int R, int C,
                                        kdtype dt, cudaStream_t stream)
{
    kassert(R >= 0 && C > 0, "embedding_backward_rows shape");
    if (R == 0) return;
    dim3 grid(R, ceil_div(C, VP_THREADS));
    BY_TYPE(dt, (embedding_backward_rows_kernel<T><<<grid, VP_THREADS, 0, stream>>>(
                    dwte, (const T *)dout, rows, starts, positions, C)));
}

extern "C" void vp_crossentropy_max(float *mx, const void *logits, int N, int Vl, kdtype dt,
                                    cudaStream_t stream)
{
    kassert(N > 0 && Vl > 0, "vp_crossentropy_max shape");
    BY_TYPE(dt, (vp_max_kernel<T><<<N, VP_THREADS, 0, stream>>>(mx, (const T *)logits, Vl)));
}

extern "C" void vp_crossentropy_sums(float *mx, float *sums, const float *gathered, int tp,
                                     const void *logits, const int *targets, int N, int v0,
                                     int Vl, kdtype dt, cudaStream_t stream)
{
    kassert(N > 0 && Vl > 0 && tp > 0, "vp_crossentropy_sums shape");
    BY_TYPE(dt, (vp_sums_kernel<T><<<N, VP_THREADS, 0, stream>>>(
                    mx, sums, gathered, tp, (const T *)logits, targets, N, v0, Vl)));
}

extern "C" void vp_crossentropy_finish(void *logits, float *losses, const float *sums,
                                       const float *mx, const int *targets, const float *mask,
                                       float dloss, int N, int v0, int Vl, kdtype dt,
                                       cudaStream_t stream)
{
    kassert(N > 0 && Vl > 0, "vp_crossentropy_finish shape");
    BY_TYPE(dt, (vp_finish_kernel<T><<<N, VP_THREADS, 0, stream>>>(
                    (T *)logits, losses, sums, mx, targets, mask, dloss, N, v0, Vl)));
}
