// GELU, tanh approximation (GPT-2 / Megatron), forward and backward.
#include "kernels/common.cuh"

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

// ---- kernels

template <typename T>
__global__ void gelu_forward_kernel(T *out, const T *inp, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = to_f(inp[i]);
        out[i] = from_f<T>(0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x))));
    }
}

template <typename T>
__global__ void gelu_backward_kernel(T *dinp, const T *inp, const T *dout, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = to_f(inp[i]);
        float th = tanhf(GELU_K * (x + 0.044715f * x * x * x));
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
        dinp[i] = from_f<T>(grad * to_f(dout[i]));
    }
}

// ---- launchers

static unsigned grid_for(size_t n) { return n < 256 * 132 * 8 ? ceil_div(n, 256) : 132 * 8; }

extern "C" void gelu_forward(void *out, const void *inp, size_t n, kdtype dt, cudaStream_t stream)
{
    if (n == 0) return;
    if (dt == KD_F32)
        gelu_forward_kernel<<<grid_for(n), 256, 0, stream>>>((float *)out, (const float *)inp, n);
    else
        gelu_forward_kernel<<<grid_for(n), 256, 0, stream>>>((__nv_bfloat16 *)out,
                                                             (const __nv_bfloat16 *)inp, n);
    launchCheck();
}

extern "C" void gelu_backward(void *dinp, const void *inp, const void *dout, size_t n, kdtype dt,
                              cudaStream_t stream)
{
    if (n == 0) return;
    if (dt == KD_F32)
        gelu_backward_kernel<<<grid_for(n), 256, 0, stream>>>((float *)dinp, (const float *)inp,
                                                              (const float *)dout, n);
    else
        gelu_backward_kernel<<<grid_for(n), 256, 0, stream>>>((__nv_bfloat16 *)dinp,
                                                              (const __nv_bfloat16 *)inp,
                                                              (const __nv_bfloat16 *)dout, n);
    launchCheck();
}
