// The CPU backend of train/ops.h: host memory and the reference ops.
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"
#include "kernels/reference_vp.h"
#include "train/ops.h"

static void *c_alloc(size_t bytes) { return calloc(bytes + sizeof(float), 1); }
static void c_release(void *p) { free(p); }
static void c_zero(void *p, size_t bytes) { memset(p, 0, bytes); }

// Per thread: the threads backend runs one rank per thread.
enum { MAX_ASIDE = 16 };
static _Thread_local struct {
    void *p;
    size_t bytes;
} aside[MAX_ASIDE];
static _Thread_local int num_aside;

static void c_zero_join(void)
{
    for (int i = 0; i < num_aside; i++)
        memset(aside[i].p, 0, aside[i].bytes);
    num_aside = 0;
}

static void c_zero_aside(void *p, size_t bytes)
{
    if (num_aside == MAX_ASIDE) // zeroing early is allowed: before the join
        c_zero_join();
    aside[num_aside].p = p;
    aside[num_aside++].bytes = bytes;
}
static void c_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }

static void c_copy_rows(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                        size_t rows)
{
    for (size_t r = 0; r < rows; r++)
        memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
}

static void c_to_act(void *dst, const float *src, size_t n)
{
    memmove(dst, src, n * sizeof(float));
}

static void c_matmul_forward(void *out, const void *inp, const void *w, const void *b, int M,
                             int K, int N)
{
    ref_matmul_forward(out, inp, w, b, M, K, N);
}

static void c_matmul_backward(void *dinp, float *dw, float *db, const void *dout,
                              const void *inp, const void *w, int M, int K, int N)
{
    ref_matmul_backward(dinp, dw, db, dout, inp, w, M, K, N);
}

static void c_matmul_forward_gelu(void *out, void *pre, const void *inp, const void *w,
                                  const void *b, int M, int K, int N)
{
    ref_matmul_forward(pre, inp, w, b, M, K, N);
    ref_gelu_forward(out, pre, (size_t)M * N);
}

static void c_matmul_backward_dgelu(void *dinp, float *dw, float *db, const void *dout,
                                    const void *inp, const void *w, const void *pre, int M, int K,
                                    int N)
{
    ref_matmul_backward(dinp, dw, db, dout, inp, w, M, K, N);
    ref_gelu_backward(dinp, pre, dinp, (size_t)M * K);
}

// The matmul then the add, as before the fusion (same values); through a
// temporary when out aliases resid.
static void c_matmul_forward_residual(void *out, const void *inp, const void *w, const void *b,
                                      const void *resid, int M, int K, int N)
{
    size_t n = (size_t)M * N;
    float *y = out == resid ? malloc(sizeof(float) * (n + 1)) : out;
    if (!y)
        abort();
    ref_matmul_forward(y, inp, w, b, M, K, N);
    ref_add_forward(out, y, resid, n);
    if (y != out)
        free(y);
}

static void c_layernorm_forward(void *out, float *mean, float *rstd, const void *inp,
                                const void *w, const void *b, int N, int C)
{
    ref_layernorm_forward(out, mean, rstd, inp, w, b, N, C);
}

static void c_layernorm_backward(void *dinp, float *dw, float *db, float *dsum, const void *dout,
                                 const void *inp, const void *w, const float *mean,
                                 const float *rstd, int N, int C)
{
    ref_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    if (dsum) // as ref_matmul_backward sums a bias gradient: the same values, bit for bit
        ref_column_sum_accumulate(dsum, dinp, N, C);
}

static void c_attention_forward(void *out, float *lse, const void *qkv, int B, int T, int NH,
                                int HD, int causal)
{
    ref_attention_forward(out, lse, qkv, B, T, NH, HD, causal);
}

static void c_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                                 const float *lse, int B, int T, int NH, int HD, int causal)
{
    ref_attention_backward(dqkv, dout, qkv, out, lse, B, T, NH, HD, causal);
}

static void c_gelu_forward(void *out, const void *inp, size_t n) { ref_gelu_forward(out, inp, n); }

static void c_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n)
{
    ref_gelu_backward(dinp, inp, dout, n);
}

static void c_add(void *out, const void *a, const void *b, size_t n)
{
    ref_add_forward(out, a, b, n);
}

static void c_pos_forward(void *out, const void *inp, const void *wpe, int B, int T, int C)
{
    ref_position_embedding_forward(out, inp, wpe, B, T, C);
}

static void c_pos_backward(float *dwpe, const void *dout, int B, int T, int C)
{
    ref_position_embedding_backward(dwpe, dout, B, T, C);
}

static void c_embedding_forward(void *out, const int *tokens, const void *wte, const void *wpe,
                                int B, int T, int C, int V)
{
    ref_embedding_forward(out, tokens, wte, wpe, B, T, C, V);
}

static void c_embedding_backward(float *dwte, float *dwpe, const void *dout, const int *tokens,
                                 int B, int T, int C, int V)
{
    ref_embedding_backward(dwte, dwpe, dout, tokens, B, T, C, V);
}

