// CPU reference: linear layer out = inp @ weight^T + bias.
#include "kernels/reference.h"

void ref_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                        int M, int K, int N)
{
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            float acc = bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) acc += inp[(size_t)m * K + k] * weight[(size_t)n * K + k];
            out[(size_t)m * N + n] = acc;
        }
    }
}

void ref_column_sum_accumulate(float *out, const float *in, int rows, int cols)
{
    for (int c = 0; c < cols; c++) {
        float acc = 0.0f;
        for (int r = 0; r < rows; r++) acc += in[(size_t)r * cols + c];
        out[c] += acc;
    }
}

void ref_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int M, int K, int N)
{
    if (dinp) {
        for (int m = 0; m < M; m++) {
            for (int k = 0; k < K; k++) {
                float acc = 0.0f;
                for (int n = 0; n < N; n++) acc += dout[(size_t)m * N + n] * weight[(size_t)n * K + k];
                dinp[(size_t)m * K + k] = acc;
            }
        }
    }
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++) {
            float acc = 0.0f;
            for (int m = 0; m < M; m++) acc += dout[(size_t)m * N + n] * inp[(size_t)m * K + k];
            dweight[(size_t)n * K + k] += acc;
        }
    }
    if (dbias) ref_column_sum_accumulate(dbias, dout, M, N);
}
