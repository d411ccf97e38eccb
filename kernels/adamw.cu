// AdamW on fp32 master weights (writing the working copy) and the squared
// global gradient norm for clipping.
#include "kernels/common.cuh"

#define NORM_BLOCKS 1024

// ---- kernels

struct adamw_consts {
    float lr, beta1, beta2, eps, wd, grad_scale, bc1, bc2;
};

// One element: updates m and v, returns the new master weight.
__device__ __forceinline__ float adamw_one(float master, float g, float &m, float &v,
                                           const adamw_consts &k)
{
    g *= k.grad_scale;
    m = k.beta1 * m + (1.0f - k.beta1) * g;
    v = k.beta2 * v + (1.0f - k.beta2) * g * g;
    return master * (1.0f - k.lr * k.wd) - k.lr * (m / k.bc1) / (sqrtf(v / k.bc2) + k.eps);
}

template <typename T>
__global__ void adamw_kernel(float *master, T *params, const float *grads, float *m, float *v,
                             size_t n, adamw_consts k)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float mi = m[i], vi = v[i];
        float p = adamw_one(master[i], grads[i], mi, vi, k);
        m[i] = mi, v[i] = vi, master[i] = p;
        if (params) params[i] = from_f<T>(p);
    }
}

// Four elements a thread in 16-byte loads (30 bytes an element at ~90% of
// HBM's bandwidth, where one float a load reached ~80%); all four fp32
// arrays 16-byte aligned, the working copy 8- (bf16) or 16-byte (fp32).
template <typename T>
__global__ void adamw4_kernel(float4 *master, T *params, const float4 *grads, float4 *m, float4 *v,
                              size_t n4, adamw_consts k)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 g = grads[i], mi = m[i], vi = v[i], p = master[i];
        p.x = adamw_one(p.x, g.x, mi.x, vi.x, k);
        p.y = adamw_one(p.y, g.y, mi.y, vi.y, k);
        p.z = adamw_one(p.z, g.z, mi.z, vi.z, k);
        p.w = adamw_one(p.w, g.w, mi.w, vi.w, k);
        m[i] = mi, v[i] = vi, master[i] = p;
        if (params) {
            T out[4] = {from_f<T>(p.x), from_f<T>(p.y), from_f<T>(p.z), from_f<T>(p.w)};
            if (sizeof(T) == 2)
                ((uint2 *)params)[i] = *(const uint2 *)out;
            else
                ((float4 *)params)[i] = *(const float4 *)out;
        }
    }
}

// Each block sums a fixed strided subset; partial[blockIdx] -> scratch.
// The first `head` elements (up to g's next 16-byte boundary) and the last
// (n - head) % 4 one a thread in block 0; float4 loads in between.
__global__ void norm_partial_kernel(float *partial, const float *g, size_t n, size_t head)
{
    float acc = 0.0f;
    const float4 *g4 = (const float4 *)(g + head);
    size_t n4 = (n - head) / 4, tail = head + 4 * n4;
#pragma unroll 4
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 x = g4[i];
        acc += x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w;
    }
    if (blockIdx.x == 0 && threadIdx.x < head) acc += g[threadIdx.x] * g[threadIdx.x];
    if (blockIdx.x == 0 && threadIdx.x < n - tail) acc += g[tail + threadIdx.x] * g[tail + threadIdx.x];
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void norm_finish_kernel(float *out, const float *partial)
{
    float acc = block_sum(partial[threadIdx.x]);
    if (threadIdx.x == 0) *out += acc;
}

// ---- launchers

// Elements [lo, hi), one a thread.
static void adamw_range(float *master, void *params, const float *grads, float *m, float *v,
                        size_t lo, size_t hi, const adamw_consts &k, kdtype dt, cudaStream_t stream)
{
    if (hi <= lo) return;
    size_t n = hi - lo;
    unsigned grid = n < 256 * 132 * 8 ? ceil_div(n, 256) : 132 * 8;
    if (dt == KD_F32)
        adamw_kernel<<<grid, 256, 0, stream>>>(master + lo, params ? (float *)params + lo : NULL,
                                               grads + lo, m + lo, v + lo, n, k);
    else
        adamw_kernel<<<grid, 256, 0, stream>>>(master + lo,
                                               params ? (__nv_bfloat16 *)params + lo : NULL,
                                               grads + lo, m + lo, v + lo, n, k);
    launchCheck();
}

extern "C" void adamw_step(float *master, void *params, const float *grads, float *m, float *v,
                           size_t n, float lr, float beta1, float beta2, float eps,
                           float weight_decay, float grad_scale, int t, kdtype dt,
                           cudaStream_t stream)
{
    kassert(t >= 1, "adamw_step step number");
    if (n == 0) return;
    adamw_consts k = {lr, beta1, beta2, eps, weight_decay, grad_scale, 1.0f - powf(beta1, (float)t),
                      1.0f - powf(beta2, (float)t)};
    size_t es = dt == KD_F32 ? 4 : 2;
    // A tensor run may start anywhere in the shard: elements up to the next
    // 16-byte boundary go one a thread, then four a thread, then the rest.
    size_t head = (16 - (uintptr_t)master % 16) % 16 / 4;
    int congruent = (uintptr_t)(grads + head) % 16 == 0 && (uintptr_t)(m + head) % 16 == 0 &&
                    (uintptr_t)(v + head) % 16 == 0 &&
                    (!params || ((uintptr_t)params + head * es) % (4 * es) == 0);
    if (!congruent || head > n) head = n;
    size_t n4 = (n - head) / 4;
    adamw_range(master, params, grads, m, v, 0, head, k, dt, stream);
    if (n4) {
        float *M = master + head, *G = (float *)grads + head, *Mo = m + head, *V = v + head;
        unsigned grid = n4 < 256 * 132 * 8 ? ceil_div(n4, 256) : 132 * 8;
        if (dt == KD_F32)
            adamw4_kernel<<<grid, 256, 0, stream>>>((float4 *)M, params ? (float *)params + head : NULL,
                                                    (const float4 *)G, (float4 *)Mo, (float4 *)V, n4, k);
        else
            adamw4_kernel<<<grid, 256, 0, stream>>>((float4 *)M,
                                                    params ? (__nv_bfloat16 *)params + head : NULL,
                                                    (const float4 *)G, (float4 *)Mo, (float4 *)V, n4, k);
        launchCheck();
    }
    adamw_range(master, params, grads, m, v, head + 4 * n4, n, k, dt, stream);
}

extern "C" void global_norm_squared(float *out, const float *grads, size_t n, cudaStream_t stream)
{
    kassert((uintptr_t)grads % 4 == 0, "global_norm_squared: gradients 4-byte aligned");
    size_t head = (16 - (uintptr_t)grads % 16) % 16 / 4;
    if (head > n) head = n;
    float *partial = (float *)kernels_scratch(sizeof(float) * NORM_BLOCKS, "global_norm_squared");
    norm_partial_kernel<<<NORM_BLOCKS, 256, 0, stream>>>(partial, grads, n, head);
    launchCheck();
    norm_finish_kernel<<<1, NORM_BLOCKS, 0, stream>>>(out, partial);
    launchCheck();
}
