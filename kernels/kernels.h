// CUDA kernels of every op of the ViT encoder and the GPT LLM, forward and
// backward. C-callable launchers; each one checks its shapes, launches on the
// given stream and checks the launch.
//
// Conventions (all launchers):
// - Activations and working-copy weights have type `dt`: KD_F32 (float) or
//   KD_BF16 (__nv_bfloat16). Math is fp32 inside every kernel. Pointers to
//   such tensors are `void *`; tensors that are always fp32 are `float *`.
// - Weight gradients are fp32 and ACCUMULATED (+=): zero them once per step,
//   then every micro-batch adds in. They are computed deterministically (no
//   floating-point atomics anywhere): same inputs, same bits. One exception:
//   bf16 attention on cuDNN sums dQ with atomics unless HGRID_DETERMINISTIC=1
//   (attention_cudnn.h).
// - Activation gradients have type `dt`. Each launcher says whether it
//   overwrites (=) or accumulates (+=) them. An input-gradient pointer that
//   may be NULL says so.
// - Row-major everywhere; shapes are in the comments, e.g. (N, C).
//   N counts rows (tokens): N = B * T.
// - Launchers marked [scratch] use the library's one scratch buffer: issue
//   them on one stream at a time (or serialise the streams).
// - Error handling: a failed CUDA/cuBLAS call or a violated shape assumption
//   prints file, line and reason and exits.
#ifndef HGRID_KERNELS_H
#define HGRID_KERNELS_H

#include <stddef.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KD_F32 = 0, KD_BF16 = 1 } kdtype;

size_t kdtype_size(kdtype dt);

// Creates the cuBLASLt handle, its 32 MiB workspace and the 112 MiB scratch on
// the current device. Call once per process before any launcher; free at exit.
void kernels_init(void);
void kernels_free(void);

// ---- matmul (cuBLASLt, fp32 accumulate; fp32 mode uses no TF32)
// out (M, N) = inp (M, K) @ weight^T + bias; weight (N, K); bias (N) or NULL.
// M == 0 is allowed (no-op), e.g. an MoE expert that got no tokens.
void matmul_forward(void *out, const void *inp, const void *weight, const void *bias,
                    int M, int K, int N, kdtype dt, cudaStream_t stream);
// dinp (M, K) = dout (M, N) @ weight (N, K)         (overwritten; NULL: skipped)
// dweight (N, K) fp32 += dout^T @ inp               (accumulated)
// dbias (N) fp32 += column sums of dout              (accumulated; NULL: skipped) [scratch]
void matmul_backward(void *dinp, float *dweight, float *dbias, const void *dout,
                     const void *inp, const void *weight, int M, int K, int N,
                     kdtype dt, cudaStream_t stream);
// An MLP's first matmul and its GELU (bf16 with N % 8 == 0: in the matmul's
// cuBLASLt epilogue; else matmul_forward then gelu_forward):
// out (M, N) = inp @ weight^T + bias + resid (M, N): the residual add in the
// matmul (overwritten; out may alias resid). Its backward is matmul_backward
// (the residual's gradient is dout itself).
void matmul_forward_residual(void *out, const void *inp, const void *weight, const void *bias,
                             const void *resid, int M, int K, int N, kdtype dt, cudaStream_t stream);
// pre (M, N) = inp @ weight^T + bias (the GELU input, kept for the backward);
// out (M, N) = gelu(pre). Both overwritten; out must not alias pre.
void matmul_forward_gelu(void *out, void *pre, const void *inp, const void *weight,
                         const void *bias, int M, int K, int N, kdtype dt, cudaStream_t stream);
// matmul_backward of a matmul whose input was inp = gelu(pre_gelu), through
// the GELU (bf16 with K % 8 == 0: in the dinp matmul's epilogue):
// dinp (M, K) = (dout @ weight) * gelu'(pre_gelu)  (overwritten, required);
// dweight, dbias as in matmul_backward.                                  [scratch]
void matmul_backward_dgelu(void *dinp, float *dweight, float *dbias, const void *dout,
                           const void *inp, const void *weight, const void *pre_gelu,
                           int M, int K, int N, kdtype dt, cudaStream_t stream);

// ---- LayerNorm over the last dim, eps = 1e-5
// out (N, C) = (inp - mean) * rstd * weight + bias; weight, bias (C);
// mean, rstd (N) fp32 are saved for the backward.
void layernorm_forward(void *out, float *mean, float *rstd, const void *inp,
                       const void *weight, const void *bias, int N, int C,
                       kdtype dt, cudaStream_t stream);
