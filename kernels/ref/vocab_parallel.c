// CPU reference: vocab-parallel embedding and cross-entropy pieces.
#include <math.h>
#include <string.h>

#include "kernels/reference_vp.h"

void ref_vp_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C,
                              int v0, int Vl)
{
    for (int i = 0; i < N; i++) {
        int row = tokens[i] - v0;
        if (row >= 0 && row < Vl)
            memcpy(out + (size_t)i * C, wte + (size_t)row * C, sizeof(float) * C);
        else
            memset(out + (size_t)i * C, 0, sizeof(float) * C);
    }
}

void ref_embedding_backward_rows(float *dwte, const float *dout, const int *rows,
                                 const int *starts, const int *positions, int R, int C)
{
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float acc = 0.0f;
            for (int k = starts[r]; k < starts[r + 1]; k++)
                acc += dout[(size_t)positions[k] * C + c];
            dwte[(size_t)rows[r] * C + c] += acc;
        }
}

void ref_vp_crossentropy_max(float *mx, const float *logits, int N, int Vl)
{
    for (int i = 0; i < N; i++) {
        const float *row = logits + (size_t)i * Vl;
        float m = -INFINITY;
        for (int v = 0; v < Vl; v++)
            m = fmaxf(m, row[v]);
        mx[i] = m;
    }
}

void ref_vp_crossentropy_sums(float *mx, float *sums, const float *gathered, int tp,
                              const float *logits, const int *targets, int N, int v0, int Vl)
{
    for (int i = 0; i < N; i++) {
        float m = -INFINITY;
        for (int r = 0; r < tp; r++)
            m = fmaxf(m, gathered[(size_t)r * N + i]);
        mx[i] = m;
        const float *row = logits + (size_t)i * Vl;
        float sum = 0.0f;
        for (int v = 0; v < Vl; v++)
            sum += expf(row[v] - m);
        int t = targets[i] - v0;
        sums[i] = sum;
        sums[N + i] = t >= 0 && t < Vl ? row[t] : 0.0f;
    }
}

void ref_vp_crossentropy_finish(float *logits, float *losses, const float *sums, const float *mx,
                                const int *targets, const float *mask, float dloss, int N, int v0,
                                int Vl)
{
    for (int i = 0; i < N; i++) {
        float w = mask[i], sum = sums[i];
        losses[i] = w != 0.0f ? w * (logf(sum) + mx[i] - sums[N + i]) : 0.0f;
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
