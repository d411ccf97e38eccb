// The GPU backend of train/ops.h: thin wrappers of the launchers of
// kernels/kernels.h and kernels/vocab_parallel.h on one stream.
#include "train/ops_gpu.h"

#include "kernels/kernels.h"
#include "kernels/vocab_parallel.h"
#include "kernels/cuda_check.h"

static cudaStream_t st;
static kdtype dt;

static void *g_alloc(size_t bytes)
{
    void *p;
    if (cudaMalloc(&p, bytes + sizeof(float)) != cudaSuccess)
        return NULL;
    cudaCheck(cudaMemset(p, 0, bytes + sizeof(float)));
    return p;
}

static void g_release(void *p) { cudaCheck(cudaFree(p)); }
static void g_zero(void *p, size_t bytes) { cudaCheck(cudaMemsetAsync(p, 0, bytes, st)); }

// The side stream that zeroes beside the main one, and its two fences.
static cudaStream_t side;
static cudaEvent_t side_go, side_done;
static int side_pending;

static void g_zero_aside(void *p, size_t bytes)
{
    if (!side) {
        cudaCheck(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
        cudaCheck(cudaEventCreateWithFlags(&side_go, cudaEventDisableTiming));
        cudaCheck(cudaEventCreateWithFlags(&side_done, cudaEventDisableTiming));
    }
    cudaCheck(cudaEventRecord(side_go, st)); // after the ops that still read p
    cudaCheck(cudaStreamWaitEvent(side, side_go, 0));
    cudaCheck(cudaMemsetAsync(p, 0, bytes, side));
    cudaCheck(cudaEventRecord(side_done, side));
    side_pending = 1;
}

static void g_zero_join(void)
{
    if (side_pending)
        cudaCheck(cudaStreamWaitEvent(st, side_done, 0));
    side_pending = 0;
}

static void g_copy(void *dst, const void *src, size_t bytes)
{
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st));
}

static void g_copy_rows(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                        size_t rows)
{
    cudaCheck(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice,
                                 st));
}

// Host buffers are pageable: the copy is staged, so the caller may reuse
// its buffer as soon as this returns.
static void g_upload(void *dst, const void *host, size_t bytes)
{
    cudaCheck(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, st));
}

static void g_download(void *host, const void *src, size_t bytes)
{
    cudaCheck(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, st));
    cudaCheck(cudaStreamSynchronize(st));
}

static void g_to_act(void *dst, const float *src, size_t n)
{
    convert(dst, dt, src, KD_F32, n, st);
}

static void g_matmul_forward(void *out, const void *inp, const void *w, const void *b, int M,
                             int K, int N)
{
    matmul_forward(out, inp, w, b, M, K, N, dt, st);
}

static void g_matmul_backward(void *dinp, float *dw, float *db, const void *dout,
                              const void *inp, const void *w, int M, int K, int N)
{
    matmul_backward(dinp, dw, db, dout, inp, w, M, K, N, dt, st);
}

static void g_matmul_forward_gelu(void *out, void *pre, const void *inp, const void *w,
                                  const void *b, int M, int K, int N)
{
    matmul_forward_gelu(out, pre, inp, w, b, M, K, N, dt, st);
}

static void g_matmul_backward_dgelu(void *dinp, float *dw, float *db, const void *dout,
                                    const void *inp, const void *w, const void *pre, int M, int K,
                                    int N)
{
    matmul_backward_dgelu(dinp, dw, db, dout, inp, w, pre, M, K, N, dt, st);
}

static void g_matmul_forward_residual(void *out, const void *inp, const void *w, const void *b,
                                      const void *resid, int M, int K, int N)
{
    matmul_forward_residual(out, inp, w, b, resid, M, K, N, dt, st);
}

static void g_layernorm_forward(void *out, float *mean, float *rstd, const void *inp,
                                const void *w, const void *b, int N, int C)
{
    layernorm_forward(out, mean, rstd, inp, w, b, N, C, dt, st);
}