// dinp (N, C) += ...  (accumulated: it is the residual stream's gradient)
// dweight, dbias (C) fp32 += ...; dsum (C) fp32 += the column sums of dinp
// as it is left (the bias gradient of a matmul whose dout it is), or NULL
//                                                                       [scratch]
void layernorm_backward(void *dinp, float *dweight, float *dbias, float *dsum, const void *dout,
                        const void *inp, const void *weight, const float *mean,
                        const float *rstd, int N, int C, kdtype dt, cudaStream_t stream);

// ---- attention, fused (flash-style: online softmax, no (T, T) in memory)
// qkv (B, T, 3, NH, HD): q, k, v of every head packed, as a (B, T, 3*C)
// matmul output with C = NH * HD gives it. Scale 1/sqrt(HD).
// causal = 1: position t attends to [0, t]; causal = 0: to all T.
// HD must be one of 32, 64, 96, 128. bf16 runs on the tensor cores (P and dS
// rounded to bf16 for their products, as FlashAttention does); fp32 is plain
// fp32 arithmetic throughout.
// out (B, T, NH, HD) = softmax(q k^T * scale) v    (overwritten)
// lse (B, NH, T) fp32: log-sum-exp of each row of scaled scores, for the backward.
void attention_forward(void *out, float *lse, const void *qkv, int B, int T, int NH,
                       int HD, int causal, kdtype dt, cudaStream_t stream);
// dqkv (B, T, 3, NH, HD) overwritten, from dout (B, T, NH, HD), the forward's
// qkv, out and lse. hgrid's kernels are deterministic (bit-identical run to
// run): fp32 runs two kernels (dk/dv; dq), each owning its outputs; bf16 runs
// one kernel whose blocks add their dq shares in a fixed block order. bf16 on
// cuDNN (attention_cudnn.h) is, with HGRID_DETERMINISTIC=1.       [scratch]
void attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                        const float *lse, int B, int T, int NH, int HD, int causal,
                        kdtype dt, cudaStream_t stream);

// ---- GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// out (n) = gelu(inp); out may alias inp.
void gelu_forward(void *out, const void *inp, size_t n, kdtype dt, cudaStream_t stream);
// dinp (n) = gelu'(inp) * dout   (overwritten; dinp may alias dout)
void gelu_backward(void *dinp, const void *inp, const void *dout, size_t n, kdtype dt,
                   cudaStream_t stream);

// ---- residual and elementwise helpers (the residual's backward is the identity)
// out (n) = a + b; out may alias a or b.
void add_forward(void *out, const void *a, const void *b, size_t n, kdtype dt,
                 cudaStream_t stream);
// x (n) *= alpha, in place.
void scale_inplace(void *x, float alpha, size_t n, kdtype dt, cudaStream_t stream);
// dst (n) = src (n) converted between types (e.g. fp32 master -> working copy).
void convert(void *dst, kdtype dst_dt, const void *src, kdtype src_dt, size_t n,
             cudaStream_t stream);

// ---- embeddings
// out (B, T, C) = wte[tokens[b, t]] + wpe[t]; tokens (B, T) int in [0, V);
// wte (V, C), wpe (>= T, C).
void embedding_forward(void *out, const int *tokens, const void *wte, const void *wpe,
                       int B, int T, int C, int V, kdtype dt, cudaStream_t stream);
// dwte (V, C) fp32 += dout rows scattered by token; dwpe (>= T, C) fp32 +=
// sums over the batch (NULL: skipped). Deterministic: positions are stably
// sorted by token (CUB radix sort) and each token's rows summed in position
// order by one block.                                                   [scratch]
void embedding_backward(float *dwte, float *dwpe, const void *dout, const int *tokens,
                        int B, int T, int C, int V, kdtype dt, cudaStream_t stream);
// Learned position embedding alone (ViT patches, or rows that are not tokens):
// out (B, T, C) = inp + wpe[t]; out may alias inp.
void position_embedding_forward(void *out, const void *inp, const void *wpe, int B, int T,
                                int C, kdtype dt, cudaStream_t stream);
// dwpe (>= T, C) fp32 += sum over b of dout (B, T, C). inp's gradient is dout itself.
void position_embedding_backward(float *dwpe, const void *dout, int B, int T, int C,
                                 kdtype dt, cudaStream_t stream);

