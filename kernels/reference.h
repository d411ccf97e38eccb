// Plain C fp32 CPU reference of every op in kernels.h: same names with a
// ref_ prefix, same argument order and the same (=) / (+=) semantics, minus
// the type and stream arguments. Slow and obvious on purpose; the CUDA
// kernels are tested against these, and these against finite differences.
#ifndef HGRID_KERNELS_REFERENCE_H
#define HGRID_KERNELS_REFERENCE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// out (M, N) = inp (M, K) @ weight (N, K)^T + bias (N, or NULL)
void ref_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                        int M, int K, int N);
// out (cols) += the column sums of in (rows, cols), each column's rows in order
void ref_column_sum_accumulate(float *out, const float *in, int rows, int cols);
// dinp (M, K) = (NULL: skipped); dweight (N, K) +=; dbias (N) += (NULL: skipped)
void ref_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int M, int K, int N);

// out (N, C); mean, rstd (N) saved; eps 1e-5
void ref_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C);
// dinp (N, C) +=; dweight, dbias (C) +=
void ref_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const float *mean,
                            const float *rstd, int N, int C);

// qkv (B, T, 3, NH, HD); out (B, T, NH, HD); lse (B, NH, T)
void ref_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int NH,
                           int HD, int causal);
// dqkv (B, T, 3, NH, HD) =
void ref_attention_backward(float *dqkv, const float *dout, const float *qkv,
                            const float *out, const float *lse, int B, int T, int NH,
                            int HD, int causal);

void ref_gelu_forward(float *out, const float *inp, size_t n);
void ref_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

void ref_add_forward(float *out, const float *a, const float *b, size_t n);
void ref_scale_inplace(float *x, float alpha, size_t n);

// out (B, T, C) = wte[tokens] + wpe[t]
void ref_embedding_forward(float *out, const int *tokens, const float *wte, const float *wpe,
                           int B, int T, int C, int V);
// dwte (V, C) +=; dwpe (>= T, C) += (NULL: skipped)
void ref_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens,
                            int B, int T, int C, int V);
void ref_position_embedding_forward(float *out, const float *inp, const float *wpe, int B,
                                    int T, int C);
void ref_position_embedding_backward(float *dwpe, const float *dout, int B, int T, int C);

// logits (N, Vp) in place -> dlogits when write_dlogits; losses (N) =
void ref_crossentropy_forward_backward(float *logits, float *losses, const int *targets,
                                       const float *loss_mask, float dloss, int N, int V,
                                       int Vp, int write_dlogits);

void ref_moe_router_forward(float *probs, int *topk_idx, float *gates, const float *logits,
                            int N, int E, int K);
void ref_moe_aux_loss_forward(float *aux, const float *probs, const int *topk_idx, int N,
                              int E, int K, float coeff);
void ref_moe_router_backward(float *dlogits, const float *dgates, const float *probs,
                             const int *topk_idx, const float *gates, float daux_coeff,
                             int N, int E, int K);
void ref_moe_permute_plan(int *pos, int *offsets, const int *topk_idx, int N, int E, int K);
void ref_moe_permute_forward(float *xp, const float *x, const int *pos, int N, int K, int C);
void ref_moe_permute_backward(float *dx, const float *dxp, const int *pos, int N, int K,
                              int C);
void ref_moe_unpermute_forward(float *y, const float *yp, const float *gates, const int *pos,
                               int N, int K, int C);
void ref_moe_unpermute_backward(float *dyp, float *dgates, const float *dy, const float *yp,
                                const float *gates, const int *pos, int N, int K, int C);

// params may be NULL; otherwise params (n) = master after the step.
void ref_adamw_step(float *master, float *params, const float *grads, float *m, float *v,
                    size_t n, float lr, float beta1, float beta2, float eps,
                    float weight_decay, float grad_scale, int t);
// out (1) += sum grads^2
void ref_global_norm_squared(float *out, const float *grads, size_t n);

#ifdef __cplusplus
}
#endif

#endif
