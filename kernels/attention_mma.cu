// bf16 attention on the tensor cores (mma.sync m16n8k16, fp32 accumulate),
// the kernels attention.cu's launchers use for KD_BF16. Same algorithm as the
// fp32 kernels there: online softmax forward saving lse; backward as two
// kernels (dk/dv streaming query tiles, dq streaming key tiles), each output
// written by one warp, so results are deterministic. A warp owns 16 rows;
// score fragments become the next product's A operand in registers
// (FlashAttention-2's layout trick), P and dS rounded to bf16 for it.
#include <stdint.h>

#include "kernels/attention_mma.cuh"
#include "kernels/common.cuh"

#define BR 64          // rows of a block: 4 warps x 16
#define BC 64          // key tile of the forward and of the dq kernel
#define BQ 32          // query tile of the dk/dv kernel
#define MMA_THREADS 128
#define LOG2E 1.4426950408889634f

typedef __nv_bfloat16 bf16;

// ---- kernels

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack2(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

__device__ __forceinline__ uint32_t ld32(const bf16 *p) { return *(const uint32_t *)p; }

// A fragment of the 16x16 block at (r0, c0) of a row-major smem tile.
__device__ __forceinline__ void load_a(uint32_t a[4], const bf16 *X, int ld, int r0, int c0)
{
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    const bf16 *p = X + (r0 + g) * ld + c0 + 2 * t;
    a[0] = ld32(p), a[1] = ld32(p + 8 * ld), a[2] = ld32(p + 8), a[3] = ld32(p + 8 * ld + 8);
}

// acc[n] (16 x 8 tiles, n < NT) += A (16 x 16*KT, fragments a[k]) times the
// matrix whose column j is row n0 + j of the smem tile Y (row-major, ld),
// over columns [c0, c0 + 16*KT) of Y.
template <int NT>
__device__ __forceinline__ void mma_rows(float acc[][4], const uint32_t a[4], const bf16 *Y, int ld, int c0)
{
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
    for (int n = 0; n < NT; n++) {
        const bf16 *p = Y + (n * 8 + g) * ld + c0 + 2 * t;
        mma16816(acc[n], a, ld32(p), ld32(p + 8));
    }
}

// acc[n] (16 x 8 tiles, n < NT) += A (16 x 16) times rows [r0, r0 + 16) of
// the row-major smem tile Y, columns [8n, 8n + 8): B fragments straight from
// the [k][n] layout through ldmatrix.trans (no transposed copy in smem).
template <int NT>
__device__ __forceinline__ void mma_cols(float acc[][4], const uint32_t a[4], const bf16 *Y, int ld, int r0)
{
    const bf16 *row = Y + (r0 + threadIdx.x % 16) * ld;  // lanes 0-7: rows r0.., lanes 8-15: r0+8..
#pragma unroll
    for (int n = 0; n < NT; n++) {
        uint32_t b0, b1, addr = (uint32_t)__cvta_generic_to_shared(row + n * 8);
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                     : "=r"(b0), "=r"(b1)
                     : "r"(addr));
        mma16816(acc[n], a, b0, b1);
    }
}

// The A fragment for k-step kk from score accumulators s (n-tiles 2kk, 2kk+1).
__device__ __forceinline__ void scores_to_a(uint32_t a[4], const float s0[4], const float s1[4])
{
    a[0] = pack2(s0[0], s0[1]), a[1] = pack2(s0[2], s0[3]);
    a[2] = pack2(s1[0], s1[1]), a[3] = pack2(s1[2], s1[3]);
}

// rows rows starting at r0 of one head from a tensor with row stride `stride`
// into smem X (row-major, ld), 16 bytes at a time; rows at or past T are zeros.
template <int HD>
__device__ void load_rows(bf16 *X, int ld, const bf16 *src, size_t stride, int r0, int rows, int T_)
{
    for (int i = threadIdx.x; i < rows * HD / 8; i += MMA_THREADS) {
        int r = i / (HD / 8), c = i % (HD / 8) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r0 + r < T_) v = *(const uint4 *)(src + (size_t)(r0 + r) * stride + c);
        *(uint4 *)(X + r * ld + c) = v;
    }
}

__device__ __forceinline__ bool visible_mma(int q, int k, int T_, int causal)
{
    return q < T_ && k < T_ && (!causal || k <= q);
}