static void g_layernorm_backward(void *dinp, float *dw, float *db, float *dsum, const void *dout,
                                 const void *inp, const void *w, const float *mean,
                                 const float *rstd, int N, int C)
{
    layernorm_backward(dinp, dw, db, dsum, dout, inp, w, mean, rstd, N, C, dt, st);
}

static void g_attention_forward(void *out, float *lse, const void *qkv, int B, int T, int NH,
                                int HD, int causal)
{
    attention_forward(out, lse, qkv, B, T, NH, HD, causal, dt, st);
}

static void g_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                                 const float *lse, int B, int T, int NH, int HD, int causal)
{
    attention_backward(dqkv, dout, qkv, out, lse, B, T, NH, HD, causal, dt, st);
}

static void g_gelu_forward(void *out, const void *inp, size_t n)
{
    gelu_forward(out, inp, n, dt, st);
}

static void g_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n)
{
    gelu_backward(dinp, inp, dout, n, dt, st);
}

static void g_add(void *out, const void *a, const void *b, size_t n)
{
    add_forward(out, a, b, n, dt, st);
}

static void g_pos_forward(void *out, const void *inp, const void *wpe, int B, int T, int C)
{
    position_embedding_forward(out, inp, wpe, B, T, C, dt, st);
}

static void g_pos_backward(float *dwpe, const void *dout, int B, int T, int C)
{
    position_embedding_backward(dwpe, dout, B, T, C, dt, st);
}

static void g_embedding_forward(void *out, const int *tokens, const void *wte, const void *wpe,
                                int B, int T, int C, int V)
{
    embedding_forward(out, tokens, wte, wpe, B, T, C, V, dt, st);
}

static void g_embedding_backward(float *dwte, float *dwpe, const void *dout, const int *tokens,
                                 int B, int T, int C, int V)
{
    embedding_backward(dwte, dwpe, dout, tokens, B, T, C, V, dt, st);
}

static void g_crossentropy(void *logits, float *losses, const int *targets, const float *mask,
                           float dloss, int N, int V)
{
    crossentropy_forward_backward(logits, losses, targets, mask, dloss, N, V, V, 1, dt, st);
}

static void g_vp_embedding_forward(void *out, const int *tokens, const void *wte, int N, int C,
                                   int v0, int Vl)
{
    vp_embedding_forward(out, tokens, wte, N, C, v0, Vl, dt, st);
}

static void g_embedding_backward_rows(float *dwte, const void *dout, const int *rows,
                                      const int *starts, const int *positions, int R, int C)
{
    embedding_backward_rows(dwte, dout, rows, starts, positions, R, C, dt, st);
}

static void g_ce_max(float *mx, const void *logits, int N, int Vl)
{
    vp_crossentropy_max(mx, logits, N, Vl, dt, st);
}

static void g_ce_sums(float *mx, float *sums, const float *gathered, int tp, const void *logits,
                      const int *targets, int N, int v0, int Vl)
{
    vp_crossentropy_sums(mx, sums, gathered, tp, logits, targets, N, v0, Vl, dt, st);
}

static void g_ce_finish(void *logits, float *losses, const float *sums, const float *mx,
                        const int *targets, const float *mask, float dloss, int N, int v0, int Vl)
{
    vp_crossentropy_finish(logits, losses, sums, mx, targets, mask, dloss, N, v0, Vl, dt, st);
}

static void g_adamw(float *master, void *work, const float *grads, float *m, float *v, size_t n,
                    float lr, float b1, float b2, float eps, float wd, float scale, int t)
{
    adamw_step(master, work, grads, m, v, n, lr, b1, b2, eps, wd, scale, t, dt, st);
}

static void g_norm_squared(float *out, const float *grads, size_t n)
{
    global_norm_squared(out, grads, n, st);
}

static void g_router_forward(float *probs, int *topk, float *gates, const void *logits, int N,
                             int E, int K)
{
    moe_router_forward(probs, topk, gates, logits, N, E, K, dt, st);
}

