// The expert-parallel MoE MLP (internal to the parallel stack), through the
// ops table (CPU reference ops or GPU kernels). Every tp rank routes all N
// tokens (replicated router, the reference's load-balancing loss) but sends
// only its 1/tp slice of them to the experts: all-to-all over ep to the
// ranks owning the chosen experts, each local expert's fc -> GELU ->
// fc_proj, all-to-all back, gate-weighted combine, then all-gather over tp.
// The backward runs the same exchanges with the gradients. The row counts
// of each layer's exchange come to the host once, in the forward: they size
// the transfers and the experts' matmuls.
#ifndef HGRID_TRAIN_EP_MOE_H
#define HGRID_TRAIN_EP_MOE_H

#include "model/params.h"
#include "train/comm.h"
#include "train/ops.h"

// One micro-batch's saved tensors for all L layers. Activations (act) and
// routing state live in the ops' memory; h_offsets and counts on the host.
typedef struct {
    float *probs;         // (L, N, E)
    int *topk;            // (L, N, K)
    float *gates;         // (L, N, K)
    int *pos;             // (L, n, K) this rank's slice
    int *offsets;         // (L, E + 1)
    char *xr, *hr, *hrg;  // (L, R, C), (L, R, F), (L, R, F) expert-major received rows
    char *yp;             // (L, n*K, C) expert outputs back in the slice's permuted order
    float *aux;           // (L) each layer's load-balancing loss
    int *h_offsets;       // (L, E + 1) host copy of offsets
    int *counts;          // (L, ep, El) host: rows each source sent to each local expert
} ep_moe_saved;

typedef struct {
    int L, N, n, C, F, E, El, K, R; // n = N / tp tokens per slice, R = ep * n * K row bound
    const tr_ops *ops;
    size_t es; // bytes per activation
    tr_group *tp, *ep;
    float aux_scale; // d(loss)/d(aux) of one micro-batch
    // scratch, in the ops' memory
    char *logits, *dlogits;        // (N, E)
    char *xp, *dyp, *dxp;          // (n*K, C)
    char *xrecv, *yr, *dyr, *dxr;  // (R, C)
    char *dhr;                     // (R, F)
    char *slice;                   // (n, C)
    float *dgates_slice, *dgates;  // (n, K), (N, K)
    char *dx_router;               // (N, C)
    int *exchange;                 // (2 E) rows per expert sent, then received
    int *h_rows;                   // (E) host
} ep_moe;

// Returns 0, or -1 if memory is short (ep_moe_free cleans up).
int ep_moe_alloc(ep_moe *m, const tr_ops *ops, int L, int N, int C, int F, int E, int K,
                 tr_group *tp, tr_group *ep);
void ep_moe_free(ep_moe *m);
int ep_moe_saved_alloc(const ep_moe *m, ep_moe_saved *s);
void ep_moe_saved_free(const ep_moe *m, ep_moe_saved *s);
// out (N, C) = the MoE MLP of layer l over x (N, C); w holds this rank's El
// experts (act), its load-balancing loss goes to s->aux[l].
void ep_moe_forward(ep_moe *m, ep_moe_saved *s, int l, const hg_block_view *w, const void *x,
                    void *out);
// dx (N, C) = d(loss)/dx from dout (N, C) and the load-balancing loss;
// weight gradients (fp32) accumulate into g.
void ep_moe_backward(ep_moe *m, ep_moe_saved *s, int l, const hg_block_view *w,
                     const hg_block_view *g, const void *x, const void *dout, void *dx);

#endif
