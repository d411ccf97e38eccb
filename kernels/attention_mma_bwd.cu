// bf16 attention backward on the tensor cores, one kernel, deterministic.
// A block owns 128 keys (8 warps of 16) and keeps their dK, dV in registers
// while it streams 64-row query tiles (Q, dO, lse, D) through two
// shared-memory stages with cp.async. Per tile each warp recomputes its
// slice of S^T = K Q^T and dP^T = V dO^T, forms P^T and dS^T in registers
// and feeds them straight back as A operands (dV += P^T dO, dK += dS^T Q);
// dS^T also goes to shared memory, from which the block computes the tile's
// dQ share dS K. The dQ shares of the key blocks are summed in fp32 scratch
// in a fixed order (key block 0 stores, 1.. add, the last adds and writes
// bf16): a per-(head, query tile) counter says whose turn it is, so the sum,
// and dQ, is the same on every run. Query tiles are visited last to first,
// so all key blocks of a head move through them as one wave and rarely wait.
#include "kernels/attention_mma.cuh"
#include "kernels/common.cuh"

#define BWD_WARPS 8
#define BWD_THREADS (32 * BWD_WARPS)
#define BWD_BK (16 * BWD_WARPS)  // keys per block
#define BWD_BQ 64                // query rows per tile
#define BWD_LDS (BWD_BQ + 8)     // row pitch of the dS^T tile
// fp32 dQ scratch for at most this many bytes of heads per launch (1b's
// 64 heads of 2048 x 128 fit in one launch: fewer partial waves); more heads
// run as several launches.
#define BWD_ACC_BUDGET ((size_t)100 << 20)

// ---- kernels

// Spins until *turn == want (thread 0 of the block), acquiring what the
// releasing block wrote. Traps after about a minute: a turn that never comes
// means a block was not scheduled, and a hang would be worse than an error.
__device__ __forceinline__ void wait_turn(const int *turn, int want)
{
    for (unsigned spins = 0;; spins++) {
        int v;
        asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(v) : "l"(turn) : "memory");
        if (v == want) return;
        if (spins > (1u << 26)) __trap();
        __nanosleep(64);
    }
}

__device__ __forceinline__ void pass_turn(int *turn, int next)
{
    asm volatile("st.release.gpu.global.s32 [%0], %1;\n" ::"l"(turn), "r"(next) : "memory");
}

// lse and D of query rows [q0, q0 + 64) into Ls, Ds (4-byte cp.async; rows past T: zeros).
__device__ __forceinline__ void cp_stats(float *Ls, float *Ds, const float *lse, const float *D, int q0, int T_)
{
    int i = threadIdx.x;
    if (i < 2 * BWD_BQ) {
        int r = i % BWD_BQ;
        bool in = q0 + r < T_;
        const float *src = (i < BWD_BQ ? lse : D) + (in ? q0 + r : 0);
        uint32_t dst = (uint32_t)__cvta_generic_to_shared((i < BWD_BQ ? Ls : Ds) + r);
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(in ? 4 : 0)
                     : "memory");
    }
}

