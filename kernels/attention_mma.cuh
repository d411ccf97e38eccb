// Internal: the bf16 tensor-core attention kernels (attention_mma.cu forward,
// attention_mma_bwd.cu backward) that attention.cu's launchers call for
// KD_BF16, and the warp-level pieces they share: mma.sync m16n8k16 (bf16 in,
// fp32 accumulate), ldmatrix fragment loads, cp.async tile loads.
// Shapes as in kernels.h; HD is one of 32, 64, 96, 128 (checked by the caller).
#ifndef HGRID_KERNELS_ATTENTION_MMA_CUH
#define HGRID_KERNELS_ATTENTION_MMA_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

void attention_forward_mma(void *out, float *lse, const void *qkv, int B, int T, int NH, int HD,
                           int causal, cudaStream_t stream);
// D (B, NH, T) = rowsum(dout * out), at the start of kernels_scratch (the
// backward uses the scratch after it).
void attention_backward_mma(void *dqkv, const void *dout, const void *qkv, const float *lse,
                            const float *D, int B, int T, int NH, int HD, int causal,
                            cudaStream_t stream);

typedef __nv_bfloat16 bf16;

#define LOG2E 1.4426950408889634f

// c (16 x 8, fp32) += a (16 x 16) b (16 x 8): the m16n8k16 fragment layouts.
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x on the special-function unit, denormals flushed (exp2f adds range fix-ups).
__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack2(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

// The A fragment for k-step kk from two 16 x 8 accumulator tiles (n-tiles 2kk, 2kk+1).
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float s0[4], const float s1[4])
{
    a[0] = pack2(s0[0], s0[1]), a[1] = pack2(s0[2], s0[3]);
    a[2] = pack2(s1[0], s1[1]), a[3] = pack2(s1[2], s1[3]);
}

// Four 8x8 bf16 matrices from shared memory; lane l supplies the address of
// one row (lanes 8i..8i+7: matrix i).
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const bf16 *p)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const bf16 *p)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
// Lane offsets (row, col) into a 16 x 16 block of a row-major smem tile:
// - "a" pattern: with ldsm_x4 the A fragment of that block; with ldsm_x4_t,
//   for a tile stored [k][n], the B fragments of n-tiles 0 and 1 (r0,r1 / r2,r3).
// - "b" pattern: with ldsm_x4, for a tile stored [n][k], the B fragments of
//   n-tiles 0 and 1; with ldsm_x4_t, for a tile stored [k][m], the A fragment.
__device__ __forceinline__ int lane_row_a(int lane) { return lane % 16; }
__device__ __forceinline__ int lane_col_a(int lane) { return lane / 16 * 8; }
__device__ __forceinline__ int lane_row_b(int lane) { return lane % 8 + lane / 16 * 8; }
__device__ __forceinline__ int lane_col_b(int lane) { return lane / 8 % 2 * 8; }

__device__ __forceinline__ void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all(void) { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Rows [r0, r0 + ROWS) of one head (row stride `stride` elements, HD wide)
// into smem X (row pitch HD + 8: ldmatrix rows fall in distinct banks), 16
// bytes per cp.async; rows at or past T are zero-filled (nothing is read).
template <int HD, int ROWS, int NTHREADS>
__device__ __forceinline__ void cp_rows(bf16 *X, const bf16 *src, size_t stride, int r0, int T_)
{
    constexpr int CH = HD / 8;
    static_assert(ROWS * CH % NTHREADS == 0, "tile chunks must spread evenly over the threads");
#pragma unroll
    for (int it = 0; it < ROWS * CH / NTHREADS; it++) {
        int i = threadIdx.x + it * NTHREADS, r = i / CH, c = i % CH * 8;
        bool in = r0 + r < T_;
        const bf16 *p = src + (size_t)(in ? r0 + r : 0) * stride + c;
        uint32_t dst = (uint32_t)__cvta_generic_to_shared(X + r * (HD + 8) + c);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(p),
                     "r"(in ? 16 : 0)
                     : "memory");
    }
}

#endif
