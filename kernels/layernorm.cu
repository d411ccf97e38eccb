// LayerNorm over the last dim: forward saves mean and rstd; backward
// accumulates dinp and, deterministically, dweight and dbias.
// bf16 rows of C = 256 k (k <= 8) or C = 128 k (k odd, k <= 15; e.g. the
// `small` encoder's 384) take the fast kernels: a warp holds its row in
// registers (16-byte loads, 8 columns a lane per 256; or 8-byte loads, 4
// columns a lane per 128), reads it once, and the backward sums dweight/dbias
// in the same pass. Other shapes and fp32 take the general kernels.
#include <stdint.h>

#include "kernels/common.cuh"

#define LN_EPS 1e-5f
#define LN_VEC_WARPS 4  // warps per block of the fast kernels

// ---- kernels

// E bf16 in 2E bytes: one lane's load (E = 8: 16 bytes, E = 4: 8 bytes).
template <int E> struct alignas(2 * E) BfVec {
    __nv_bfloat162 h[E / 2];
};

template <int E> __device__ __forceinline__ void unpack(float *f, BfVec<E> v)
{
#pragma unroll
    for (int k = 0; k < E / 2; k++) f[2 * k] = __low2float(v.h[k]), f[2 * k + 1] = __high2float(v.h[k]);
}

template <int E> __device__ __forceinline__ BfVec<E> pack(const float *f)
{
    BfVec<E> v;
#pragma unroll
    for (int k = 0; k < E / 2; k++) v.h[k] = __floats2bfloat162_rn(f[2 * k], f[2 * k + 1]);
    return v;
}

// Fast forward: one warp per row, lane owns columns 32 E p + E lane + [0, E)
// for p < P (a warp's load of pack p: 32 E contiguous columns).
template <int E, int P>
__global__ void __launch_bounds__(32 * LN_VEC_WARPS, 4)  // <= 128 registers: 16 warps an SM
layernorm_forward_vec_kernel(BfVec<E> *__restrict__ out, float *__restrict__ mean, float *__restrict__ rstd,
                             const BfVec<E> *__restrict__ inp, const BfVec<E> *__restrict__ weight,
                             const BfVec<E> *__restrict__ bias, int N)
{
    constexpr int C = 32 * E * P;
    int lane = threadIdx.x % 32, row = blockIdx.x * LN_VEC_WARPS + threadIdx.x / 32;
    if (row >= N) return;
    // The row stays packed (bf16) in registers and is unpacked per use:
    // half the registers of fp32 copies, and the values are the same.
    BfVec<E> x[P];
    float sum = 0.0f, v[E];
#pragma unroll
    for (int p = 0; p < P; p++) {
        x[p] = inp[(size_t)row * (C / E) + p * 32 + lane];
        unpack(v, x[p]);
#pragma unroll
        for (int k = 0; k < E; k++) sum += v[k];
    }
    float m = warp_sum(sum) / C, var = 0.0f;
#pragma unroll
    for (int p = 0; p < P; p++) {
        unpack(v, x[p]);
#pragma unroll
        for (int k = 0; k < E; k++) var += (v[k] - m) * (v[k] - m);
    }
    float s = rsqrtf(warp_sum(var) / C + LN_EPS);
#pragma unroll
    for (int p = 0; p < P; p++) {
        float w[E], b[E];
        unpack(v, x[p]);
        unpack(w, weight[p * 32 + lane]);
        unpack(b, bias[p * 32 + lane]);
#pragma unroll
        for (int k = 0; k < E; k++) v[k] = (v[k] - m) * s * w[k] + b[k];
        out[(size_t)row * (C / E) + p * 32 + lane] = pack<E>(v);
    }
    if (lane == 0) mean[row] = m, rstd[row] = s;
}