// ---- softmax cross-entropy fused with the LM head's logits
// logits (N, Vp): the first V columns are real, columns [V, Vp) are padding
// and ignored. targets (N) int in [0, V) wherever loss_mask is non-zero.
// loss_mask (N) fp32 weights, 1 for caption tokens and 0 elsewhere.
// losses (N) fp32 = loss_mask * -log softmax(logits)[target]   (overwritten)
// The mean loss is sum(losses) / count, count = number of counted tokens
// (over the whole batch the caller normalises by).
// write_dlogits = 1: logits are overwritten IN PLACE by
//   dlogits = dloss * loss_mask * (softmax - onehot(target)), padding set to 0.
//   Pass dloss = 1 / count (times the loss scale) for the mean loss.
void crossentropy_forward_backward(void *logits, float *losses, const int *targets,
                                   const float *loss_mask, float dloss, int N, int V,
                                   int Vp, int write_dlogits, kdtype dt,
                                   cudaStream_t stream);

// ---- MoE: top-k router, load-balancing loss, token permute / unpermute
// probs (N, E) fp32 = softmax(logits (N, E)); topk_idx (N, K) int: the K
// largest probs in decreasing order (ties: lower expert first);
// gates (N, K) fp32 = probs of those experts / their sum. K <= E <= 256.
void moe_router_forward(float *probs, int *topk_idx, float *gates, const void *logits,
                        int N, int E, int K, kdtype dt, cudaStream_t stream);
// aux (1) fp32 = coeff * E * sum_e f_e * P_e with f_e = (assignments to e) /
// (N * K) and P_e = mean over tokens of probs[:, e] (Switch / Megatron).
// Overwritten.                                                          [scratch]
void moe_aux_loss_forward(float *aux, const float *probs, const int *topk_idx, int N,
                          int E, int K, float coeff, cudaStream_t stream);
// dlogits (N, E) overwritten: the gradient through the softmax of both
// dgates (N, K) fp32 and the aux loss scaled by daux (pass coeff * d(loss)/d(aux),
// i.e. coeff when the aux loss is added to the loss as is; f_e is a constant).
// [scratch]
void moe_router_backward(void *dlogits, const float *dgates, const float *probs,
                         const int *topk_idx, const float *gates, float daux_coeff,
                         int N, int E, int K, kdtype dt, cudaStream_t stream);
// Routing plan. pos (N, K) int: row of assignment (n, j) in the permuted
// layout, where rows are grouped by expert and, inside an expert, ordered by
// (n, j). offsets (E + 1) int: expert e owns rows [offsets[e], offsets[e+1]).
// Copy offsets to the host to run each expert's matmuls on its rows.
void moe_permute_plan(int *pos, int *offsets, const int *topk_idx, int N, int E, int K,
                      cudaStream_t stream);
// xp (N*K, C): xp[pos[n, j]] = x[n] for x (N, C).
void moe_permute_forward(void *xp, const void *x, const int *pos, int N, int K, int C,
                         kdtype dt, cudaStream_t stream);
// dx (N, C) = sum_j dxp[pos[n, j]]   (overwritten)
void moe_permute_backward(void *dx, const void *dxp, const int *pos, int N, int K, int C,
                          kdtype dt, cudaStream_t stream);
// y (N, C) = sum_j gates[n, j] * yp[pos[n, j]]   (overwritten); yp (N*K, C)
void moe_unpermute_forward(void *y, const void *yp, const float *gates, const int *pos,
                           int N, int K, int C, kdtype dt, cudaStream_t stream);
// dyp (N*K, C): dyp[pos[n, j]] = gates[n, j] * dy[n]   (overwritten)
// dgates (N, K) fp32 = dot(dy[n], yp[pos[n, j]])        (overwritten)
void moe_unpermute_backward(void *dyp, float *dgates, const void *dy, const void *yp,
                            const float *gates, const int *pos, int N, int K, int C,
                            kdtype dt, cudaStream_t stream);

// ---- optimizer
// AdamW (PyTorch semantics) on n fp32 master weights, step t >= 1:
//   g = grads * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//   master = master (1 - lr wd) - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
// then params (n, type dt) = master. params may be NULL (fp32 model that
// trains the master directly). grad_scale clips: min(1, max_norm / norm).
void adamw_step(float *master, void *params, const float *grads, float *m, float *v,
                size_t n, float lr, float beta1, float beta2, float eps,
                float weight_decay, float grad_scale, int t, kdtype dt,
                cudaStream_t stream);
// out (1) fp32 += sum of grads[i]^2 (accumulated, so several tensors can add
// into one total; zero it first). Deterministic.                        [scratch]
void global_norm_squared(float *out, const float *grads, size_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