// dq_acc: (pairs of this launch, T, HD) fp32; turns: (B * NH, query tiles), zeroed.
template <int HD>
__global__ void __launch_bounds__(BWD_THREADS, 1)
attention_backward_mma_kernel(bf16 *dqkv, float *dq_acc, int *turns, const bf16 *dout, const bf16 *qkv,
                              const float *lse, const float *D, int T_, int NH, int causal, float scale,
                              int pair0)
{
    constexpr int LD = HD + 8, KS = HD / 16, ND = HD / 8, NS = BWD_BQ / 8, NQD = HD / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Ks = (bf16 *)smem_raw, *Vs = Ks + BWD_BK * LD;
    bf16 *Qs = Vs + BWD_BK * LD, *dOs = Qs + 2 * BWD_BQ * LD;  // 2 stages each
    bf16 *dSs = dOs + 2 * BWD_BQ * LD;                          // (BK, LDS): dS^T, [key][query]
    float *Ls = (float *)(dSs + BWD_BK * BWD_LDS), *Ds = Ls + 2 * BWD_BQ;  // 2 stages each
    int kt = blockIdx.y, pair = pair0 + blockIdx.x, b = pair / NH, h = pair % NH, k0 = kt * BWD_BK;
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    int ra = lane_row_a(lane), ca = lane_col_a(lane), rb = lane_row_b(lane), cb = lane_col_b(lane);
    int nq = (int)ceil_div(T_, BWD_BQ), nk = (int)ceil_div(T_, BWD_BK);
    size_t stride = (size_t)3 * NH * HD, ostride = (size_t)NH * HD, stat = (size_t)pair * T_;
    const bf16 *qb = qkv + (size_t)b * T_ * stride + (size_t)h * HD;
    const bf16 *kb = qb + (size_t)NH * HD, *vb = kb + (size_t)NH * HD;
    const bf16 *ob = dout + (size_t)b * T_ * ostride + (size_t)h * HD;
    bf16 *dqb = dqkv + (size_t)b * T_ * stride + (size_t)h * HD;
    float *acc = dq_acc + (size_t)blockIdx.x * T_ * HD;
    int *turn = turns + (size_t)pair * nq;
    int qlo = causal ? k0 / BWD_BQ : 0;  // causal: earlier query rows see none of these keys

    cp_rows<HD, BWD_BK, BWD_THREADS>(Ks, kb, stride, k0, T_);
    cp_rows<HD, BWD_BK, BWD_THREADS>(Vs, vb, stride, k0, T_);
    cp_rows<HD, BWD_BQ, BWD_THREADS>(Qs, qb, stride, (nq - 1) * BWD_BQ, T_);
    cp_rows<HD, BWD_BQ, BWD_THREADS>(dOs, ob, ostride, (nq - 1) * BWD_BQ, T_);
    cp_stats(Ls, Ds, lse + stat, D + stat, (nq - 1) * BWD_BQ, T_);
    cp_async_commit();

    int wk = warp * 16, kw0 = k0 + wk;  // the warp's first key (in smem, in the sequence)
    int keys[2] = {kw0 + g, kw0 + g + 8};
    int qd = warp % 4 * 16, d0 = warp / 4 * (HD / 2);  // the warp's block of the dQ tile
    float sl2 = scale * LOG2E;
    float dk[ND][4], dv[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[n][e] = dv[n][e] = 0.0f;

    for (int qi = nq - 1, it = 0; qi >= qlo; qi--, it++) {
        int q0 = qi * BWD_BQ, st = it & 1;
        cp_async_wait_all();
        __syncthreads();  // tile qi visible; every warp is done with the previous stage and dS^T
        if (qi > qlo) {
            int s2 = st ^ 1, q1 = q0 - BWD_BQ;
            cp_rows<HD, BWD_BQ, BWD_THREADS>(Qs + s2 * BWD_BQ * LD, qb, stride, q1, T_);
            cp_rows<HD, BWD_BQ, BWD_THREADS>(dOs + s2 * BWD_BQ * LD, ob, ostride, q1, T_);
            cp_stats(Ls + s2 * BWD_BQ, Ds + s2 * BWD_BQ, lse + stat, D + stat, q1, T_);
        }
        cp_async_commit();
        const bf16 *Qt = Qs + st * BWD_BQ * LD, *dOt = dOs + st * BWD_BQ * LD;
        const float *Lt = Ls + st * BWD_BQ, *Dt = Ds + st * BWD_BQ;

        // Causal: a warp whose keys all come after the tile's last query has nothing to add.
        bool active = !causal || q0 + BWD_BQ - 1 >= kw0;
        bool masked = (causal && kw0 + 15 > q0) || q0 + BWD_BQ > T_ || k0 + BWD_BK > T_;
        // P^T = exp(S^T * scale - lse), S^T = K Q^T (16 keys x 64 queries);
        // kept as bf16 A fragments, pf[kk] for queries [16kk, 16kk + 16).
        uint32_t pf[NS / 2][4];
        if (active) {
            {
                float s[NS][4];
#pragma unroll
                for (int n = 0; n < NS; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
                for (int kk = 0; kk < KS; kk++) {
                    uint32_t ak[4];
                    ldsm_x4(ak, Ks + (wk + ra) * LD + kk * 16 + ca);
#pragma unroll
                    for (int np = 0; np < NS / 2; np++) {
                        uint32_t bq[4];
                        ldsm_x4(bq, Qt + (np * 16 + rb) * LD + kk * 16 + cb);
                        mma16816(s[2 * np], ak, bq[0], bq[1]);
                        mma16816(s[2 * np + 1], ak, bq[2], bq[3]);
                    }
                }
#pragma unroll
                for (int n = 0; n < NS; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int qc = n * 8 + 2 * t + (e & 1), q = q0 + qc, key = keys[e >> 1];
                        float p = ex2(fmaf(s[n][e], sl2, -Lt[qc] * LOG2E));
                        s[n][e] = masked && (q >= T_ || key >= T_ || (causal && key > q)) ? 0.0f : p;
                    }
#pragma unroll
                for (int kk = 0; kk < NS / 2; kk++) acc_to_a(pf[kk], s[2 * kk], s[2 * kk + 1]);
            }
            // dV += P^T dO
#pragma unroll
            for (int kk = 0; kk < NS / 2; kk++)
#pragma unroll
                for (int np = 0; np < ND / 2; np++) {
                    uint32_t bo[4];
                    ldsm_x4_t(bo, dOt + (kk * 16 + ra) * LD + np * 16 + ca);
                    mma16816(dv[2 * np], pf[kk], bo[0], bo[1]);
                    mma16816(dv[2 * np + 1], pf[kk], bo[2], bo[3]);
                }
            // dS^T = P^T (dP^T - D), dP^T = V dO^T; to shared memory for dQ, and dK += dS^T Q
            float dp[NS][4];
#pragma unroll
            for (int n = 0; n < NS; n++) dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KS; kk++) {
                uint32_t av[4];
                ldsm_x4(av, Vs + (wk + ra) * LD + kk * 16 + ca);
#pragma unroll
                for (int np = 0; np < NS / 2; np++) {
                    uint32_t bo[4];
                    ldsm_x4(bo, dOt + (np * 16 + rb) * LD + kk * 16 + cb);
                    mma16816(dp[2 * np], av, bo[0], bo[1]);
                    mma16816(dp[2 * np + 1], av, bo[2], bo[3]);
                }
            }
#pragma unroll
            for (int n = 0; n < NS; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    // P back from its bf16 fragment: dS uses the P that dV used.
                    uint32_t w = pf[n / 2][(n % 2) * 2 + e / 2];
                    __nv_bfloat162 p2 = *(__nv_bfloat162 *)&w;
                    float p = e % 2 ? __high2float(p2) : __low2float(p2);
                    dp[n][e] = p * (dp[n][e] - Dt[n * 8 + 2 * t + (e & 1)]);
                }
#pragma unroll
            for (int n = 0; n < NS; n++)
#pragma unroll
                for (int r = 0; r < 2; r++)
                    *(uint32_t *)(dSs + (wk + g + 8 * r) * BWD_LDS + n * 8 + 2 * t) =
                        pack2(dp[n][2 * r], dp[n][2 * r + 1]);
#pragma unroll
            for (int kk = 0; kk < NS / 2; kk++) {
                uint32_t ad[4];
                acc_to_a(ad, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
                for (int np = 0; np < ND / 2; np++) {
                    uint32_t bq[4];
                    ldsm_x4_t(bq, Qt + (kk * 16 + ra) * LD + np * 16 + ca);
                    mma16816(dk[2 * np], ad, bq[0], bq[1]);
                    mma16816(dk[2 * np + 1], ad, bq[2], bq[3]);
                }
            }
        }
        __syncthreads();  // dS^T complete

        // This block's share of dQ rows [q0, q0 + 64): dS (64 x 128 keys) K.
        float dq[NQD][4];
#pragma unroll
        for (int n = 0; n < NQD; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < BWD_WARPS; kk++) {  // k-step kk: the keys of warp kk
            if (causal && q0 + BWD_BQ - 1 < k0 + kk * 16) break;  // that warp wrote no dS^T
            uint32_t a[4];
            ldsm_x4_t(a, dSs + (kk * 16 + rb) * BWD_LDS + qd + cb);
#pragma unroll
            for (int np = 0; np < NQD / 2; np++) {
                uint32_t bk[4];
                ldsm_x4_t(bk, Ks + (kk * 16 + ra) * LD + d0 + np * 16 + ca);
                mma16816(dq[2 * np], a, bk[0], bk[1]);
                mma16816(dq[2 * np + 1], a, bk[2], bk[3]);
            }
        }
        // Key blocks 0..last add to these rows, in that order.
        int last = causal ? min(nk - 1, (q0 + BWD_BQ - 1) / BWD_BK) : nk - 1;
        if (kt > 0) {
            if (threadIdx.x == 0) wait_turn(turn + qi, kt);
            __syncthreads();
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int q = q0 + qd + g + 8 * r;
            if (q >= T_) continue;
#pragma unroll
            for (int n = 0; n < NQD; n++) {
                int col = d0 + n * 8 + 2 * t;
                float2 v = make_float2(dq[n][2 * r], dq[n][2 * r + 1]), *p = (float2 *)(acc + (size_t)q * HD + col);
                if (kt == last) {
                    if (kt > 0) {
                        float2 sum = __ldcg(p);
                        v.x += sum.x, v.y += sum.y;
                    }
                    *(__nv_bfloat162 *)(dqb + (size_t)q * stride + col) = __floats2bfloat162_rn(v.x * scale, v.y * scale);
                } else if (kt == 0) {
                    __stcg(p, v);
                } else {
                    atomicAdd(p, v);  // ordered by the turns: the sum's order is fixed
                }
            }
        }
        if (kt < last) {
            __threadfence();
            __syncthreads();
            if (threadIdx.x == 0) pass_turn(turn + qi, kt + 1);
        }
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (keys[r] >= T_) continue;
        bf16 *row = dqkv + ((size_t)b * T_ + keys[r]) * stride + (size_t)h * HD;
#pragma unroll
        for (int n = 0; n < ND; n++) {
            *(__nv_bfloat162 *)(row + (size_t)NH * HD + n * 8 + 2 * t) =
                __floats2bfloat162_rn(dk[n][2 * r] * scale, dk[n][2 * r + 1] * scale);
            *(__nv_bfloat162 *)(row + (size_t)2 * NH * HD + n * 8 + 2 * t) =
                __floats2bfloat162_rn(dv[n][2 * r], dv[n][2 * r + 1]);
        }
    }
}

// ---- launchers

static size_t align256(size_t n) { return (n + 255) / 256 * 256; }

template <int HD>
static void backward_hd(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                        int B, int T_, int NH, int causal, cudaStream_t stream)
{
    int pairs = B * NH, nq = (int)ceil_div(T_, BWD_BQ), nk = (int)ceil_div(T_, BWD_BK);
    size_t d_bytes = align256(sizeof(float) * (size_t)pairs * T_);
    size_t turn_bytes = align256(sizeof(int) * (size_t)pairs * nq), pair_bytes = sizeof(float) * (size_t)T_ * HD;
    int per = (int)(BWD_ACC_BUDGET / pair_bytes);
    per = per < 1 ? 1 : per;
    int launches = (int)ceil_div(pairs, per);
    per = (int)ceil_div(pairs, launches);  // even launches
    char *scratch = (char *)kernels_scratch(d_bytes + turn_bytes + per * pair_bytes, "attention_backward");
    kassert((const char *)D == scratch, "attention_backward: D at the start of the scratch");
    int *turns = (int *)(scratch + d_bytes);
    float *acc = (float *)(scratch + d_bytes + turn_bytes);
    cudaCheck(cudaMemsetAsync(turns, 0, sizeof(int) * (size_t)pairs * nq, stream));

    size_t smem = sizeof(bf16) * ((2 * BWD_BK + 4 * BWD_BQ) * (HD + 8) + BWD_BK * BWD_LDS) +
                  sizeof(float) * 4 * BWD_BQ;
    cudaCheck(cudaFuncSetAttribute(attention_backward_mma_kernel<HD>,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    float scale = 1.0f / sqrtf((float)HD);
    // Blocks start key block by key block (every head's key block 0 first),
    // so a block only waits for lower key blocks of its head, started before
    // it; and causal's heaviest blocks (the first keys meet every query tile)
    // start first, leaving the lightest for the end of the launch.
    for (int p0 = 0; p0 < pairs; p0 += per) {
        dim3 grid(min(per, pairs - p0), nk);
        attention_backward_mma_kernel<HD><<<grid, BWD_THREADS, smem, stream>>>(
            dqkv, acc, turns, dout, qkv, lse, D, T_, NH, causal, scale, p0);
        launchCheck();
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
