// The GPU model's top-k mixture-of-experts MLP (internal to gpu_model.c),
// the same computation as cpu_moe.h through the kernels library. Each
// layer's expert offsets come back to the host once, in the forward.
#ifndef HGRID_MODEL_GPU_MOE_H
#define HGRID_MODEL_GPU_MOE_H

#include "kernels/kernels.h"
#include "model/params.h"

typedef struct {
    int L, N, C, F, E, K;
    kdtype dt;
    size_t es;               // bytes per dt element
    float *probs;            // (L, N, E)
    int *topk, *pos;         // (L, N, K)
    float *gates;            // (L, N, K)
    int *offsets;            // (L, E + 1) on the device
    int *h_offsets;          // (L, E + 1) on the host
    char *xp, *yp;           // (L, N*K, C) dt
    char *hp, *hpg;          // (L, N*K, F) dt, before and after GELU
    float *aux;              // (L) each layer's load-balancing loss
    char *logits, *dlogits;  // (N, E) dt scratch
    float *dgates;           // (N, K)
    char *dxp, *dyp, *dhp;   // (N*K, C | C | F) dt
    char *dx_router;         // (N, C) dt
} gpu_moe;

// alloc(bytes) returns zeroed device memory or exits; the caller frees it.
void gpu_moe_alloc(gpu_moe *m, int L, int N, int C, int F, int E, int K, kdtype dt,
                   void *(*alloc)(void *ctx, size_t bytes), void *ctx);
void gpu_moe_free_host(gpu_moe *m);
// out (N, C) = the MoE MLP of layer l over x (N, C); the layer's
// load-balancing loss goes to m->aux[l].
void gpu_moe_forward(gpu_moe *m, int l, const hg_block_view *w, const void *x, void *out,
                     cudaStream_t st);
// dx (N, C) = d(loss)/dx from dout (N, C) and the load-balancing loss;
// weight gradients (fp32) accumulate into g.
void gpu_moe_backward(gpu_moe *m, int l, const hg_block_view *w, const hg_block_view *g,
                      const void *x, const void *dout, void *dx, cudaStream_t st);

#endif
