// Vocab-parallel token embedding and cross-entropy: each tp rank holds Vl
// = V / tp rows of the tied embedding, starting at row v0.
#ifndef HGRID_TRAIN_VOCAB_H
#define HGRID_TRAIN_VOCAB_H

#include "train/comm.h"

// out (B, T, C) = wte[tokens] summed over tp (only the owner of a token's
// row contributes it) + wpe (T, C).
void vp_embedding_forward(tr_group *tp, float *out, const int *tokens, const float *wte,
                          const float *wpe, int B, int T, int C, int v0, int Vl);
// dwte (Vl, C) += the rows of this rank's tokens; dwpe (T, C) += (NULL: skipped).
void vp_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B,
                           int T, int C, int v0, int Vl);
// The reference's masked softmax cross-entropy over logits (N, Vl) split
// over tp: losses (N) =, logits become dloss * mask * (softmax - onehot).
// scratch: (tp + 3) * N floats.
void vp_crossentropy(tr_group *tp, float *logits, float *losses, const int *targets,
                     const float *mask, float dloss, int N, int v0, int Vl, float *scratch);

#endif
