// Fused attention over packed qkv (B, T, 3, NH, HD), flash-style: a block owns
// a 64-row tile and streams the other side's 64-row tiles through shared
// memory with an online softmax; nothing of size (T, T) reaches global memory.
// Backward recomputes P from the saved log-sum-exp: one kernel owns dk, dv
// (streams query tiles), another owns dq (streams key tiles), so every output
// element has exactly one writer and the result is deterministic.
// This file holds the launchers and the fp32 kernels (plain FMA, exact enough
// to compare whole models with PyTorch); bf16 runs on the tensor cores
// (attention_mma.cu forward, attention_mma_bwd.cu backward: one kernel whose
// dq sum has a fixed order).
//
// Thread layout in every kernel: 256 threads as 16 x 16 (ty, tx). A thread
// owns score rows ty*4 + i (i < 4) and columns tx + 16*j (j < 4) of a 64 x 64
// score tile, and rows ty*4 + i, dims tx + 16*j (j < HD/16) of a 64 x HD
// accumulator. Shared tiles are fp32 with rows padded to HD + 1 floats so that
// walking a column hits distinct banks.
#include <math.h>

#include "kernels/attention_cudnn.h"
#include "kernels/attention_mma.cuh"
#include "kernels/common.cuh"

#define TILE 64
#define ATT_THREADS 256

// ---- kernels

// Loads rows [r0, r0 + 64) of one of q/k/v (which) of head h into dst (64, HD+1),
// times mul; rows at or past T become zeros.
template <typename T, int HD>
__device__ void load_tile(float *dst, const T *qkv_b, int which, int h, int NH, int T_, int r0,
                          float mul)
{
    size_t row_stride = (size_t)3 * NH * HD;
    const T *src = qkv_b + (size_t)which * NH * HD + (size_t)h * HD;
    for (int i = threadIdx.x; i < TILE * HD; i += ATT_THREADS) {
        int r = i / HD, d = i % HD, t = r0 + r;
        dst[r * (HD + 1) + d] = t < T_ ? to_f(src[t * row_stride + d]) * mul : 0.0f;
    }
}

// Loads rows [r0, r0 + 64) of a (B, T, NH, HD) tensor (out or dout) of head h.
template <typename T, int HD>
__device__ void load_tile_o(float *dst, const T *o_b, int h, int NH, int T_, int r0)
{
    size_t row_stride = (size_t)NH * HD;
    for (int i = threadIdx.x; i < TILE * HD; i += ATT_THREADS) {
        int r = i / HD, d = i % HD, t = r0 + r;
        dst[r * (HD + 1) + d] = t < T_ ? to_f(o_b[t * row_stride + (size_t)h * HD + d]) : 0.0f;
    }
}

// s[i][j] = A[ty*4+i] . B[tx+16j] over HD for two (64, HD+1) tiles.
template <int HD>
__device__ __forceinline__ void tile_dot(float s[4][4], const float *A, const float *Bm)
{
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) s[i][j] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < HD; d++) {
        float a[4], b[4];
        for (int i = 0; i < 4; i++) a[i] = A[(ty * 4 + i) * (HD + 1) + d];
        for (int j = 0; j < 4; j++) b[j] = Bm[(tx + 16 * j) * (HD + 1) + d];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) s[i][j] += a[i] * b[j];
    }
}

// Whether score (row, col) takes part: inside the sequence and, if causal, col <= row.
__device__ __forceinline__ bool visible(int row, int col, int T_, int causal)
{
    return row < T_ && col < T_ && (!causal || col <= row);
}