static void c_crossentropy(void *logits, float *losses, const int *targets, const float *mask,
                           float dloss, int N, int V)
{
    ref_crossentropy_forward_backward(logits, losses, targets, mask, dloss, N, V, V, 1);
}

static void c_vp_embedding_forward(void *out, const int *tokens, const void *wte, int N, int C,
                                   int v0, int Vl)
{
    ref_vp_embedding_forward(out, tokens, wte, N, C, v0, Vl);
}

static void c_embedding_backward_rows(float *dwte, const void *dout, const int *rows,
                                      const int *starts, const int *positions, int R, int C)
{
    ref_embedding_backward_rows(dwte, dout, rows, starts, positions, R, C);
}

static void c_ce_max(float *mx, const void *logits, int N, int Vl)
{
    ref_vp_crossentropy_max(mx, logits, N, Vl);
}

static void c_ce_sums(float *mx, float *sums, const float *gathered, int tp, const void *logits,
                      const int *targets, int N, int v0, int Vl)
{
    ref_vp_crossentropy_sums(mx, sums, gathered, tp, logits, targets, N, v0, Vl);
}

static void c_ce_finish(void *logits, float *losses, const float *sums, const float *mx,
                        const int *targets, const float *mask, float dloss, int N, int v0, int Vl)
{
    ref_vp_crossentropy_finish(logits, losses, sums, mx, targets, mask, dloss, N, v0, Vl);
}

static void c_adamw(float *master, void *work, const float *grads, float *m, float *v, size_t n,
                    float lr, float b1, float b2, float eps, float wd, float scale, int t)
{
    ref_adamw_step(master, work, grads, m, v, n, lr, b1, b2, eps, wd, scale, t);
}

static void c_router_forward(float *probs, int *topk, float *gates, const void *logits, int N,
                             int E, int K)
{
    ref_moe_router_forward(probs, topk, gates, logits, N, E, K);
}

static void c_router_backward(void *dlogits, const float *dgates, const float *probs,
                              const int *topk, const float *gates, float daux, int N, int E, int K)
{
    ref_moe_router_backward(dlogits, dgates, probs, topk, gates, daux, N, E, K);
}

static void c_permute_forward(void *xp, const void *x, const int *pos, int N, int K, int C)
{
    ref_moe_permute_forward(xp, x, pos, N, K, C);
}

static void c_permute_backward(void *dx, const void *dxp, const int *pos, int N, int K, int C)
{
    ref_moe_permute_backward(dx, dxp, pos, N, K, C);
}

static void c_unpermute_forward(void *y, const void *yp, const float *gates, const int *pos,
                                int N, int K, int C)
{
    ref_moe_unpermute_forward(y, yp, gates, pos, N, K, C);
}

static void c_unpermute_backward(void *dyp, float *dgates, const void *dy, const void *yp,
                                 const float *gates, const int *pos, int N, int K, int C)
{
    ref_moe_unpermute_backward(dyp, dgates, dy, yp, gates, pos, N, K, C);
}

const tr_ops tr_cpu_ops = {
    .name = "cpu",
    .act = TR_F32,
    .alloc = c_alloc,
    .release = c_release,
    .zero = c_zero,
    .zero_aside = c_zero_aside,
    .zero_join = c_zero_join,
    .copy = c_copy,
    .copy_rows = c_copy_rows,
    .upload = c_copy,
    .download = c_copy,
    .to_act = c_to_act,
    .matmul_forward = c_matmul_forward,
    .matmul_backward = c_matmul_backward,
    .matmul_forward_gelu = c_matmul_forward_gelu,
    .matmul_backward_dgelu = c_matmul_backward_dgelu,
    .matmul_forward_residual = c_matmul_forward_residual,
    .layernorm_forward = c_layernorm_forward,
    .layernorm_backward = c_layernorm_backward,
    .attention_forward = c_attention_forward,
    .attention_backward = c_attention_backward,
    .gelu_forward = c_gelu_forward,
    .gelu_backward = c_gelu_backward,
    .add = c_add,
    .position_embedding_forward = c_pos_forward,
    .position_embedding_backward = c_pos_backward,
    .embedding_forward = c_embedding_forward,
    .embedding_backward = c_embedding_backward,
    .crossentropy = c_crossentropy,
    .vp_embedding_forward = c_vp_embedding_forward,
    .embedding_backward_rows = c_embedding_backward_rows,
    .vp_crossentropy_max = c_ce_max,
    .vp_crossentropy_sums = c_ce_sums,
    .vp_crossentropy_finish = c_ce_finish,
    .moe_router_forward = c_router_forward,
    .moe_aux_loss_forward = ref_moe_aux_loss_forward,
    .moe_router_backward = c_router_backward,
    .moe_permute_plan = ref_moe_permute_plan,
    .moe_permute_forward = c_permute_forward,
    .moe_permute_backward = c_permute_backward,
    .moe_unpermute_forward = c_unpermute_forward,
    .moe_unpermute_backward = c_unpermute_backward,
    .adamw = c_adamw,
    .norm_squared = ref_global_norm_squared,
};
