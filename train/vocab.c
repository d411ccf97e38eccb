// Vocab-parallel embedding and cross-entropy (Megatron's
// VocabParallelEmbedding and vocab_parallel_cross_entropy).
#include "train/vocab.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vp_rows_alloc(vp_rows *r, const tr_ops *o, int N)
{
    size_t bytes = sizeof(int) * ((size_t)N + 1);
    memset(r, 0, sizeof *r);
    r->h_rows = calloc(N + 1, sizeof(int)), r->h_starts = calloc(N + 2, sizeof(int));
    r->h_positions = calloc(N + 1, sizeof(int));
    r->rows = o->alloc(bytes), r->starts = o->alloc(bytes + sizeof(int));
    r->positions = o->alloc(bytes);
    return r->h_rows && r->h_starts && r->h_positions && r->rows && r->starts && r->positions
               ? 0
               : -1;
}

void vp_rows_free(vp_rows *r, const tr_ops *o)
{
    free(r->h_rows), free(r->h_starts), free(r->h_positions);
    int *dev[] = {r->rows, r->starts, r->positions};
    for (int i = 0; i < 3; i++)
        if (dev[i])
            o->release(dev[i]);
}

static int cmp_key(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int vp_rows_build(const int *tokens, int N, int v0, int Vl, int *rows, int *starts,
                  int *positions)
{
    // Sorting (row, position) keys orders rows, and positions inside a row.
    uint64_t *keys = malloc(sizeof(uint64_t) * ((size_t)N + 1));
    int n = 0, R = 0;
    if (!keys) {
        fprintf(stderr, "vp_rows_build: out of memory for %d tokens\n", N);
        abort();
    }
    for (int i = 0; i < N; i++) {
        int row = tokens[i] - v0;
        if (row >= 0 && row < Vl)
            keys[n++] = (uint64_t)row << 32 | (uint32_t)i;
    }
    qsort(keys, n, sizeof *keys, cmp_key);
    for (int k = 0; k < n; k++) {
        int row = (int)(keys[k] >> 32);
        if (R == 0 || rows[R - 1] != row) {
            rows[R] = row;
            starts[R++] = k;
        }
        positions[k] = (int)(uint32_t)keys[k];
    }
    starts[R] = n;
    free(keys);
    return R;
}

void tr_vocab_embedding_forward(const tr_ops *o, tr_group *tp, void *out, const int *tokens,
                                const void *wte, const void *wpe, int B, int T, int C, int v0,
                                int Vl)
{
    size_t n = (size_t)B * T;
    if (tp->size == 1) { // the whole vocabulary here: one pass
        o->embedding_forward(out, tokens, wte, wpe, B, T, C, Vl);
        return;
    }
    o->vp_embedding_forward(out, tokens, wte, (int)n, C, v0, Vl);
    tr_all_reduce(tp, out, n * C, o->act);
    o->position_embedding_forward(out, out, wpe, B, T, C);
}

void tr_vocab_embedding_backward(const tr_ops *o, tr_group *tp, vp_rows *r, float *dwte,
                                 float *dwpe, const void *dout, const int *tokens,
                                 const int *h_tokens, int B, int T, int C, int v0, int Vl)
{
    if (tp->size == 1) {
        o->embedding_backward(dwte, dwpe, dout, tokens, B, T, C, Vl);
        return;
    }
    int R = vp_rows_build(h_tokens, B * T, v0, Vl, r->h_rows, r->h_starts, r->h_positions);
    if (R > 0) {
        o->upload(r->rows, r->h_rows, sizeof(int) * R);
        o->upload(r->starts, r->h_starts, sizeof(int) * (R + 1));
        o->upload(r->positions, r->h_positions, sizeof(int) * r->h_starts[R]);
        o->embedding_backward_rows(dwte, dout, r->rows, r->starts, r->positions, R, C);
    }
    o->position_embedding_backward(dwpe, dout, B, T, C);
}

void tr_vocab_crossentropy(const tr_ops *o, tr_group *tp, void *logits, float *losses,
                           const int *targets, const float *mask, float dloss, int N, int v0,
                           int Vl, float *scratch)
{
    if (tp->size == 1) {
        o->crossentropy(logits, losses, targets, mask, dloss, N, Vl);
        return;
    }
    float *mx = scratch, *sums = scratch + N, *gathered = scratch + 3 * (size_t)N;
    o->vp_crossentropy_max(mx, logits, N, Vl);
    tr_all_gather(tp, mx, gathered, N, TR_F32);
    o->vp_crossentropy_sums(mx, sums, gathered, tp->size, logits, targets, N, v0, Vl);
    tr_all_reduce(tp, sums, 2 * (size_t)N, TR_F32);
    o->vp_crossentropy_finish(logits, losses, sums, mx, targets, mask, dloss, N, v0, Vl);
}
