// Residual add, in-place scaling and type conversion.
#include "kernels/common.cuh"

// ---- kernels

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

template <typename T>
__global__ void add_kernel(T *out, const T *a, const T *b, size_t n)
{
    GRID_STRIDE(i, n) out[i] = from_f<T>(to_f(a[i]) + to_f(b[i]));
}

template <typename T>
__global__ void scale_kernel(T *x, float alpha, size_t n)
{
    GRID_STRIDE(i, n) x[i] = from_f<T>(to_f(x[i]) * alpha);
}

template <typename D, typename S>
__global__ void convert_kernel(D *dst, const S *src, size_t n)
{
    GRID_STRIDE(i, n) dst[i] = from_f<D>(to_f(src[i]));
}

// ---- launchers

static unsigned grid_for(size_t n) { return n < 256 * 132 * 8 ? ceil_div(n, 256) : 132 * 8; }

extern "C" void add_forward(void *out, const void *a, const void *b, size_t n, kdtype dt,
                            cudaStream_t stream)
{
    if (n == 0) return;
    if (dt == KD_F32)
        add_kernel<<<grid_for(n), 256, 0, stream>>>((float *)out, (const float *)a, (const float *)b, n);
    else
        add_kernel<<<grid_for(n), 256, 0, stream>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)a,
                                                    (const __nv_bfloat16 *)b, n);
    launchCheck();
}

extern "C" void scale_inplace(void *x, float alpha, size_t n, kdtype dt, cudaStream_t stream)
{
    if (n == 0) return;
    if (dt == KD_F32)
        scale_kernel<<<grid_for(n), 256, 0, stream>>>((float *)x, alpha, n);
    else
        scale_kernel<<<grid_for(n), 256, 0, stream>>>((__nv_bfloat16 *)x, alpha, n);
    launchCheck();
}

extern "C" void convert(void *dst, kdtype dst_dt, const void *src, kdtype src_dt, size_t n,
                        cudaStream_t stream)
{
    if (n == 0) return;
    if (dst_dt == src_dt) {
        cudaCheck(cudaMemcpyAsync(dst, src, n * kdtype_size(dst_dt), cudaMemcpyDeviceToDevice, stream));
        return;
    }
    if (dst_dt == KD_BF16)
        convert_kernel<<<grid_for(n), 256, 0, stream>>>((__nv_bfloat16 *)dst, (const float *)src, n);
    else
        convert_kernel<<<grid_for(n), 256, 0, stream>>>((float *)dst, (const __nv_bfloat16 *)src, n);
    launchCheck();
}