// Fast backward: dinp (+=) one warp per row (grid-stride); each warp sums
// its rows' dweight, dbias terms in its own shared-memory row (no sharing,
// no atomics; lane-major, (p, k, lane), so that a warp's accesses hit 32
// banks), then the block adds its warps' rows in order into partial[block]
// (2C floats, by column), for layernorm_vec_finish_kernel.
template <int E, int P, int NA>
__global__ void __launch_bounds__(32 * LN_VEC_WARPS)
layernorm_backward_vec_kernel(BfVec<E> *dinp, float *__restrict__ partial, const BfVec<E> *__restrict__ dout,
                              const BfVec<E> *__restrict__ inp, const BfVec<E> *__restrict__ weight,
                              const float *__restrict__ mean, const float *__restrict__ rstd, int N)
{
    constexpr int C = 32 * E * P;
    // (LN_VEC_WARPS, NA, C): dweight terms, dbias terms, and with NA == 3 the
    // column sums of dinp as stored (the matmul below's bias gradient)
    extern __shared__ float acc[];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = gridDim.x * LN_VEC_WARPS;
    float *dw = acc + (size_t)warp * NA * C, *db = dw + C, *ds = db + C;
    for (int i = lane; i < NA * C; i += 32) dw[i] = 0.0f;  // each lane touches only its own columns
    for (int row = blockIdx.x * LN_VEC_WARPS + warp; row < N; row += warps) {
        size_t at = (size_t)row * (C / E);
        float m = mean[row], s = rstd[row], dsum = 0.0f, dnsum = 0.0f;
        BfVec<E> xr[P], dyr[P];  // packed, as in the forward
#pragma unroll
        for (int p = 0; p < P; p++) {
            float x[E], dy[E], w[E];
            xr[p] = inp[at + p * 32 + lane];
            dyr[p] = dout[at + p * 32 + lane];
            unpack(x, xr[p]);
            unpack(dy, dyr[p]);
            unpack(w, weight[p * 32 + lane]);
#pragma unroll
            for (int k = 0; k < E; k++) {
                int c = (p * E + k) * 32 + lane;
                float norm = (x[k] - m) * s, dn = w[k] * dy[k];
                dw[c] += dy[k] * norm;
                db[c] += dy[k];
                dsum += dn;
                dnsum += dn * norm;
            }
        }
        dsum = warp_sum(dsum) / C;
        dnsum = warp_sum(dnsum) / C;
#pragma unroll
        for (int p = 0; p < P; p++) {
            float x[E], dy[E], w[E], dx[E];
            unpack(x, xr[p]);
            unpack(dy, dyr[p]);
            unpack(w, weight[p * 32 + lane]);
            unpack(dx, dinp[at + p * 32 + lane]);
#pragma unroll
            for (int k = 0; k < E; k++) dx[k] += (w[k] * dy[k] - dsum - (x[k] - m) * s * dnsum) * s;
            BfVec<E> stored = pack<E>(dx);
            dinp[at + p * 32 + lane] = stored;
            if (NA == 3) {
                unpack(dx, stored);  // the rounded values a later read of dinp sees
#pragma unroll
                for (int k = 0; k < E; k++) ds[(p * E + k) * 32 + lane] += dx[k];
            }
        }
    }
    __syncthreads();
    float *out = partial + (size_t)blockIdx.x * NA * C;
    for (int i = threadIdx.x; i < NA * C; i += blockDim.x) {
        float sum = 0.0f;
#pragma unroll
        for (int w = 0; w < LN_VEC_WARPS; w++) sum += acc[(size_t)w * NA * C + i];
        int j = i % C, pk = j / 32, col = pk / E * (32 * E) + j % 32 * E + pk % E;
        out[i - j + col] = sum;
    }
}

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

