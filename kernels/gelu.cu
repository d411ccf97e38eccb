// GELU, tanh approximation (GPT-2 / Megatron), forward and backward.
// 16-byte loads and stores when the pointers allow it, scalar otherwise.
#include <stdint.h>

#include "kernels/common.cuh"

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

// ---- kernels

// 16 bytes of elements: 8 bf16 or 4 floats.
template <typename T> struct alignas(16) Pack16 {
    T v[16 / sizeof(T)];
};

__device__ __forceinline__ float gelu(float x)
{
    return 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float gelu_grad(float x)
{
    float th = tanhf(GELU_K * (x + 0.044715f * x * x * x));
    float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

// VEC: whole 16-byte packs first (all pointers 16-byte aligned), then the tail.
template <typename T, bool VEC>
__global__ void gelu_forward_kernel(T *out, const T *inp, size_t n)  // out may alias inp
{
    constexpr int P = 16 / sizeof(T);
    size_t start = blockIdx.x * (size_t)blockDim.x + threadIdx.x, step = (size_t)gridDim.x * blockDim.x;
    size_t packs = VEC ? n / P : 0;
    for (size_t i = start; i < packs; i += step) {
        Pack16<T> x = ((const Pack16<T> *)inp)[i], y;
        for (int k = 0; k < P; k++) y.v[k] = from_f<T>(gelu(to_f(x.v[k])));
        ((Pack16<T> *)out)[i] = y;
    }
    for (size_t i = packs * P + start; i < n; i += step) out[i] = from_f<T>(gelu(to_f(inp[i])));
}

template <typename T, bool VEC>
__global__ void gelu_backward_kernel(T *dinp, const T *__restrict__ inp, const T *dout, size_t n)
{
    constexpr int P = 16 / sizeof(T);
    size_t start = blockIdx.x * (size_t)blockDim.x + threadIdx.x, step = (size_t)gridDim.x * blockDim.x;
    size_t packs = VEC ? n / P : 0;
    for (size_t i = start; i < packs; i += step) {
        Pack16<T> x = ((const Pack16<T> *)inp)[i], d = ((const Pack16<T> *)dout)[i], y;
        for (int k = 0; k < P; k++) y.v[k] = from_f<T>(gelu_grad(to_f(x.v[k])) * to_f(d.v[k]));
        ((Pack16<T> *)dinp)[i] = y;
    }
    for (size_t i = packs * P + start; i < n; i += step)
        dinp[i] = from_f<T>(gelu_grad(to_f(inp[i])) * to_f(dout[i]));
}

// ---- launchers

static unsigned grid_for(size_t n) { return n < 256 * 132 * 8 ? ceil_div(n, 256) : 132 * 8; }

static bool aligned16(const void *a, const void *b, const void *c)
{
    return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & 15) == 0;
}

template <typename T>
static void gelu_forward_t(T *out, const T *inp, size_t n, cudaStream_t stream)
{
    if (aligned16(out, inp, inp))
        gelu_forward_kernel<T, true><<<grid_for(n / (16 / sizeof(T)) + 1), 256, 0, stream>>>(out, inp, n);
    else
        gelu_forward_kernel<T, false><<<grid_for(n), 256, 0, stream>>>(out, inp, n);
    launchCheck();
}

template <typename T>
static void gelu_backward_t(T *dinp, const T *inp, const T *dout, size_t n, cudaStream_t stream)
{
    if (aligned16(dinp, inp, dout))
        gelu_backward_kernel<T, true><<<grid_for(n / (16 / sizeof(T)) + 1), 256, 0, stream>>>(dinp, inp, dout, n);
    else
        gelu_backward_kernel<T, false><<<grid_for(n), 256, 0, stream>>>(dinp, inp, dout, n);
    launchCheck();
}

extern "C" void gelu_forward(void *out, const void *inp, size_t n, kdtype dt, cudaStream_t stream)
{
    if (n == 0) return;
    if (dt == KD_F32)
        gelu_forward_t((float *)out, (const float *)inp, n, stream);
    else
        gelu_forward_t((__nv_bfloat16 *)out, (const __nv_bfloat16 *)inp, n, stream);
}

extern "C" void gelu_backward(void *dinp, const void *inp, const void *dout, size_t n, kdtype dt,
                              cudaStream_t stream)
{
    if (n == 0) return;
    if (dt == KD_F32)
        gelu_backward_t((float *)dinp, (const float *)inp, (const float *)dout, n, stream);
    else
        gelu_backward_t((__nv_bfloat16 *)dinp, (const __nv_bfloat16 *)inp, (const __nv_bfloat16 *)dout, n,
                        stream);
}
