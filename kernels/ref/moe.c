// CPU reference: MoE top-k router, load-balancing loss, permute / unpermute.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"

void ref_moe_router_forward(float *probs, int *topk_idx, float *gates, const float *logits,
                            int N, int E, int K)
{
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * E;
        float *p = probs + (size_t)n * E;
        float mx = -INFINITY, sum = 0.0f;
        for (int e = 0; e < E; e++) mx = fmaxf(mx, l[e]);
        for (int e = 0; e < E; e++) sum += expf(l[e] - mx);
        for (int e = 0; e < E; e++) p[e] = expf(l[e] - mx) / sum;
        float gsum = 0.0f;
        for (int j = 0; j < K; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int i = 0; i < j; i++) taken |= topk_idx[n * K + i] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            topk_idx[n * K + j] = best;
            gsum += p[best];
        }
        for (int j = 0; j < K; j++) gates[n * K + j] = p[topk_idx[n * K + j]] / gsum;
    }
}

// f_e: fraction of the N*K assignments that went to expert e.
static void assignment_fractions(float *f, const int *topk_idx, int N, int E, int K)
{
    memset(f, 0, sizeof(float) * E);
    for (int i = 0; i < N * K; i++) f[topk_idx[i]] += 1.0f;
    for (int e = 0; e < E; e++) f[e] /= (float)N * K;
}

void ref_moe_aux_loss_forward(float *aux, const float *probs, const int *topk_idx, int N,
                              int E, int K, float coeff)
{
    float *f = malloc(sizeof(float) * E);
    assignment_fractions(f, topk_idx, N, E, K);
    float acc = 0.0f;
    for (int e = 0; e < E; e++) {
        float P = 0.0f;
        for (int n = 0; n < N; n++) P += probs[(size_t)n * E + e];
        acc += f[e] * P / N;
    }
    *aux = coeff * E * acc;
    free(f);
}

void ref_moe_router_backward(float *dlogits, const float *dgates, const float *probs,
                             const int *topk_idx, const float *gates, float daux_coeff,
                             int N, int E, int K)
{
    float *f = malloc(sizeof(float) * E), *dp = malloc(sizeof(float) * E);
    assignment_fractions(f, topk_idx, N, E, K);
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * E;
        for (int e = 0; e < E; e++) dp[e] = daux_coeff * E * f[e] / N;
        // gates g_j = p_j / S over the top-k: dp_j += (dg_j - sum_l dg_l g_l) / S.
        float S = 0.0f, dot = 0.0f;
        for (int j = 0; j < K; j++) {
            S += p[topk_idx[n * K + j]];
            dot += dgates[n * K + j] * gates[n * K + j];
        }
        for (int j = 0; j < K; j++) dp[topk_idx[n * K + j]] += (dgates[n * K + j] - dot) / S;
        float pdp = 0.0f;
        for (int e = 0; e < E; e++) pdp += p[e] * dp[e];
        for (int e = 0; e < E; e++) dlogits[(size_t)n * E + e] = p[e] * (dp[e] - pdp);
    }
    free(f);
    free(dp);
}

void ref_moe_permute_plan(int *pos, int *offsets, const int *topk_idx, int N, int E, int K)
{
    offsets[0] = 0;
    for (int e = 0; e < E; e++) {
        int row = offsets[e];
        for (int i = 0; i < N * K; i++)
            if (topk_idx[i] == e) pos[i] = row++;
        offsets[e + 1] = row;
    }
}

void ref_moe_permute_forward(float *xp, const float *x, const int *pos, int N, int K, int C)
{
    for (int i = 0; i < N * K; i++)
        memcpy(xp + (size_t)pos[i] * C, x + (size_t)(i / K) * C, sizeof(float) * C);
}

void ref_moe_permute_backward(float *dx, const float *dxp, const int *pos, int N, int K,
                              int C)
{
    memset(dx, 0, sizeof(float) * (size_t)N * C);
    for (int i = 0; i < N * K; i++)
        for (int c = 0; c < C; c++) dx[(size_t)(i / K) * C + c] += dxp[(size_t)pos[i] * C + c];
}

void ref_moe_unpermute_forward(float *y, const float *yp, const float *gates, const int *pos,
                               int N, int K, int C)
{
    memset(y, 0, sizeof(float) * (size_t)N * C);
    for (int i = 0; i < N * K; i++)
        for (int c = 0; c < C; c++)
            y[(size_t)(i / K) * C + c] += gates[i] * yp[(size_t)pos[i] * C + c];
}

void ref_moe_unpermute_backward(float *dyp, float *dgates, const float *dy, const float *yp,
                                const float *gates, const int *pos, int N, int K, int C)
{
    for (int i = 0; i < N * K; i++) {
        const float *d = dy + (size_t)(i / K) * C, *y = yp + (size_t)pos[i] * C;
        float dot = 0.0f;
        for (int c = 0; c < C; c++) {
            dyp[(size_t)pos[i] * C + c] = gates[i] * d[c];
            dot += d[c] * y[c];
        }
        dgates[i] = dot;
    }
}
