// bf16 attention forward on the tensor cores (mma.sync m16n8k16, fp32
// accumulate), the kernel attention.cu's launcher uses for KD_BF16. Same
// algorithm as the fp32 kernel there: online softmax (in base 2, scores
// pre-scaled by scale * log2 e), saving the log-sum-exp for the backward.
// A block owns 128 query rows (4 warps of 32 rows: each K/V fragment read
// from shared memory feeds two row tiles) and streams K/V tiles of BC keys
// through two shared-memory stages with cp.async, so the next tile loads
// while this one is multiplied. BC is 64, but 32 for HD 128: there the
// 32 x 64 score tile on top of the 32 x 128 output pushed the kernel past 255
// registers into spills, and 32-key tiles ran 9-13% faster at the 1b shape. Score fragments become the P.V product's A
// operand in registers (FlashAttention-2's layout trick), P rounded to bf16.
// Causal: key tiles past a warp's last row are skipped, masks only applied
// on tiles that cross the diagonal or the sequence end.
#include "kernels/attention_mma.cuh"
#include "kernels/common.cuh"

#define FWD_WARPS 4
#define FWD_WM 2                               // 16-row tiles per warp
#define FWD_BR (16 * FWD_WM * FWD_WARPS)       // query rows per block; keys per tile: BC
#define FWD_THREADS (32 * FWD_WARPS)

// ---- kernels

