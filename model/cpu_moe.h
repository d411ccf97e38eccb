// The CPU model's top-k mixture-of-experts MLP (internal to cpu_model.c):
// router, load-balancing loss, permute to expert-grouped rows, each
// expert's fc -> GELU -> fc_proj, unpermute weighted by the gates.
#ifndef HGRID_MODEL_CPU_MOE_H
#define HGRID_MODEL_CPU_MOE_H

#include "model/params.h"

typedef struct {
    int L, N, C, F, E, K;
    float *probs;            // (L, N, E)
    int *topk, *pos;         // (L, N, K)
    float *gates;            // (L, N, K)
    int *offsets;            // (L, E + 1) expert e owns permuted rows [offsets[e], offsets[e+1])
    float *xp, *yp;          // (L, N*K, C)
    float *hp, *hpg;         // (L, N*K, F) before and after GELU
    float aux;               // load-balancing loss summed over the layers of the last forward
    uint64_t routing;        // fingerprint of the last forward's expert choices
    float *logits, *dlogits; // (N, E) scratch
    float *dgates;           // (N, K)
    float *dxp, *dyp;        // (N*K, C)
    float *dhp;              // (N*K, F)
    float *dx_router;        // (N, C)
} cpu_moe;

// Returns 0, or -1 if memory is short (then cpu_moe_free cleans up).
int cpu_moe_alloc(cpu_moe *m, int L, int N, int C, int F, int E, int K);
void cpu_moe_free(cpu_moe *m);
// out (N, C) = the MoE MLP of layer l over x (N, C); adds the layer's
// load-balancing loss (weight HG_MOE_AUX_COEFF) to m->aux.
void cpu_moe_forward(cpu_moe *m, int l, const hg_block_view *w, const float *x, float *out);
// dx (N, C) = d(loss)/dx from dout (N, C) and the load-balancing loss;
// weight gradients accumulate into g.
void cpu_moe_backward(cpu_moe *m, int l, const hg_block_view *w, const hg_block_view *g,
                      const float *x, const float *dout, float *dx);

#endif
