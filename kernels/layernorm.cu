// LayerNorm over the last dim: forward saves mean and rstd; backward
// accumulates dinp and, deterministically, dweight and dbias.
#include "kernels/common.cuh"

#define LN_EPS 1e-5f

// ---- kernels

// One warp per row; two passes over the row for a stable variance.
template <typename T>
__global__ void layernorm_forward_kernel(T *__restrict__ out, float *__restrict__ mean,
                                         float *__restrict__ rstd, const T *__restrict__ inp,
                                         const T *__restrict__ weight, const T *__restrict__ bias,
                                         int N, int C)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const T *x = inp + (size_t)row * C;
    float sum = 0.0f;
#pragma unroll 4
    for (int c = lane; c < C; c += 32) sum += to_f(x[c]);
    float m = warp_sum(sum) / C;
    float var = 0.0f;
#pragma unroll 4
    for (int c = lane; c < C; c += 32) {
        float d = to_f(x[c]) - m;
        var += d * d;
    }
    float s = rsqrtf(warp_sum(var) / C + LN_EPS);
    T *o = out + (size_t)row * C;
#pragma unroll 4
    for (int c = lane; c < C; c += 32)
        o[c] = from_f<T>((to_f(x[c]) - m) * s * to_f(weight[c]) + to_f(bias[c]));
    if (lane == 0) mean[row] = m, rstd[row] = s;
}

// dinp, one warp per row.
template <typename T>
__global__ void layernorm_dinp_kernel(T *__restrict__ dinp, const T *__restrict__ dout,
                                      const T *__restrict__ inp, const T *__restrict__ weight,
                                      const float *__restrict__ mean, const float *__restrict__ rstd,
                                      int N, int C)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const T *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float m = mean[row], s = rstd[row], dsum = 0.0f, dnsum = 0.0f;
#pragma unroll 4
    for (int c = lane; c < C; c += 32) {
        float dn = to_f(weight[c]) * to_f(dy[c]);
        dsum += dn;
        dnsum += dn * (to_f(x[c]) - m) * s;
    }
    dsum = warp_sum(dsum) / C;
    dnsum = warp_sum(dnsum) / C;
    T *dx = dinp + (size_t)row * C;
#pragma unroll 4
    for (int c = lane; c < C; c += 32) {
        float norm = (to_f(x[c]) - m) * s;
        float dn = to_f(weight[c]) * to_f(dy[c]);
        dx[c] = from_f<T>(to_f(dx[c]) + (dn - dsum - norm * dnsum) * s);
    }
}

// dweight and dbias partial sums: block (column chunk, row chunk) -> scratch.
template <typename T>
__global__ void layernorm_dparams_partial_kernel(float *__restrict__ partial,
                                                 const T *__restrict__ dout, const T *__restrict__ inp,
                                                 const float *__restrict__ mean,
                                                 const float *__restrict__ rstd, int N, int C,
                                                 int rows_per_chunk)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int r0 = blockIdx.y * rows_per_chunk, r1 = min(N, r0 + rows_per_chunk);
    float dw = 0.0f, db = 0.0f;
#pragma unroll 4
    for (int r = r0; r < r1; r++) {
        float dy = to_f(dout[(size_t)r * C + c]);
        dw += dy * (to_f(inp[(size_t)r * C + c]) - mean[r]) * rstd[r];
        db += dy;
    }
    float *p = partial + (size_t)blockIdx.y * 2 * C;
    p[c] = dw;
    p[C + c] = db;
}

__global__ void layernorm_dparams_finish_kernel(float *dweight, float *dbias, const float *partial,
                                                int chunks, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float dw = 0.0f, db = 0.0f;
#pragma unroll 8
    for (int k = 0; k < chunks; k++) {
        dw += partial[(size_t)k * 2 * C + c];
        db += partial[(size_t)k * 2 * C + C + c];
    }
    dweight[c] += dw;
    dbias[c] += db;
}

// ---- launchers

template <typename T>
static void layernorm_forward_t(T *out, float *mean, float *rstd, const T *inp, const T *weight,
                                const T *bias, int N, int C, cudaStream_t stream)
{
    layernorm_forward_kernel<<<ceil_div(N, 8), 256, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C);
    launchCheck();
}

template <typename T>
static void layernorm_backward_t(T *dinp, float *dweight, float *dbias, const T *dout,
                                 const T *inp, const T *weight, const float *mean,
                                 const float *rstd, int N, int C, cudaStream_t stream)
{
    layernorm_dinp_kernel<<<ceil_div(N, 8), 256, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, N, C);
    launchCheck();
    // Chunks of 64 rows, fewer (longer) ones where the partials would pass 16 MiB.
    unsigned col_blocks = ceil_div(C, 128);
    size_t max_chunks = ((size_t)16 << 20) / (sizeof(float) * 2 * C) + 1;
    int per_chunk = (int)ceil_div(N, max_chunks);
    if (per_chunk < 64) per_chunk = 64;
    int chunks = (int)ceil_div(N, per_chunk);
    float *partial = (float *)kernels_scratch(sizeof(float) * 2 * chunks * (size_t)C, "layernorm_backward");
    layernorm_dparams_partial_kernel<<<dim3(col_blocks, chunks), 128, 0, stream>>>(
        partial, dout, inp, mean, rstd, N, C, per_chunk);
    launchCheck();
    layernorm_dparams_finish_kernel<<<col_blocks, 128, 0, stream>>>(dweight, dbias, partial, chunks, C);
    launchCheck();
}

extern "C" void layernorm_forward(void *out, float *mean, float *rstd, const void *inp,
                                  const void *weight, const void *bias, int N, int C, kdtype dt,
                                  cudaStream_t stream)
{
    kassert(N > 0 && C > 0, "layernorm_forward shape");
    if (dt == KD_F32)
        layernorm_forward_t((float *)out, mean, rstd, (const float *)inp, (const float *)weight,
                            (const float *)bias, N, C, stream);
    else
        layernorm_forward_t((__nv_bfloat16 *)out, mean, rstd, (const __nv_bfloat16 *)inp,
                            (const __nv_bfloat16 *)weight, (const __nv_bfloat16 *)bias, N, C, stream);
}

extern "C" void layernorm_backward(void *dinp, float *dweight, float *dbias, const void *dout,
                                   const void *inp, const void *weight, const float *mean,
                                   const float *rstd, int N, int C, kdtype dt, cudaStream_t stream)
{
    kassert(N > 0 && C > 0, "layernorm_backward shape");
    if (dt == KD_F32)
        layernorm_backward_t((float *)dinp, dweight, dbias, (const float *)dout, (const float *)inp,
                             (const float *)weight, mean, rstd, N, C, stream);
    else
        layernorm_backward_t((__nv_bfloat16 *)dinp, dweight, dbias, (const __nv_bfloat16 *)dout,
                             (const __nv_bfloat16 *)inp, (const __nv_bfloat16 *)weight, mean, rstd,
                             N, C, stream);
}