// dweight, dbias += the sums of the fast backward's partial rows (chunks, 2C):
// a block takes 32 of the 2C columns, each of its 8 warps every 8th row,
// then the 8 sums are added in order (deterministic, and enough blocks to
// read the partials at memory speed).
__global__ void layernorm_vec_finish_kernel(float *dweight, float *dbias, float *dsum, const float *partial,
                                            int chunks, int C, int na)
{
    __shared__ float part[8][32];
    int lane = threadIdx.x % 32, grp = threadIdx.x / 32, col = blockIdx.x * 32 + lane;
    float sum = 0.0f;
    if (col < na * C)
        for (int k = grp; k < chunks; k += 8) sum += partial[(size_t)k * na * C + col];
    part[grp][lane] = sum;
    __syncthreads();
    if (grp || col >= na * C) return;
    for (int g = 1; g < 8; g++) sum += part[g][lane];
    float *to = col < C ? dweight : col < 2 * C ? dbias : dsum;
    to[col % C] += sum;
}

// ---- launchers

// Blocks of the fast backward: one wave of as many as fit on the GPU (each
// adds a partial row to sum afterwards), fewer for small N.
static int vec_blocks(int N, int per_sm)
{
    static int sms;
    if (!sms) cudaCheck(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    int want = (int)ceil_div(N, LN_VEC_WARPS), most = (per_sm > 0 ? per_sm : 1) * sms;
    return want < most ? want : most;
}

// Columns a lane loads at once on the fast path (bf16): 8 (16 bytes) for
// C = 256 k, k <= 8; 4 (8 bytes) for the other C = 128 k, k <= 15; 0 (the
// general kernels) for other C or a tensor not aligned to the load.
static int vec_width(int C, std::initializer_list<const void *> ptrs)
{
    int E = C % 256 == 0 && C / 256 <= 8 ? 8 : C % 128 == 0 && C / 128 <= 15 ? 4 : 0;
    if (!E) return 0;
    for (const void *p : ptrs)
        if ((uintptr_t)p % (2 * E)) return 0;
    return E;
}

// CALL(E, P) for vec_width's E and the P = C / (32 E) packs a lane holds.
#define LN_DISPATCH(E, C, CALL)                                                   \
    if ((E) == 8) {                                                               \
        switch ((C) / 256) {                                                      \
        case 1: CALL(8, 1); break;                                                \
        case 2: CALL(8, 2); break;                                                \
        case 3: CALL(8, 3); break;                                                \
        case 4: CALL(8, 4); break;                                                \
        case 5: CALL(8, 5); break;                                                \
        case 6: CALL(8, 6); break;                                                \
        case 7: CALL(8, 7); break;                                                \
        default: CALL(8, 8); break;                                               \
        }                                                                         \
    } else {                                                                      \
        switch ((C) / 128) {                                                      \
        case 1: CALL(4, 1); break;                                                \
        case 3: CALL(4, 3); break;                                                \
        case 5: CALL(4, 5); break;                                                \
        case 7: CALL(4, 7); break;                                                \
        case 9: CALL(4, 9); break;                                                \
        case 11: CALL(4, 11); break;                                              \
        case 13: CALL(4, 13); break;                                              \
        default: CALL(4, 15); break;                                              \
        }                                                                         \
    }

static void forward_vec(void *out, float *mean, float *rstd, const void *inp, const void *weight,
                        const void *bias, int N, int C, int E, cudaStream_t stream)
{
    unsigned blocks = ceil_div(N, LN_VEC_WARPS);
#define LN_FWD(E, P)                                                                                  \
    layernorm_forward_vec_kernel<E, P><<<blocks, 32 * LN_VEC_WARPS, 0, stream>>>(                     \
        (BfVec<E> *)out, mean, rstd, (const BfVec<E> *)inp, (const BfVec<E> *)weight,                 \
        (const BfVec<E> *)bias, N)
    LN_DISPATCH(E, C, LN_FWD)
#undef LN_FWD
    launchCheck();
}

template <int E, int P, int NA>
static void backward_vec_na(void *dinp, float *dweight, float *dbias, float *dsum, const void *dout,
                            const void *inp, const void *weight, const float *mean, const float *rstd, int N,
                            cudaStream_t stream)
{
    constexpr int C = 32 * E * P;
    size_t smem = sizeof(float) * LN_VEC_WARPS * NA * C;
    auto kernel = layernorm_backward_vec_kernel<E, P, NA>;
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    int per_sm;
    cudaCheck(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * LN_VEC_WARPS, smem));
    int blocks = vec_blocks(N, per_sm);
    float *partial = (float *)kernels_scratch(sizeof(float) * NA * (size_t)blocks * C, "layernorm_backward");
    kernel<<<blocks, 32 * LN_VEC_WARPS, smem, stream>>>((BfVec<E> *)dinp, partial, (const BfVec<E> *)dout,
                                                        (const BfVec<E> *)inp, (const BfVec<E> *)weight,
                                                        mean, rstd, N);
    launchCheck();
    layernorm_vec_finish_kernel<<<ceil_div(NA * C, 32), 256, 0, stream>>>(dweight, dbias, dsum, partial, blocks,
                                                                          C, NA);
    launchCheck();
}