template <typename T, int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_forward_kernel(T *out, float *lse, const T *qkv, int T_, int NH, int causal, float scale)
{
    constexpr int LD = HD + 1, NJ = HD / 16;
    extern __shared__ float smem[];
    float *Qs = smem, *Ks = Qs + TILE * LD, *Vs = Ks + TILE * LD, *Ps = Vs + TILE * LD;
    int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16, q0 = qt * TILE;
    const T *qkv_b = qkv + (size_t)b * T_ * 3 * NH * HD;
    load_tile<T, HD>(Qs, qkv_b, 0, h, NH, T_, q0, scale);

    float m[4], l[4], o[4][NJ];
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY, l[i] = 0.0f;
        for (int j = 0; j < NJ; j++) o[i][j] = 0.0f;
    }
    int ktiles = (int)ceil_div(T_, TILE);
    if (causal) ktiles = min(ktiles, qt + 1);
    for (int kt = 0; kt < ktiles; kt++) {
        int k0 = kt * TILE;
        __syncthreads();  // the previous tile's Ks, Vs, Ps are no longer read
        load_tile<T, HD>(Ks, qkv_b, 1, h, NH, T_, k0, 1.0f);
        load_tile<T, HD>(Vs, qkv_b, 2, h, NH, T_, k0, 1.0f);
        __syncthreads();
        float s[4][4];
        tile_dot<HD>(s, Qs, Ks);
        for (int i = 0; i < 4; i++) {
            int row = q0 + ty * 4 + i;
            float mx = -INFINITY;
            for (int j = 0; j < 4; j++) {
                if (!visible(row < T_ ? row : 0, k0 + tx + 16 * j, T_, causal)) s[i][j] = -INFINITY;
                mx = fmaxf(mx, s[i][j]);
            }
            // The 16 threads of a row are one half-warp: reduce over lane bits 0-3.
            for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            float m_new = fmaxf(m[i], mx);  // finite: column 0 of tile 0 is always visible
            float alpha = __expf(m[i] - m_new), rs = 0.0f;
            for (int j = 0; j < 4; j++) {
                float p = __expf(s[i][j] - m_new);
                Ps[(ty * 4 + i) * (TILE + 1) + tx + 16 * j] = p;
                rs += p;
            }
            for (int off = 8; off > 0; off >>= 1) rs += __shfl_xor_sync(0xffffffffu, rs, off);
            l[i] = l[i] * alpha + rs;
            m[i] = m_new;
            for (int j = 0; j < NJ; j++) o[i][j] *= alpha;
        }
        __syncthreads();
        for (int c = 0; c < TILE; c++) {
            float p[4];
            for (int i = 0; i < 4; i++) p[i] = Ps[(ty * 4 + i) * (TILE + 1) + c];
            for (int j = 0; j < NJ; j++) {
                float v = Vs[c * LD + tx + 16 * j];
                for (int i = 0; i < 4; i++) o[i][j] += p[i] * v;
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        int row = q0 + ty * 4 + i;
        if (row >= T_) continue;
        T *orow = out + (((size_t)b * T_ + row) * NH + h) * HD;
        for (int j = 0; j < NJ; j++) orow[tx + 16 * j] = from_f<T>(o[i][j] / l[i]);
        if (tx == 0) lse[((size_t)b * NH + h) * T_ + row] = m[i] + logf(l[i]);
    }
}

// D (B, NH, T) = rowsum(dout * out): one warp per row.
template <typename T>
__global__ void attention_rowdot_kernel(float *D, const T *dout, const T *out, int B, int T_,
                                        int NH, int HD)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= B * T_ * NH) return;  // row = (b * T + t) * NH + h
    const T *dy = dout + (size_t)row * HD, *o = out + (size_t)row * HD;
    float acc = 0.0f;
    for (int d = lane; d < HD; d += 32) acc += to_f(dy[d]) * to_f(o[d]);
    acc = warp_sum(acc);
    int h = row % NH, t = (row / NH) % T_, b = row / (NH * T_);
    if (lane == 0) D[((size_t)b * NH + h) * T_ + t] = acc;
}

