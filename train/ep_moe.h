// The expert-parallel MoE MLP (internal to the parallel stack). Every tp
// rank routes all N tokens (replicated router, the reference's
// load-balancing loss) but sends only its 1/tp slice of them to the experts:
// all-to-all over ep to the ranks owning the chosen experts, each local
// expert's fc -> GELU -> fc_proj, all-to-all back, gate-weighted combine,
// then all-gather over tp. The backward runs the same exchanges with the
// gradients.
#ifndef HGRID_TRAIN_EP_MOE_H
#define HGRID_TRAIN_EP_MOE_H

#include "model/params.h"
#include "train/comm.h"

// One micro-batch's saved tensors for all L layers.
typedef struct {
    float *probs;         // (L, N, E)
    int *topk;            // (L, N, K)
    float *gates;         // (L, N, K)
    int *pos;             // (L, n, K) this rank's slice
    int *offsets;         // (L, E + 1)
    int *counts;          // (L, ep, El) rows each source sent to each local expert
    float *xr, *hr, *hrg; // (L, R, C), (L, R, F), (L, R, F) expert-major received rows
    float *yp;            // (L, n*K, C) expert outputs back in the slice's permuted order
    float aux;            // load-balancing loss summed over layers
} ep_moe_saved;

typedef struct {
    int L, N, n, C, F, E, El, K, R; // n = N / tp tokens per slice, R = ep * n * K row bound
    tr_group *tp, *ep;
    float aux_scale; // d(loss)/d(aux) of one micro-batch
    // scratch
    float *logits, *dlogits;   // (N, E)
    float *xp, *dyp, *dxp;     // (n*K, C)
    float *xrecv, *yr, *dyr, *dxr; // (R, C)
    float *dhr;                // (R, F)
    float *slice;              // (n, C)
    float *dgates_slice, *dgates; // (n, K), (N, K)
    float *dx_router;          // (N, C)
} ep_moe;

// Returns 0, or -1 if memory is short (ep_moe_free cleans up).
int ep_moe_alloc(ep_moe *m, int L, int N, int C, int F, int E, int K, tr_group *tp,
                 tr_group *ep);
void ep_moe_free(ep_moe *m);
int ep_moe_saved_alloc(const ep_moe *m, ep_moe_saved *s);
void ep_moe_saved_free(ep_moe_saved *s);
// out (N, C) = the MoE MLP of layer l over x (N, C); w holds this rank's El experts.
void ep_moe_forward(ep_moe *m, ep_moe_saved *s, int l, const hg_block_view *w, const float *x,
                    float *out);
// dx (N, C) = d(loss)/dx from dout (N, C) and the load-balancing loss;
// weight gradients accumulate into g.
void ep_moe_backward(ep_moe *m, ep_moe_saved *s, int l, const hg_block_view *w,
                     const hg_block_view *g, const float *x, const float *dout, float *dx);

#endif
