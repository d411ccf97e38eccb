// CPU reference: masked softmax cross-entropy over (padded) logits.
#include <math.h>

#include "kernels/reference.h"

void ref_crossentropy_forward_backward(float *logits, float *losses, const int *targets,
                                       const float *loss_mask, float dloss, int N, int V,
                                       int Vp, int write_dlogits)
{
    for (int i = 0; i < N; i++) {
        float *row = logits + (size_t)i * Vp;
        float mx = -INFINITY, sum = 0.0f;
        for (int v = 0; v < V; v++) mx = fmaxf(mx, row[v]);
        for (int v = 0; v < V; v++) sum += expf(row[v] - mx);
        float w = loss_mask[i];
        losses[i] = w != 0.0f ? w * (logf(sum) + mx - row[targets[i]]) : 0.0f;
        if (!write_dlogits) continue;
        for (int v = 0; v < Vp; v++) {
            float g = 0.0f;
            if (v < V && w != 0.0f) {
                float p = expf(row[v] - mx) / sum;
                g = dloss * w * (p - (v == targets[i] ? 1.0f : 0.0f));
            }
            row[v] = g;
        }
    }
}