template <int HD, int BC>
__global__ void __launch_bounds__(FWD_THREADS, 2)
attention_forward_mma_kernel(bf16 *out, float *lse, const bf16 *qkv, int T_, int NH, int causal,
                             float sl2)
{
    constexpr int LD = HD + 8, KS = HD / 16, ND = HD / 8, NS = BC / 8;
    // Q fragments stay in registers when they are few (HD <= 64).
    constexpr bool QREG = FWD_WM * KS * 4 <= 32;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = (bf16 *)smem_raw, *Ks = Qs + FWD_BR * LD, *Vs = Ks + 2 * BC * LD;  // K, V: 2 stages
    int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z, q0 = qt * FWD_BR;  // longest rows first
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    int ra = lane_row_a(lane), ca = lane_col_a(lane), rb = lane_row_b(lane), cb = lane_col_b(lane);
    size_t stride = (size_t)3 * NH * HD;
    const bf16 *qb = qkv + (size_t)b * T_ * stride + (size_t)h * HD;
    const bf16 *kb = qb + (size_t)NH * HD, *vb = kb + (size_t)NH * HD;
    int ktiles = (int)ceil_div(T_, BC);
    if (causal) ktiles = min(ktiles, (q0 + FWD_BR) / BC);
    cp_rows<HD, FWD_BR, FWD_THREADS>(Qs, qb, stride, q0, T_);
    cp_rows<HD, BC, FWD_THREADS>(Ks, kb, stride, 0, T_);
    cp_rows<HD, BC, FWD_THREADS>(Vs, vb, stride, 0, T_);
    cp_async_commit();

    int wrow = warp * 16 * FWD_WM, w0 = q0 + wrow;  // the warp's first row (in smem, in the sequence)
    float o[FWD_WM][ND][4], m[FWD_WM][2], l[FWD_WM][2];
    uint32_t qf[QREG ? FWD_WM : 1][QREG ? KS : 1][4];
#pragma unroll
    for (int mi = 0; mi < FWD_WM; mi++) {
        m[mi][0] = m[mi][1] = -INFINITY, l[mi][0] = l[mi][1] = 0.0f;
#pragma unroll
        for (int n = 0; n < ND; n++) o[mi][n][0] = o[mi][n][1] = o[mi][n][2] = o[mi][n][3] = 0.0f;
    }
    for (int kt = 0; kt < ktiles; kt++) {
        int k0 = kt * BC, st = kt & 1;
        cp_async_wait_all();
        __syncthreads();  // tile kt visible to all; every warp is done with tile kt - 1's stage
        if (kt + 1 < ktiles) {
            cp_rows<HD, BC, FWD_THREADS>(Ks + (st ^ 1) * BC * LD, kb, stride, k0 + BC, T_);
            cp_rows<HD, BC, FWD_THREADS>(Vs + (st ^ 1) * BC * LD, vb, stride, k0 + BC, T_);
        }
        cp_async_commit();
        if constexpr (QREG) {
            if (kt == 0) {
#pragma unroll
                for (int mi = 0; mi < FWD_WM; mi++)
#pragma unroll
                    for (int kk = 0; kk < KS; kk++)
                        ldsm_x4(qf[mi][kk], Qs + (wrow + mi * 16 + ra) * LD + kk * 16 + ca);
            }
        }
        if (causal && k0 > w0 + 16 * FWD_WM - 1) continue;  // every key after every row of this warp
        const bf16 *Kt = Ks + st * BC * LD, *Vt = Vs + st * BC * LD;

        float s[FWD_WM][NS][4];
#pragma unroll
        for (int mi = 0; mi < FWD_WM; mi++)
#pragma unroll
            for (int n = 0; n < NS; n++) s[mi][n][0] = s[mi][n][1] = s[mi][n][2] = s[mi][n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            uint32_t a[FWD_WM][4];
#pragma unroll
            for (int mi = 0; mi < FWD_WM; mi++) {
                if constexpr (QREG) {
                    a[mi][0] = qf[mi][kk][0], a[mi][1] = qf[mi][kk][1];
                    a[mi][2] = qf[mi][kk][2], a[mi][3] = qf[mi][kk][3];
                } else {
                    ldsm_x4(a[mi], Qs + (wrow + mi * 16 + ra) * LD + kk * 16 + ca);
                }
            }
#pragma unroll
            for (int np = 0; np < NS / 2; np++) {
                uint32_t bk[4];
                ldsm_x4(bk, Kt + (np * 16 + rb) * LD + kk * 16 + cb);
#pragma unroll
                for (int mi = 0; mi < FWD_WM; mi++) {
                    mma16816(s[mi][2 * np], a[mi], bk[0], bk[1]);
                    mma16816(s[mi][2 * np + 1], a[mi], bk[2], bk[3]);
                }
            }
        }

        bool masked = (causal && k0 + BC - 1 > w0) || k0 + BC > T_;
#pragma unroll
        for (int mi = 0; mi < FWD_WM; mi++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                int row = w0 + mi * 16 + g + 8 * r;
                float mx = -INFINITY;
#pragma unroll
                for (int n = 0; n < NS; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        int key = k0 + n * 8 + 2 * t + e;
                        if (masked && (key >= T_ || (causal && key > row))) s[mi][n][2 * r + e] = -INFINITY;
                        mx = fmaxf(mx, s[mi][n][2 * r + e]);
                    }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                // Finite: tile 0 comes first and its key 0 is visible to every row.
                float m_new = fmaxf(m[mi][r], mx * sl2), alpha = ex2(m[mi][r] - m_new), rs = 0.0f;
#pragma unroll
                for (int n = 0; n < NS; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float p = ex2(fmaf(s[mi][n][2 * r + e], sl2, -m_new));
                        s[mi][n][2 * r + e] = p;
                        rs += p;
                    }
                l[mi][r] = l[mi][r] * alpha + rs;  // this thread's columns; summed over the quad at the end
                m[mi][r] = m_new;
#pragma unroll
                for (int n = 0; n < ND; n++) o[mi][n][2 * r] *= alpha, o[mi][n][2 * r + 1] *= alpha;
            }

#pragma unroll
        for (int kk = 0; kk < NS / 2; kk++) {
            uint32_t a[FWD_WM][4];
#pragma unroll
            for (int mi = 0; mi < FWD_WM; mi++) acc_to_a(a[mi], s[mi][2 * kk], s[mi][2 * kk + 1]);
#pragma unroll
            for (int dp = 0; dp < ND / 2; dp++) {
                uint32_t bv[4];
                ldsm_x4_t(bv, Vt + (kk * 16 + ra) * LD + dp * 16 + ca);
#pragma unroll
                for (int mi = 0; mi < FWD_WM; mi++) {
                    mma16816(o[mi][2 * dp], a[mi], bv[0], bv[1]);
                    mma16816(o[mi][2 * dp + 1], a[mi], bv[2], bv[3]);
                }
            }
        }
    }

#pragma unroll
    for (int mi = 0; mi < FWD_WM; mi++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float sum = l[mi][r];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            int row = w0 + mi * 16 + g + 8 * r;
            if (row >= T_) continue;
            float inv = 1.0f / sum;
            bf16 *orow = out + (((size_t)b * T_ + row) * NH + h) * HD;
#pragma unroll
            for (int n = 0; n < ND; n++)
                *(__nv_bfloat162 *)(orow + n * 8 + 2 * t) =
                    __floats2bfloat162_rn(o[mi][n][2 * r] * inv, o[mi][n][2 * r + 1] * inv);
            if (t == 0) lse[((size_t)b * NH + h) * T_ + row] = (m[mi][r] + log2f(sum)) / LOG2E;
        }
}

// ---- launchers

template <int HD, int BC>
static void forward_hd(bf16 *out, float *lse, const bf16 *qkv, int B, int T_, int NH, int causal,
                       cudaStream_t stream)
{
    size_t smem = sizeof(bf16) * (FWD_BR + 4 * BC) * (HD + 8);
    cudaCheck(cudaFuncSetAttribute(attention_forward_mma_kernel<HD, BC>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(ceil_div(T_, FWD_BR), NH, B);
    attention_forward_mma_kernel<HD, BC><<<grid, FWD_THREADS, smem, stream>>>(
        out, lse, qkv, T_, NH, causal, LOG2E / sqrtf((float)HD));
    launchCheck();
}

void attention_forward_mma(void *out, float *lse, const void *qkv, int B, int T_, int NH, int HD,
                           int causal, cudaStream_t stream)
{
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)qkv;
    switch (HD) {
    case 32: forward_hd<32, 64>(o, lse, x, B, T_, NH, causal, stream); break;
    case 64: forward_hd<64, 64>(o, lse, x, B, T_, NH, causal, stream); break;
    case 96: forward_hd<96, 64>(o, lse, x, B, T_, NH, causal, stream); break;
    default: forward_hd<128, 32>(o, lse, x, B, T_, NH, causal, stream); break;
    }
}
