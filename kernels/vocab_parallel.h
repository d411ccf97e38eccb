// Pieces of the vocab-parallel token embedding and cross-entropy (Megatron's
// VocabParallelEmbedding and vocab_parallel_cross_entropy): each tp rank
// holds Vl = V / tp rows of the tied embedding, starting at row v0; the
// caller runs the collectives between the pieces. Launchers follow
// kernels.h's conventions; kernels/reference_vp.h has their plain C
// references.
#ifndef HGRID_KERNELS_VOCAB_PARALLEL_H
#define HGRID_KERNELS_VOCAB_PARALLEL_H

#include <stddef.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

// out (N, C) = wte[tokens[i] - v0] where tokens[i] is in [v0, v0 + Vl), else 0 (=).
void vp_embedding_forward(void *out, const int *tokens, const void *wte, int N, int C, int v0,
                          int Vl, kdtype dt, cudaStream_t stream);
// Rows of an embedding gradient by a CSR list (the caller groups positions
// by row, so the sum needs no atomics): for r < R, dwte (., C) fp32 row
// rows[r] += sum of dout (., C) rows positions[starts[r] .. starts[r+1]),
// in list order (accumulated). Rows are distinct.
void embedding_backward_rows(float *dwte, const void *dout, const int *rows, const int *starts,
                             const int *positions, int R, int C, kdtype dt, cudaStream_t stream);
// mx (N) fp32 = each row's maximum over the local logits (N, Vl).
void vp_crossentropy_max(float *mx, const void *logits, int N, int Vl, kdtype dt,
                         cudaStream_t stream);
// From every rank's maxima gathered (tp, N): mx (N) = the global row maxima;
// sums (2N) = [sum over the local logits of exp(x - mx), the target's logit
// where this rank holds it else 0] (both summed over tp by the caller).
void vp_crossentropy_sums(float *mx, float *sums, const float *gathered, int tp,
                          const void *logits, const int *targets, int N, int v0, int Vl,
                          kdtype dt, cudaStream_t stream);
// With sums reduced over tp: losses (N) = mask * (log sum + mx - target
// logit) (=); logits (N, Vl) become dloss * mask * (softmax - onehot).
void vp_crossentropy_finish(void *logits, float *losses, const float *sums, const float *mx,
                            const int *targets, const float *mask, float dloss, int N, int v0,
                            int Vl, kdtype dt, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