template <int HD>
__global__ void __launch_bounds__(MMA_THREADS)
attention_forward_mma_kernel(bf16 *out, float *lse, const bf16 *qkv, int T_, int NH, int causal, float scale)
{
    constexpr int LD = HD + 8, KS = HD / 16, ND = HD / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = (bf16 *)smem_raw, *Ks = Qs + BR * LD, *Vs = Ks + BC * LD;
    int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z, q0 = qt * BR;
    int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    size_t stride = (size_t)3 * NH * HD;
    const bf16 *qb = qkv + (size_t)b * T_ * stride + (size_t)h * HD;
    load_rows<HD>(Qs, LD, qb, stride, q0, BR, T_);
    __syncthreads();
    uint32_t qf[KS][4];
    for (int k = 0; k < KS; k++) load_a(qf[k], Qs, LD, warp * 16, k * 16);

    float o[ND][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int n = 0; n < ND; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    int rows[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
    float sl2 = scale * LOG2E;
    int ktiles = (int)ceil_div(T_, BC);
    if (causal) ktiles = min(ktiles, qt + 1);
    for (int kt = 0; kt < ktiles; kt++) {
        int k0 = kt * BC;
        __syncthreads();
        load_rows<HD>(Ks, LD, qb + (size_t)NH * HD, stride, k0, BC, T_);
        load_rows<HD>(Vs, LD, qb + (size_t)2 * NH * HD, stride, k0, BC, T_);
        __syncthreads();
        float s[BC / 8][4];
        for (int n = 0; n < BC / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
        for (int k = 0; k < KS; k++) mma_rows<BC / 8>(s, qf[k], Ks, LD, k * 16);
        for (int r = 0; r < 2; r++) {
            int vrow = rows[r] < T_ ? rows[r] : 0;  // rows past T: any finite row, not stored
            float mx = -INFINITY;
            for (int n = 0; n < BC / 8; n++)
                for (int e = 0; e < 2; e++) {
                    float x = visible_mma(vrow, k0 + n * 8 + 2 * t + e, T_, causal) ? s[n][2 * r + e] * sl2 : -INFINITY;
                    s[n][2 * r + e] = x;
                    mx = fmaxf(mx, x);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float m_new = fmaxf(m[r], mx), alpha = exp2f(m[r] - m_new), rs = 0.0f;
            for (int n = 0; n < BC / 8; n++)
                for (int e = 0; e < 2; e++) {
                    float p = exp2f(s[n][2 * r + e] - m_new);
                    s[n][2 * r + e] = p;
                    rs += p;
                }
            l[r] = l[r] * alpha + rs;  // per-thread partial; summed over the row's 4 threads at the end
            m[r] = m_new;
            for (int n = 0; n < ND; n++) o[n][2 * r] *= alpha, o[n][2 * r + 1] *= alpha;
        }
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t a[4];
            scores_to_a(a, s[2 * kk], s[2 * kk + 1]);
            mma_cols<ND>(o, a, Vs, LD, kk * 16);
        }
    }
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        if (rows[r] >= T_) continue;
        bf16 *orow = out + (((size_t)b * T_ + rows[r]) * NH + h) * HD;
        for (int n = 0; n < ND; n++)
            *(__nv_bfloat162 *)(orow + n * 8 + 2 * t) =
                __floats2bfloat162_rn(o[n][2 * r] / l[r], o[n][2 * r + 1] / l[r]);
        if (t == 0) lse[((size_t)b * NH + h) * T_ + rows[r]] = (m[r] + log2f(l[r])) / LOG2E;
    }
}

// dq: a block owns 64 query rows and streams key tiles.
template <int HD>
__global__ void __launch_bounds__(MMA_THREADS)
attention_dq_mma_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                        int T_, int NH, int causal, float scale)
{
    constexpr int LD = HD + 8, KS = HD / 16, ND = HD / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = (bf16 *)smem_raw, *dOs = Qs + BR * LD, *Ks = dOs + BR * LD, *Vs = Ks + BC * LD;
    int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z, q0 = qt * BR;
    int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    size_t stride = (size_t)3 * NH * HD, ostride = (size_t)NH * HD, stat = ((size_t)b * NH + h) * T_;
    const bf16 *qb = qkv + (size_t)b * T_ * stride + (size_t)h * HD;
    load_rows<HD>(Qs, LD, qb, stride, q0, BR, T_);
    load_rows<HD>(dOs, LD, dout + (size_t)b * T_ * ostride + (size_t)h * HD, ostride, q0, BR, T_);
    int rows[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
    float lse2[2], Dr[2];
    for (int r = 0; r < 2; r++) {
        lse2[r] = rows[r] < T_ ? lse[stat + rows[r]] * LOG2E : 0.0f;
        Dr[r] = rows[r] < T_ ? D[stat + rows[r]] : 0.0f;
    }
    float dq[ND][4];
    for (int n = 0; n < ND; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;
    float sl2 = scale * LOG2E;
    int ktiles = (int)ceil_div(T_, BC);
    if (causal) ktiles = min(ktiles, qt + 1);
    for (int kt = 0; kt < ktiles; kt++) {
        int k0 = kt * BC;
        __syncthreads();
        load_rows<HD>(Ks, LD, qb + (size_t)NH * HD, stride, k0, BC, T_);
        load_rows<HD>(Vs, LD, qb + (size_t)2 * NH * HD, stride, k0, BC, T_);
        __syncthreads();
        float s[BC / 8][4], dp[BC / 8][4];
        for (int n = 0; n < BC / 8; n++)
            for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.0f;
        for (int k = 0; k < KS; k++) {
            uint32_t a[4];
            load_a(a, Qs, LD, warp * 16, k * 16);
            mma_rows<BC / 8>(s, a, Ks, LD, k * 16);
            load_a(a, dOs, LD, warp * 16, k * 16);
            mma_rows<BC / 8>(dp, a, Vs, LD, k * 16);
        }
        for (int n = 0; n < BC / 8; n++)
            for (int e = 0; e < 4; e++) {
                int r = e / 2, key = k0 + n * 8 + 2 * t + e % 2;
                float p = visible_mma(rows[r], key, T_, causal) ? exp2f(s[n][e] * sl2 - lse2[r]) : 0.0f;
                s[n][e] = p * (dp[n][e] - Dr[r]);  // dS
            }
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t a[4];
            scores_to_a(a, s[2 * kk], s[2 * kk + 1]);
            mma_cols<ND>(dq, a, Ks, LD, kk * 16);
        }
    }
    for (int r = 0; r < 2; r++) {
        if (rows[r] >= T_) continue;
        bf16 *row = dqkv + ((size_t)b * T_ + rows[r]) * stride + (size_t)h * HD;
        for (int n = 0; n < ND; n++)
            *(__nv_bfloat162 *)(row + n * 8 + 2 * t) =
                __floats2bfloat162_rn(dq[n][2 * r] * scale, dq[n][2 * r + 1] * scale);
    }
}

// dk, dv: a block owns 64 key rows and streams query tiles of 32. Scores are
// computed transposed (keys x queries) so the key rows stay with the warp.
template <int HD>
__global__ void __launch_bounds__(MMA_THREADS)
attention_dkv_mma_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                         int T_, int NH, int causal, float scale)
{
    constexpr int LD = HD + 8, KS = HD / 16, ND = HD / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Ks = (bf16 *)smem_raw, *Vs = Ks + BR * LD, *Qs = Vs + BR * LD, *dOs = Qs + BQ * LD;
    float *Ls = (float *)(dOs + BQ * LD), *Ds = Ls + BQ;
    int kt = blockIdx.x, h = blockIdx.y, b = blockIdx.z, k0 = kt * BR;
    int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    size_t stride = (size_t)3 * NH * HD, ostride = (size_t)NH * HD, stat = ((size_t)b * NH + h) * T_;
    const bf16 *qb = qkv + (size_t)b * T_ * stride + (size_t)h * HD;
    const bf16 *ob = dout + (size_t)b * T_ * ostride + (size_t)h * HD;
    load_rows<HD>(Ks, LD, qb + (size_t)NH * HD, stride, k0, BR, T_);
    load_rows<HD>(Vs, LD, qb + (size_t)2 * NH * HD, stride, k0, BR, T_);
    int keys[2] = {k0 + warp * 16 + g, k0 + warp * 16 + g + 8};
    float dk[ND][4], dv[ND][4];
    for (int n = 0; n < ND; n++)
        for (int e = 0; e < 4; e++) dk[n][e] = dv[n][e] = 0.0f;
    float sl2 = scale * LOG2E;
    int qtiles = (int)ceil_div(T_, BQ);
    for (int qt = causal ? k0 / BQ : 0; qt < qtiles; qt++) {
        int q0 = qt * BQ;
        __syncthreads();
        load_rows<HD>(Qs, LD, qb, stride, q0, BQ, T_);
        load_rows<HD>(dOs, LD, ob, ostride, q0, BQ, T_);
        for (int i = threadIdx.x; i < BQ; i += MMA_THREADS) {
            bool in = q0 + i < T_;
            Ls[i] = in ? lse[stat + q0 + i] * LOG2E : 0.0f;
            Ds[i] = in ? D[stat + q0 + i] : 0.0f;
        }
        __syncthreads();
        float s[BQ / 8][4], dp[BQ / 8][4];  // transposed: [key row][query col]
        for (int n = 0; n < BQ / 8; n++)
            for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.0f;
        for (int k = 0; k < KS; k++) {
            uint32_t a[4];
            load_a(a, Ks, LD, warp * 16, k * 16);
            mma_rows<BQ / 8>(s, a, Qs, LD, k * 16);
            load_a(a, Vs, LD, warp * 16, k * 16);
            mma_rows<BQ / 8>(dp, a, dOs, LD, k * 16);
        }
        for (int n = 0; n < BQ / 8; n++)
            for (int e = 0; e < 4; e++) {
                int qi = n * 8 + 2 * t + e % 2, key = keys[e / 2];
                float p = visible_mma(q0 + qi, key, T_, causal) ? exp2f(s[n][e] * sl2 - Ls[qi]) : 0.0f;
                s[n][e] = p;
                dp[n][e] = p * (dp[n][e] - Ds[qi]);  // dS^T
            }
        for (int kk = 0; kk < BQ / 16; kk++) {
            uint32_t a[4];
            scores_to_a(a, s[2 * kk], s[2 * kk + 1]);
            mma_cols<ND>(dv, a, dOs, LD, kk * 16);
            scores_to_a(a, dp[2 * kk], dp[2 * kk + 1]);
            mma_cols<ND>(dk, a, Qs, LD, kk * 16);
        }
    }
    for (int r = 0; r < 2; r++) {
        if (keys[r] >= T_) continue;
        bf16 *row = dqkv + ((size_t)b * T_ + keys[r]) * stride + (size_t)h * HD;
        for (int n = 0; n < ND; n++) {
            *(__nv_bfloat162 *)(row + (size_t)NH * HD + n * 8 + 2 * t) =
                __floats2bfloat162_rn(dk[n][2 * r] * scale, dk[n][2 * r + 1] * scale);
            *(__nv_bfloat162 *)(row + (size_t)2 * NH * HD + n * 8 + 2 * t) =
                __floats2bfloat162_rn(dv[n][2 * r], dv[n][2 * r + 1]);
        }
    }
}

// ---- launchers

template <int HD>
static void forward_hd(bf16 *out, float *lse, const bf16 *qkv, int B, int T_, int NH, int causal,
                       cudaStream_t stream)
{
    size_t smem = sizeof(bf16) * (BR + 2 * BC) * (HD + 8);
    cudaCheck(cudaFuncSetAttribute(attention_forward_mma_kernel<HD>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(ceil_div(T_, BR), NH, B);
    attention_forward_mma_kernel<HD><<<grid, MMA_THREADS, smem, stream>>>(out, lse, qkv, T_, NH, causal,
                                                                          1.0f / sqrtf((float)HD));
    launchCheck();
}

template <int HD>
static void backward_hd(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                        int B, int T_, int NH, int causal, cudaStream_t stream)
{
    float scale = 1.0f / sqrtf((float)HD);
    dim3 grid(ceil_div(T_, BR), NH, B);
    size_t smem = sizeof(bf16) * (2 * BR + 2 * BC) * (HD + 8);
    cudaCheck(cudaFuncSetAttribute(attention_dq_mma_kernel<HD>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_dq_mma_kernel<HD><<<grid, MMA_THREADS, smem, stream>>>(dqkv, dout, qkv, lse, D, T_, NH,
                                                                     causal, scale);
    launchCheck();
    smem = sizeof(bf16) * (2 * BR + 2 * BQ) * (HD + 8) + sizeof(float) * 2 * BQ;
    cudaCheck(cudaFuncSetAttribute(attention_dkv_mma_kernel<HD>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_dkv_mma_kernel<HD><<<grid, MMA_THREADS, smem, stream>>>(dqkv, dout, qkv, lse, D, T_, NH,
                                                                      causal, scale);
    launchCheck();
}

void attention_forward_mma(void *out, float *lse, const void *qkv, int B, int T_, int NH, int HD,
                           int causal, cudaStream_t stream)
{
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)qkv;
    switch (HD) {
    case 32: forward_hd<32>(o, lse, x, B, T_, NH, causal, stream); break;
    case 64: forward_hd<64>(o, lse, x, B, T_, NH, causal, stream); break;
    case 96: forward_hd<96>(o, lse, x, B, T_, NH, causal, stream); break;
    default: forward_hd<128>(o, lse, x, B, T_, NH, causal, stream); break;
    }
}

void attention_backward_mma(void *dqkv, const void *dout, const void *qkv, const float *lse,
                            const float *D, int B, int T_, int NH, int HD, int causal, cudaStream_t stream)
{
    bf16 *d = (bf16 *)dqkv;
    const bf16 *dy = (const bf16 *)dout, *x = (const bf16 *)qkv;
    switch (HD) {
    case 32: backward_hd<32>(d, dy, x, lse, D, B, T_, NH, causal, stream); break;
    case 64: backward_hd<64>(d, dy, x, lse, D, B, T_, NH, causal, stream); break;
    case 96: backward_hd<96>(d, dy, x, lse, D, B, T_, NH, causal, stream); break;
    default: backward_hd<128>(d, dy, x, lse, D, B, T_, NH, causal, stream); break;
    }
}
