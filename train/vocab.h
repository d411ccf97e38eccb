// Vocab-parallel token embedding and cross-entropy: each tp rank holds Vl
// = V / tp rows of the tied embedding, starting at row v0. The per-rank
// pieces run through the ops table, the collectives between them here.
#ifndef HGRID_TRAIN_VOCAB_H
#define HGRID_TRAIN_VOCAB_H

#include "train/comm.h"
#include "train/ops.h"

// The embedding gradient's CSR lists of one micro-batch: host copies and
// the ops' copies (N + 1 ints each).
typedef struct {
    int *h_rows, *h_starts, *h_positions;
    int *rows, *starts, *positions;
} vp_rows;

int vp_rows_alloc(vp_rows *r, const tr_ops *o, int N); // 0, or -1 if memory is short
void vp_rows_free(vp_rows *r, const tr_ops *o);
// Groups the positions of tokens (N) that fall in [v0, v0 + Vl) by local
// row, rows ascending and positions ascending inside a row: rows (R),
// starts (R + 1), positions (starts[R]). Returns R.
int vp_rows_build(const int *tokens, int N, int v0, int Vl, int *rows, int *starts,
                  int *positions);

// out (B, T, C) = wte[tokens] summed over tp (only the owner of a token's
// row contributes it) + wpe (T, C). tokens in the ops' memory. A tp group
// of one runs the ops' whole-vocabulary forms (one pass each).
void tr_vocab_embedding_forward(const tr_ops *o, tr_group *tp, void *out, const int *tokens,
                                const void *wte, const void *wpe, int B, int T, int C, int v0,
                                int Vl);
// Its backward from dout (B, T, C): dwte (Vl, C) += the rows of this
// rank's tokens, dwpe (T, C) += the sums over the batch; tokens in the
// ops' memory and h_tokens on the host (B, T each).
void tr_vocab_embedding_backward(const tr_ops *o, tr_group *tp, vp_rows *r, float *dwte,
                                 float *dwpe, const void *dout, const int *tokens,
                                 const int *h_tokens, int B, int T, int C, int v0, int Vl);
// The reference's masked softmax cross-entropy over logits (N, Vl) split
// over tp: losses (N) =, logits become dloss * mask * (softmax - onehot).
// scratch: (tp + 3) * N fp32 in the ops' memory.
void tr_vocab_crossentropy(const tr_ops *o, tr_group *tp, void *logits, float *losses,
                           const int *targets, const float *mask, float dloss, int N, int v0,
                           int Vl, float *scratch);

#endif