static void g_aux_loss_forward(float *aux, const float *probs, const int *topk, int N, int E,
                               int K, float coeff)
{
    moe_aux_loss_forward(aux, probs, topk, N, E, K, coeff, st);
}

static void g_router_backward(void *dlogits, const float *dgates, const float *probs,
                              const int *topk, const float *gates, float daux, int N, int E, int K)
{
    moe_router_backward(dlogits, dgates, probs, topk, gates, daux, N, E, K, dt, st);
}

static void g_permute_plan(int *pos, int *offsets, const int *topk, int N, int E, int K)
{
    moe_permute_plan(pos, offsets, topk, N, E, K, st);
}

static void g_permute_forward(void *xp, const void *x, const int *pos, int N, int K, int C)
{
    moe_permute_forward(xp, x, pos, N, K, C, dt, st);
}

static void g_permute_backward(void *dx, const void *dxp, const int *pos, int N, int K, int C)
{
    moe_permute_backward(dx, dxp, pos, N, K, C, dt, st);
}

static void g_unpermute_forward(void *y, const void *yp, const float *gates, const int *pos,
                                int N, int K, int C)
{
    moe_unpermute_forward(y, yp, gates, pos, N, K, C, dt, st);
}

static void g_unpermute_backward(void *dyp, float *dgates, const void *dy, const void *yp,
                                 const float *gates, const int *pos, int N, int K, int C)
{
    moe_unpermute_backward(dyp, dgates, dy, yp, gates, pos, N, K, C, dt, st);
}

static tr_ops gpu_ops = {
    .device = 1,
    .alloc = g_alloc,
    .release = g_release,
    .zero = g_zero,
    .zero_aside = g_zero_aside,
    .zero_join = g_zero_join,
    .copy = g_copy,
    .copy_rows = g_copy_rows,
    .upload = g_upload,
    .download = g_download,
    .to_act = g_to_act,
    .matmul_forward = g_matmul_forward,
    .matmul_backward = g_matmul_backward,
    .matmul_forward_gelu = g_matmul_forward_gelu,
    .matmul_backward_dgelu = g_matmul_backward_dgelu,
    .matmul_forward_residual = g_matmul_forward_residual,
    .layernorm_forward = g_layernorm_forward,
    .layernorm_backward = g_layernorm_backward,
    .attention_forward = g_attention_forward,
    .attention_backward = g_attention_backward,
    .gelu_forward = g_gelu_forward,
    .gelu_backward = g_gelu_backward,
    .add = g_add,
    .position_embedding_forward = g_pos_forward,
    .position_embedding_backward = g_pos_backward,
    .embedding_forward = g_embedding_forward,
    .embedding_backward = g_embedding_backward,
    .crossentropy = g_crossentropy,
    .vp_embedding_forward = g_vp_embedding_forward,
    .embedding_backward_rows = g_embedding_backward_rows,
    .vp_crossentropy_max = g_ce_max,
    .vp_crossentropy_sums = g_ce_sums,
    .vp_crossentropy_finish = g_ce_finish,
    .moe_router_forward = g_router_forward,
    .moe_aux_loss_forward = g_aux_loss_forward,
    .moe_router_backward = g_router_backward,
    .moe_permute_plan = g_permute_plan,
    .moe_permute_forward = g_permute_forward,
    .moe_permute_backward = g_permute_backward,
    .moe_unpermute_forward = g_unpermute_forward,
    .moe_unpermute_backward = g_unpermute_backward,
    .adamw = g_adamw,
    .norm_squared = g_norm_squared,
};

const tr_ops *tr_gpu_ops(int bf16, cudaStream_t stream)
{
    st = stream;
    dt = bf16 ? KD_BF16 : KD_F32;
    gpu_ops.act = bf16 ? TR_BF16 : TR_F32;
    gpu_ops.name = bf16 ? "gpu-bf16" : "gpu-fp32";
    return &gpu_ops;
}
