// Vocab-parallel embedding and cross-entropy (Megatron's
// VocabParallelEmbedding and vocab_parallel_cross_entropy).
#include "train/vocab.h"

#include <math.h>
#include <string.h>

void vp_embedding_forward(tr_group *tp, float *out, const int *tokens, const float *wte,
                          const float *wpe, int B, int T, int C, int v0, int Vl)
{
    size_t n = (size_t)B * T;
    memset(out, 0, sizeof(float) * n * C);
    for (size_t i = 0; i < n; i++) {
        int row = tokens[i] - v0;
        if (row >= 0 && row < Vl)
            memcpy(out + i * C, wte + (size_t)row * C, sizeof(float) * C);
    }
    tr_all_reduce(tp, out, n * C, TR_F32);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            out[i * C + c] += wpe[(i % T) * C + c];
}

void vp_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B,
                           int T, int C, int v0, int Vl)
{
    for (size_t i = 0; i < (size_t)B * T; i++) {
        int row = tokens[i] - v0;
        if (row >= 0 && row < Vl)
            for (int c = 0; c < C; c++)
                dwte[(size_t)row * C + c] += dout[i * C + c];
        if (dwpe)
            for (int c = 0; c < C; c++)
                dwpe[(i % T) * C + c] += dout[i * C + c];
    }
}

void vp_crossentropy(tr_group *tp, float *logits, float *losses, const int *targets,
                     const float *mask, float dloss, int N, int v0, int Vl, float *scratch)
{
    float *mx = scratch, *red = scratch + N, *gathered = scratch + 3 * (size_t)N;
    // Row maxima over the whole vocabulary, from every rank's local maxima.
    for (int i = 0; i < N; i++) {
        const float *row = logits + (size_t)i * Vl;
        float m = -INFINITY;
        for (int v = 0; v < Vl; v++)
            m = fmaxf(m, row[v]);
        mx[i] = m;
    }
    tr_all_gather(tp, mx, gathered, N, TR_F32);
    for (int i = 0; i < N; i++)
        for (int r = 0; r < tp->size; r++)
            mx[i] = fmaxf(mx[i], gathered[(size_t)r * N + i]);
    // red = [sum of exp (N), target logit (N)], each summed over tp.
    for (int i = 0; i < N; i++) {
        const float *row = logits + (size_t)i * Vl;
        float sum = 0;
        for (int v = 0; v < Vl; v++)
            sum += expf(row[v] - mx[i]);
        int t = targets[i] - v0;
        red[i] = sum;
        red[N + i] = t >= 0 && t < Vl ? row[t] : 0.0f;
    }
    tr_all_reduce(tp, red, 2 * (size_t)N, TR_F32);
    for (int i = 0; i < N; i++) {
        float w = mask[i], sum = red[i];
        losses[i] = w != 0.0f ? w * (logf(sum) + mx[i] - red[N + i]) : 0.0f;
        float *row = logits + (size_t)i * Vl;
        for (int v = 0; v < Vl; v++) {
            float g = 0.0f;
            if (w != 0.0f) {
                float p = expf(row[v] - mx[i]) / sum;
                g = dloss * w * (p - (v + v0 == targets[i] ? 1.0f : 0.0f));
            }
            row[v] = g;
        }
    }
}
