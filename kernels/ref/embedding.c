// CPU reference: token and learned position embeddings.
#include "kernels/reference.h"

void ref_embedding_forward(float *out, const int *tokens, const float *wte, const float *wpe,
                           int B, int T, int C, int V)
{
    (void)V;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *e = wte + (size_t)tokens[b * T + t] * C, *p = wpe + (size_t)t * C;
            float *o = out + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
        }
    }
}

void ref_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens,
                            int B, int T, int C, int V)
{
    (void)V;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            float *e = dwte + (size_t)tokens[b * T + t] * C;
            for (int c = 0; c < C; c++) e[c] += d[c];
        }
    }
    if (dwpe) ref_position_embedding_backward(dwpe, dout, B, T, C);
}

void ref_position_embedding_forward(float *out, const float *inp, const float *wpe, int B,
                                    int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                size_t i = ((size_t)b * T + t) * C + c;
                out[i] = inp[i] + wpe[(size_t)t * C + c];
            }
}

void ref_position_embedding_backward(float *dwpe, const float *dout, int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) dwpe[(size_t)t * C + c] += dout[((size_t)b * T + t) * C + c];
}