// A third shared-memory row only where dsum is asked for (it costs occupancy).
template <int E, int P>
static void backward_vec_p(void *dinp, float *dweight, float *dbias, float *dsum, const void *dout,
                           const void *inp, const void *weight, const float *mean, const float *rstd, int N,
                           cudaStream_t stream)
{
    if (dsum)
        backward_vec_na<E, P, 3>(dinp, dweight, dbias, dsum, dout, inp, weight, mean, rstd, N, stream);
    else
        backward_vec_na<E, P, 2>(dinp, dweight, dbias, dsum, dout, inp, weight, mean, rstd, N, stream);
}

static void backward_vec(void *dinp, float *dweight, float *dbias, float *dsum, const void *dout,
                         const void *inp, const void *weight, const float *mean, const float *rstd, int N,
                         int C, int E, cudaStream_t stream)
{
#define LN_BWD(E, P) backward_vec_p<E, P>(dinp, dweight, dbias, dsum, dout, inp, weight, mean, rstd, N, stream)
    LN_DISPATCH(E, C, LN_BWD)
#undef LN_BWD
}

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
    int E = dt == KD_BF16 ? vec_width(C, {out, inp, weight, bias}) : 0;
    if (E)
        forward_vec(out, mean, rstd, inp, weight, bias, N, C, E, stream);
    else if (dt == KD_F32)
        layernorm_forward_t((float *)out, mean, rstd, (const float *)inp, (const float *)weight,
                            (const float *)bias, N, C, stream);
    else
        layernorm_forward_t((__nv_bfloat16 *)out, mean, rstd, (const __nv_bfloat16 *)inp,
                            (const __nv_bfloat16 *)weight, (const __nv_bfloat16 *)bias, N, C, stream);
}

extern "C" void layernorm_backward(void *dinp, float *dweight, float *dbias, float *dsum, const void *dout,
                                   const void *inp, const void *weight, const float *mean,
                                   const float *rstd, int N, int C, kdtype dt, cudaStream_t stream)
{
    kassert(N > 0 && C > 0, "layernorm_backward shape");
    int E = dt == KD_BF16 ? vec_width(C, {dinp, dout, inp, weight}) : 0;
    if (E) {
        backward_vec(dinp, dweight, dbias, dsum, dout, inp, weight, mean, rstd, N, C, E, stream);
        return;
    }
    if (dt == KD_F32)
        layernorm_backward_t((float *)dinp, dweight, dbias, (const float *)dout, (const float *)inp,
                             (const float *)weight, mean, rstd, N, C, stream);
    else
        layernorm_backward_t((__nv_bfloat16 *)dinp, dweight, dbias, (const __nv_bfloat16 *)dout,
                             (const __nv_bfloat16 *)inp, (const __nv_bfloat16 *)weight, mean, rstd,
                             N, C, stream);
    if (dsum) // the general path: a second pass over dinp
        column_sum_accumulate(dsum, dinp, N, C, dt, stream);
}
