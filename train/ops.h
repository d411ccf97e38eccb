// The ops a training worker runs, as a table: the CPU reference ops on host
// memory (tests) or the CUDA launchers on device memory (GPU workers), so
// that one orchestration (tp_stack.c, the stages, worker.c) drives both.
// Activations have type `act` (fp32, or bf16 on GPUs); statistics,
// gradients, master weights and AdamW moments are always fp32. Semantics
// (= or +=, shapes) are those of kernels/kernels.h and
// kernels/vocab_parallel.h.
#ifndef HGRID_TRAIN_OPS_H
#define HGRID_TRAIN_OPS_H

#include <stddef.h>

#include "train/comm.h"

typedef struct tr_ops {
    const char *name; // "cpu", "gpu-fp32", "gpu-bf16"
    tr_dtype act;     // TR_F32 or TR_BF16
    int device;       // buffers live on the GPU

    // memory: zeroed allocations (NULL if short), copies within one side
    void *(*alloc)(size_t bytes);
    void (*release)(void *p);
    void (*zero)(void *p, size_t bytes);
    // Zeroing off the critical path (a step's gradients): zero_aside queues
    // it beside the ops that follow (the forward pass); from zero_join on,
    // the ops see p zeroed. The CPU ops zero at the join, so a write into p
    // between the two is lost and the CPU tests see it.
    void (*zero_aside)(void *p, size_t bytes);
    void (*zero_join)(void);
    void (*copy)(void *dst, const void *src, size_t bytes);
    // rows rows of width bytes between pitched buffers
    void (*copy_rows)(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                      size_t rows);
    void (*upload)(void *dst, const void *host, size_t bytes);
    void (*download)(void *host, const void *src, size_t bytes); // waits for the ops before it
    void (*to_act)(void *dst, const float *src, size_t n);       // fp32 -> act

    void (*matmul_forward)(void *out, const void *inp, const void *weight, const void *bias,
                           int M, int K, int N);
    void (*matmul_backward)(void *dinp, float *dweight, float *dbias, const void *dout,
                            const void *inp, const void *weight, int M, int K, int N);
    // out = gelu(pre), pre = inp @ weight^T + bias; and the backward of a
    // matmul whose input was gelu(pre_gelu), through the GELU (kernels.h).
    void (*matmul_forward_gelu)(void *out, void *pre, const void *inp, const void *weight,
                                const void *bias, int M, int K, int N);
    void (*matmul_backward_dgelu)(void *dinp, float *dweight, float *dbias, const void *dout,
                                  const void *inp, const void *weight, const void *pre_gelu,
                                  int M, int K, int N);
    // out = inp @ weight^T + bias + resid: a block's residual add in the
    // matmul's epilogue (out may alias resid; resid required).
    void (*matmul_forward_residual)(void *out, const void *inp, const void *weight,
                                    const void *bias, const void *resid, int M, int K, int N);
    void (*layernorm_forward)(void *out, float *mean, float *rstd, const void *inp,
                              const void *weight, const void *bias, int N, int C);
    // dsum: NULL, or += the column sums of dinp as left (kernels.h)
    void (*layernorm_backward)(void *dinp, float *dweight, float *dbias, float *dsum,
                               const void *dout, const void *inp, const void *weight,
                               const float *mean, const float *rstd, int N, int C);
    void (*attention_forward)(void *out, float *lse, const void *qkv, int B, int T, int NH,
                              int HD, int causal);
    void (*attention_backward)(void *dqkv, const void *dout, const void *qkv, const void *out,
                               const float *lse, int B, int T, int NH, int HD, int causal);
    void (*gelu_forward)(void *out, const void *inp, size_t n);
    void (*gelu_backward)(void *dinp, const void *inp, const void *dout, size_t n);
    void (*add)(void *out, const void *a, const void *b, size_t n);
    void (*position_embedding_forward)(void *out, const void *inp, const void *wpe, int B,
                                       int T, int C);
    void (*position_embedding_backward)(float *dwpe, const void *dout, int B, int T, int C);
    // The whole vocabulary on one rank: out (B, T, C) = wte[tokens] + wpe[t]
    // in one pass, its backward (dwte, dwpe +=; tokens in the ops' memory),
    // and the softmax cross-entropy of logits (N, V) in one pass (kernels.h's
    // embedding_forward, embedding_backward, crossentropy_forward_backward
    // with write_dlogits); the vp_ ops below are their pieces over a tp group.
    void (*embedding_forward)(void *out, const int *tokens, const void *wte, const void *wpe,
                              int B, int T, int C, int V);
    void (*embedding_backward)(float *dwte, float *dwpe, const void *dout, const int *tokens,
                               int B, int T, int C, int V);
    void (*crossentropy)(void *logits, float *losses, const int *targets, const float *mask,
                         float dloss, int N, int V);
    void (*vp_embedding_forward)(void *out, const int *tokens, const void *wte, int N, int C,
                                 int v0, int Vl);
    void (*embedding_backward_rows)(float *dwte, const void *dout, const int *rows,
                                    const int *starts, const int *positions, int R, int C);
    void (*vp_crossentropy_max)(float *mx, const void *logits, int N, int Vl);
    void (*vp_crossentropy_sums)(float *mx, float *sums, const float *gathered, int tp,
                                 const void *logits, const int *targets, int N, int v0, int Vl);
    void (*vp_crossentropy_finish)(void *logits, float *losses, const float *sums,
                                   const float *mx, const int *targets, const float *mask,
                                   float dloss, int N, int v0, int Vl);
    // MoE routing (kernels.h's moe_* semantics): logits and dlogits have the
    // act type, probs / gates / dgates fp32, topk / pos / offsets int.
    void (*moe_router_forward)(float *probs, int *topk, float *gates, const void *logits, int N,
                               int E, int K);
    void (*moe_aux_loss_forward)(float *aux, const float *probs, const int *topk, int N, int E,
                                 int K, float coeff);
    void (*moe_router_backward)(void *dlogits, const float *dgates, const float *probs,
                                const int *topk, const float *gates, float daux_coeff, int N,
                                int E, int K);
    void (*moe_permute_plan)(int *pos, int *offsets, const int *topk, int N, int E, int K);
    void (*moe_permute_forward)(void *xp, const void *x, const int *pos, int N, int K, int C);
    void (*moe_permute_backward)(void *dx, const void *dxp, const int *pos, int N, int K, int C);
    void (*moe_unpermute_forward)(void *y, const void *yp, const float *gates, const int *pos,
                                  int N, int K, int C);
    void (*moe_unpermute_backward)(void *dyp, float *dgates, const void *dy, const void *yp,
                                   const float *gates, const int *pos, int N, int K, int C);
    // work (n, act) = master after the step; NULL when act is fp32 (the
    // master is the working copy).
    void (*adamw)(float *master, void *work, const float *grads, float *m, float *v, size_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay,
                  float grad_scale, int t);
    void (*norm_squared)(float *out, const float *grads, size_t n); // out (1) +=
} tr_ops;

// The CPU reference ops (fp32, host memory).
extern const tr_ops tr_cpu_ops;

static inline size_t tr_ops_es(const tr_ops *o) { return tr_dtype_size(o->act); }

#endif
