// CPU reference: AdamW step and squared gradient norm.
#include <math.h>

#include "kernels/reference.h"

void ref_adamw_step(float *master, float *params, const float *grads, float *m, float *v,
                    size_t n, float lr, float beta1, float beta2, float eps,
                    float weight_decay, float grad_scale, int t)
{
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    for (size_t i = 0; i < n; i++) {
        float g = grads[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        float mhat = m[i] / bc1, vhat = v[i] / bc2;
        master[i] = master[i] * (1.0f - lr * weight_decay) - lr * mhat / (sqrtf(vhat) + eps);
        if (params) params[i] = master[i];
    }
}

void ref_global_norm_squared(float *out, const float *grads, size_t n)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) acc += (double)grads[i] * grads[i];
    *out += (float)acc;
}