// P and dS = P * (dP - D) of one (query tile, key tile) pair into Ps, dSs
// (64, 65), indexed [query row][key col]. Needs Qs (unscaled), Ks, Vs, dOs,
// and the rows' lse and D in Ls, Ds.
template <int HD>
__device__ void probs_and_dscores(float *Ps, float *dSs, const float *Qs, const float *Ks,
                                  const float *Vs, const float *dOs, const float *Ls,
                                  const float *Ds, int q0, int k0, int T_, int causal, float scale)
{
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    float s[4][4], dp[4][4];
    tile_dot<HD>(s, Qs, Ks);
    tile_dot<HD>(dp, dOs, Vs);
    for (int i = 0; i < 4; i++) {
        int r = ty * 4 + i;
        for (int j = 0; j < 4; j++) {
            int c = tx + 16 * j;
            float p = visible(q0 + r, k0 + c, T_, causal) ? __expf(s[i][j] * scale - Ls[r]) : 0.0f;
            Ps[r * (TILE + 1) + c] = p;
            dSs[r * (TILE + 1) + c] = p * (dp[i][j] - Ds[r]);
        }
    }
}

__device__ void load_rows_stats(float *Ls, float *Ds, const float *lse, const float *D, size_t base,
                                int T_, int q0)
{
    for (int r = threadIdx.x; r < TILE; r += ATT_THREADS) {
        int t = q0 + r;
        Ls[r] = t < T_ ? lse[base + t] : 0.0f;
        Ds[r] = t < T_ ? D[base + t] : 0.0f;
    }
}

