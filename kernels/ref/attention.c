// CPU reference: multi-head attention over packed qkv, one query row at a time.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"

// Element d of q (which = 0), k (1) or v (2) of head h at (b, t).
static size_t qkv_at(int b, int t, int which, int h, int T, int NH, int HD)
{
    return ((((size_t)b * T + t) * 3 + which) * NH + h) * HD;
}

static int row_len(int t, int T, int causal) { return causal ? t + 1 : T; }

void ref_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int NH,
                           int HD, int causal)
{
    float scale = 1.0f / sqrtf((float)HD);
    float *s = malloc(sizeof(float) * T);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float *q = qkv + qkv_at(b, t, 0, h, T, NH, HD);
                int len = row_len(t, T, causal);
                float mx = -INFINITY, sum = 0.0f;
                for (int j = 0; j < len; j++) {
                    const float *k = qkv + qkv_at(b, j, 1, h, T, NH, HD);
                    float acc = 0.0f;
                    for (int d = 0; d < HD; d++) acc += q[d] * k[d];
                    s[j] = acc * scale;
                    mx = fmaxf(mx, s[j]);
                }
                for (int j = 0; j < len; j++) sum += expf(s[j] - mx);
                float *o = out + (((size_t)b * T + t) * NH + h) * HD;
                memset(o, 0, sizeof(float) * HD);
                for (int j = 0; j < len; j++) {
                    const float *v = qkv + qkv_at(b, j, 2, h, T, NH, HD);
                    float p = expf(s[j] - mx) / sum;
                    for (int d = 0; d < HD; d++) o[d] += p * v[d];
                }
                lse[((size_t)b * NH + h) * T + t] = mx + logf(sum);
            }
        }
    }
    free(s);
}

void ref_attention_backward(float *dqkv, const float *dout, const float *qkv,
                            const float *out, const float *lse, int B, int T, int NH,
                            int HD, int causal)
{
    float scale = 1.0f / sqrtf((float)HD);
    memset(dqkv, 0, sizeof(float) * (size_t)B * T * 3 * NH * HD);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                size_t oi = (((size_t)b * T + t) * NH + h) * HD;
                const float *q = qkv + qkv_at(b, t, 0, h, T, NH, HD), *dy = dout + oi;
                float *dq = dqkv + qkv_at(b, t, 0, h, T, NH, HD);
                float D = 0.0f, row_lse = lse[((size_t)b * NH + h) * T + t];
                for (int d = 0; d < HD; d++) D += dy[d] * out[oi + d];
                for (int j = 0; j < row_len(t, T, causal); j++) {
                    const float *k = qkv + qkv_at(b, j, 1, h, T, NH, HD);
                    const float *v = qkv + qkv_at(b, j, 2, h, T, NH, HD);
                    float *dk = dqkv + qkv_at(b, j, 1, h, T, NH, HD);
                    float *dv = dqkv + qkv_at(b, j, 2, h, T, NH, HD);
                    float sc = 0.0f, dp = 0.0f;
                    for (int d = 0; d < HD; d++) {
                        sc += q[d] * k[d];
                        dp += dy[d] * v[d];
                    }
                    float p = expf(sc * scale - row_lse);
                    float ds = p * (dp - D) * scale;
                    for (int d = 0; d < HD; d++) {
                        dq[d] += ds * k[d];
                        dk[d] += ds * q[d];
                        dv[d] += p * dy[d];
                    }
                }
            }
        }
    }
}
