// AdamW on fp32 master weights (writing the working copy) and the squared
// global gradient norm for clipping.
#include "kernels/common.cuh"

#define NORM_BLOCKS 1024

// ---- kernels

template <typename T>
__global__ void adamw_kernel(float *master, T *params, const float *grads, float *m, float *v,
                             size_t n, float lr, float beta1, float beta2, float eps, float wd,
                             float grad_scale, float bc1, float bc2)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = grads[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi, v[i] = vi;
        float p = master[i] * (1.0f - lr * wd) - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
        master[i] = p;
        if (params) params[i] = from_f<T>(p);
    }
}

// Each block sums a fixed strided subset; partial[blockIdx] -> scratch.
__global__ void norm_partial_kernel(float *partial, const float *g, size_t n)
{
    float acc = 0.0f;
#pragma unroll 8
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc += g[i] * g[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void norm_finish_kernel(float *out, const float *partial)
{
    float acc = block_sum(partial[threadIdx.x]);
    if (threadIdx.x == 0) *out += acc;
}

// ---- launchers

extern "C" void adamw_step(float *master, void *params, const float *grads, float *m, float *v,
                           size_t n, float lr, float beta1, float beta2, float eps,
                           float weight_decay, float grad_scale, int t, kdtype dt,
                           cudaStream_t stream)
{
    kassert(t >= 1, "adamw_step step number");
    if (n == 0) return;
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    unsigned grid = n < 256 * 132 * 8 ? ceil_div(n, 256) : 132 * 8;
    if (dt == KD_F32)
        adamw_kernel<<<grid, 256, 0, stream>>>(master, (float *)params, grads, m, v, n, lr, beta1,
                                               beta2, eps, weight_decay, grad_scale, bc1, bc2);
    else
        adamw_kernel<<<grid, 256, 0, stream>>>(master, (__nv_bfloat16 *)params, grads, m, v, n, lr,
                                               beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2);
    launchCheck();
}

extern "C" void global_norm_squared(float *out, const float *grads, size_t n, cudaStream_t stream)
{
    float *partial = (float *)kernels_scratch(sizeof(float) * NORM_BLOCKS, "global_norm_squared");
    norm_partial_kernel<<<NORM_BLOCKS, 256, 0, stream>>>(partial, grads, n);
    launchCheck();
    norm_finish_kernel<<<1, NORM_BLOCKS, 0, stream>>>(out, partial);
    launchCheck();
}