template <typename T, int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_dkv_kernel(T *dqkv, const T *dout, const T *qkv, const float *lse, const float *D,
                     int T_, int NH, int causal, float scale)
{
    constexpr int LD = HD + 1, NJ = HD / 16;
    extern __shared__ float smem[];
    float *Ks = smem, *Vs = Ks + TILE * LD, *Qs = Vs + TILE * LD, *dOs = Qs + TILE * LD;
    float *Ps = dOs + TILE * LD, *dSs = Ps + TILE * (TILE + 1), *Ls = dSs + TILE * (TILE + 1);
    float *Ds = Ls + TILE;
    int kt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16, k0 = kt * TILE;
    const T *qkv_b = qkv + (size_t)b * T_ * 3 * NH * HD;
    const T *dout_b = dout + (size_t)b * T_ * NH * HD;
    size_t stat_base = ((size_t)b * NH + h) * T_;
    load_tile<T, HD>(Ks, qkv_b, 1, h, NH, T_, k0, 1.0f);
    load_tile<T, HD>(Vs, qkv_b, 2, h, NH, T_, k0, 1.0f);

    float dk[4][NJ], dv[4][NJ];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < NJ; j++) dk[i][j] = dv[i][j] = 0.0f;
    int qtiles = (int)ceil_div(T_, TILE);
    for (int qt = causal ? kt : 0; qt < qtiles; qt++) {
        int q0 = qt * TILE;
        __syncthreads();
        load_tile<T, HD>(Qs, qkv_b, 0, h, NH, T_, q0, 1.0f);
        load_tile_o<T, HD>(dOs, dout_b, h, NH, T_, q0);
        load_rows_stats(Ls, Ds, lse, D, stat_base, T_, q0);
        __syncthreads();
        probs_and_dscores<HD>(Ps, dSs, Qs, Ks, Vs, dOs, Ls, Ds, q0, k0, T_, causal, scale);
        __syncthreads();
        // dv[key] += sum_q P[q][key] dO[q];  dk[key] += scale * sum_q dS[q][key] Q[q]
        for (int q = 0; q < TILE; q++) {
            float p[4], ds[4];
            for (int i = 0; i < 4; i++) {
                p[i] = Ps[q * (TILE + 1) + ty * 4 + i];
                ds[i] = dSs[q * (TILE + 1) + ty * 4 + i];
            }
            for (int j = 0; j < NJ; j++) {
                float go = dOs[q * LD + tx + 16 * j], qv = Qs[q * LD + tx + 16 * j];
                for (int i = 0; i < 4; i++) {
                    dv[i][j] += p[i] * go;
                    dk[i][j] += ds[i] * qv;
                }
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        int t = k0 + ty * 4 + i;
        if (t >= T_) continue;
        T *row = dqkv + ((size_t)b * T_ + t) * 3 * NH * HD + (size_t)h * HD;
        for (int j = 0; j < NJ; j++) {
            row[(size_t)NH * HD + tx + 16 * j] = from_f<T>(dk[i][j] * scale);
            row[(size_t)2 * NH * HD + tx + 16 * j] = from_f<T>(dv[i][j]);
        }
    }
}

template <typename T, int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_dq_kernel(T *dqkv, const T *dout, const T *qkv, const float *lse, const float *D,
                    int T_, int NH, int causal, float scale)
{
    constexpr int LD = HD + 1, NJ = HD / 16;
    extern __shared__ float smem[];
    float *Qs = smem, *dOs = Qs + TILE * LD, *Ks = dOs + TILE * LD, *Vs = Ks + TILE * LD;
    float *Ps = Vs + TILE * LD, *dSs = Ps + TILE * (TILE + 1), *Ls = dSs + TILE * (TILE + 1);
    float *Ds = Ls + TILE;
    int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16, q0 = qt * TILE;
    const T *qkv_b = qkv + (size_t)b * T_ * 3 * NH * HD;
    load_tile<T, HD>(Qs, qkv_b, 0, h, NH, T_, q0, 1.0f);
    load_tile_o<T, HD>(dOs, dout + (size_t)b * T_ * NH * HD, h, NH, T_, q0);
    load_rows_stats(Ls, Ds, lse, D, ((size_t)b * NH + h) * T_, T_, q0);

    float dq[4][NJ];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < NJ; j++) dq[i][j] = 0.0f;
    int ktiles = (int)ceil_div(T_, TILE);
    if (causal) ktiles = min(ktiles, qt + 1);
    for (int kt = 0; kt < ktiles; kt++) {
        int k0 = kt * TILE;
        __syncthreads();
        load_tile<T, HD>(Ks, qkv_b, 1, h, NH, T_, k0, 1.0f);
        load_tile<T, HD>(Vs, qkv_b, 2, h, NH, T_, k0, 1.0f);
        __syncthreads();
        probs_and_dscores<HD>(Ps, dSs, Qs, Ks, Vs, dOs, Ls, Ds, q0, k0, T_, causal, scale);
        __syncthreads();
        // dq[q] += scale * sum_key dS[q][key] K[key]
        for (int c = 0; c < TILE; c++) {
            float ds[4];
            for (int i = 0; i < 4; i++) ds[i] = dSs[(ty * 4 + i) * (TILE + 1) + c];
            for (int j = 0; j < NJ; j++) {
                float kv = Ks[c * LD + tx + 16 * j];
                for (int i = 0; i < 4; i++) dq[i][j] += ds[i] * kv;
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        int t = q0 + ty * 4 + i;
        if (t >= T_) continue;
        T *row = dqkv + ((size_t)b * T_ + t) * 3 * NH * HD + (size_t)h * HD;
        for (int j = 0; j < NJ; j++) row[tx + 16 * j] = from_f<T>(dq[i][j] * scale);
    }
}

// ---- launchers

static size_t fwd_smem(int HD) { return sizeof(float) * (3 * TILE * (HD + 1) + TILE * (TILE + 1)); }
static size_t bwd_smem(int HD)
{
    return sizeof(float) * (4 * TILE * (HD + 1) + 2 * TILE * (TILE + 1) + 2 * TILE);
}

template <typename T, int HD>
static void attention_forward_t(T *out, float *lse, const T *qkv, int B, int T_, int NH,
                                int causal, cudaStream_t stream)
{
    size_t smem = fwd_smem(HD);
    cudaCheck(cudaFuncSetAttribute(attention_forward_kernel<T, HD>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(ceil_div(T_, TILE), NH, B);
    attention_forward_kernel<T, HD><<<grid, ATT_THREADS, smem, stream>>>(out, lse, qkv, T_, NH, causal,
                                                                         1.0f / sqrtf((float)HD));
    launchCheck();
}

template <typename T, int HD>
static void attention_backward_t(T *dqkv, const T *dout, const T *qkv, const float *lse,
                                 const float *D, int B, int T_, int NH, int causal,
                                 cudaStream_t stream)
{
    size_t smem = bwd_smem(HD);
    float scale = 1.0f / sqrtf((float)HD);
    dim3 grid(ceil_div(T_, TILE), NH, B);
    cudaCheck(cudaFuncSetAttribute(attention_dkv_kernel<T, HD>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_dkv_kernel<T, HD><<<grid, ATT_THREADS, smem, stream>>>(dqkv, dout, qkv, lse, D, T_, NH,
                                                                     causal, scale);
    launchCheck();
    cudaCheck(cudaFuncSetAttribute(attention_dq_kernel<T, HD>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_dq_kernel<T, HD><<<grid, ATT_THREADS, smem, stream>>>(dqkv, dout, qkv, lse, D, T_, NH,
                                                                    causal, scale);
    launchCheck();
}

// Calls F<float, HD> for the runtime head dim (the fp32 path; bf16 runs on
// the tensor cores, attention_mma.cu).
#define ATT_DISPATCH_HD(F, HD, ...)                                                    \
    switch (HD) {                                                                      \
    case 32: F<float, 32>(__VA_ARGS__); break;                                         \
    case 64: F<float, 64>(__VA_ARGS__); break;                                         \
    case 96: F<float, 96>(__VA_ARGS__); break;                                         \
    default: F<float, 128>(__VA_ARGS__); break;                                        \
    }

static void check_shape(int B, int T_, int NH, int HD, const char *who)
{
    kassert(B > 0 && T_ > 0 && NH > 0, who);
    kassert(HD == 32 || HD == 64 || HD == 96 || HD == 128, who);
}

extern "C" void attention_forward(void *out, float *lse, const void *qkv, int B, int T_, int NH,
                                  int HD, int causal, kdtype dt, cudaStream_t stream)
{
    check_shape(B, T_, NH, HD, "attention_forward shape");
    if (dt == KD_BF16 && attention_cudnn_forward(out, lse, qkv, B, T_, NH, HD, causal, stream) == 0)
        return;
    if (dt == KD_BF16)
        attention_forward_mma(out, lse, qkv, B, T_, NH, HD, causal, stream);
    else
        ATT_DISPATCH_HD(attention_forward_t, HD, (float *)out, lse, (const float *)qkv, B, T_, NH,
                        causal, stream);
}

extern "C" void attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                                   const float *lse, int B, int T_, int NH, int HD, int causal,
                                   kdtype dt, cudaStream_t stream)
{
    check_shape(B, T_, NH, HD, "attention_backward shape");
    if (dt == KD_BF16 &&
        attention_cudnn_backward(dqkv, dout, qkv, out, lse, B, T_, NH, HD, causal, stream) == 0)
        return;
    float *D = (float *)kernels_scratch(sizeof(float) * (size_t)B * NH * T_, "attention_backward");
    unsigned grid = ceil_div((size_t)B * T_ * NH, 8);
    if (dt == KD_BF16) {
        attention_rowdot_kernel<<<grid, 256, 0, stream>>>(D, (const __nv_bfloat16 *)dout,
                                                          (const __nv_bfloat16 *)out, B, T_, NH, HD);
        launchCheck();
        attention_backward_mma(dqkv, dout, qkv, lse, D, B, T_, NH, HD, causal, stream);
    } else {
        attention_rowdot_kernel<<<grid, 256, 0, stream>>>(D, (const float *)dout, (const float *)out, B,
                                                          T_, NH, HD);
        launchCheck();
        ATT_DISPATCH_HD(attention_backward_t, HD, (float *)dqkv, (const float *)dout,
                        (const float *)qkv, lse, D, B, T_, NH, causal, stream);
    }
}
