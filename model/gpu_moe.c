// The GPU model's mixture-of-experts MLP through the kernels library.
#include "model/gpu_moe.h"

#include <stdio.h>
#include <stdlib.h>

#include "model/config.h"
#include "model/cuda_check.h"

void gpu_moe_alloc(gpu_moe *m, int L, int N, int C, int F, int E, int K, kdtype dt,
                   void *(*alloc)(void *ctx, size_t bytes), void *ctx)
{
    size_t nk = (size_t)N * K, es = kdtype_size(dt);
    *m = (gpu_moe){.L = L, .N = N, .C = C, .F = F, .E = E, .K = K, .dt = dt, .es = es};
    m->probs = alloc(ctx, (size_t)L * N * E * 4);
    m->topk = alloc(ctx, L * nk * 4), m->pos = alloc(ctx, L * nk * 4);
    m->gates = alloc(ctx, L * nk * 4);
    m->offsets = alloc(ctx, (size_t)L * (E + 1) * 4);
    m->xp = alloc(ctx, L * nk * C * es), m->yp = alloc(ctx, L * nk * C * es);
    m->hp = alloc(ctx, L * nk * F * es), m->hpg = alloc(ctx, L * nk * F * es);
    m->aux = alloc(ctx, (size_t)L * 4);
    m->logits = alloc(ctx, (size_t)N * E * es), m->dlogits = alloc(ctx, (size_t)N * E * es);
    m->dgates = alloc(ctx, nk * 4);
    m->dxp = alloc(ctx, nk * C * es), m->dyp = alloc(ctx, nk * C * es);
    m->dhp = alloc(ctx, nk * F * es);
    m->dx_router = alloc(ctx, (size_t)N * C * es);
    m->h_offsets = calloc((size_t)L * (E + 1), sizeof(int));
    if (!m->h_offsets) {
        fprintf(stderr, "gpu_moe_alloc: out of host memory\n");
        exit(EXIT_FAILURE);
    }
}

void gpu_moe_free_host(gpu_moe *m) { free(m->h_offsets); }

void gpu_moe_forward(gpu_moe *m, int l, const hg_block_view *w, const void *x, void *out,
                     cudaStream_t st)
{
    int N = m->N, C = m->C, F = m->F, E = m->E, K = m->K;
    size_t nk = (size_t)N * K, es = m->es;
    kdtype dt = m->dt;
    float *probs = m->probs + (size_t)l * N * E, *gates = m->gates + l * nk;
    int *topk = m->topk + l * nk, *pos = m->pos + l * nk;
    int *offsets = m->offsets + (size_t)l * (E + 1), *h_off = m->h_offsets + (size_t)l * (E + 1);
    char *xp = m->xp + l * nk * C * es, *yp = m->yp + l * nk * C * es;
    char *hp = m->hp + l * nk * F * es, *hpg = m->hpg + l * nk * F * es;
    const char *fc_w = w->fc_w, *fc_b = w->fc_b, *pw = w->fc_proj_w, *pb = w->fc_proj_b;

    matmul_forward(m->logits, x, w->router_w, NULL, N, C, E, dt, st);
    moe_router_forward(probs, topk, gates, m->logits, N, E, K, dt, st);
    moe_aux_loss_forward(m->aux + l, probs, topk, N, E, K, HG_MOE_AUX_COEFF, st);
    moe_permute_plan(pos, offsets, topk, N, E, K, st);
    cuda_check(cudaMemcpyAsync(h_off, offsets, sizeof(int) * (E + 1), cudaMemcpyDeviceToHost, st));
    moe_permute_forward(xp, x, pos, N, K, C, dt, st);
    cuda_check(cudaStreamSynchronize(st)); // the expert row ranges size the matmuls below
    for (int e = 0; e < E; e++) {
        size_t r0 = h_off[e];
        int rows = h_off[e + 1] - h_off[e];
        matmul_forward(hp + r0 * F * es, xp + r0 * C * es, fc_w + (size_t)e * F * C * es,
                       fc_b + (size_t)e * F * es, rows, C, F, dt, st);
        gelu_forward(hpg + r0 * F * es, hp + r0 * F * es, (size_t)rows * F, dt, st);
        matmul_forward(yp + r0 * C * es, hpg + r0 * F * es, pw + (size_t)e * C * F * es,
                       pb + (size_t)e * C * es, rows, F, C, dt, st);
    }
    moe_unpermute_forward(out, yp, gates, pos, N, K, C, dt, st);
}

void gpu_moe_backward(gpu_moe *m, int l, const hg_block_view *w, const hg_block_view *g,
                      const void *x, const void *dout, void *dx, cudaStream_t st)
{
    int N = m->N, C = m->C, F = m->F, E = m->E, K = m->K;
    size_t nk = (size_t)N * K, es = m->es;
    kdtype dt = m->dt;
    float *probs = m->probs + (size_t)l * N * E, *gates = m->gates + l * nk;
    int *topk = m->topk + l * nk, *pos = m->pos + l * nk;
    const int *h_off = m->h_offsets + (size_t)l * (E + 1);
    char *xp = m->xp + l * nk * C * es, *yp = m->yp + l * nk * C * es;
    char *hp = m->hp + l * nk * F * es, *hpg = m->hpg + l * nk * F * es;
    const char *fc_w = w->fc_w, *pw = w->fc_proj_w;
    float *dfc_w = g->fc_w, *dfc_b = g->fc_b, *dpw = g->fc_proj_w, *dpb = g->fc_proj_b;

    moe_unpermute_backward(m->dyp, m->dgates, dout, yp, gates, pos, N, K, C, dt, st);
    for (int e = 0; e < E; e++) {
        size_t r0 = h_off[e];
        int rows = h_off[e + 1] - h_off[e];
        char *dhp = m->dhp + r0 * F * es;
        matmul_backward(dhp, dpw + (size_t)e * C * F, dpb + (size_t)e * C, m->dyp + r0 * C * es,
                        hpg + r0 * F * es, pw + (size_t)e * C * F * es, rows, F, C, dt, st);
        gelu_backward(dhp, hp + r0 * F * es, dhp, (size_t)rows * F, dt, st);
        matmul_backward(m->dxp + r0 * C * es, dfc_w + (size_t)e * F * C, dfc_b + (size_t)e * F,
                        dhp, xp + r0 * C * es, fc_w + (size_t)e * F * C * es, rows, C, F, dt, st);
    }
    moe_permute_backward(dx, m->dxp, pos, N, K, C, dt, st);
    // The router: through the gates, and the load-balancing loss added as is.
    moe_router_backward(m->dlogits, m->dgates, probs, topk, gates, HG_MOE_AUX_COEFF, N, E, K, dt,
                        st);
    matmul_backward(m->dx_router, g->router_w, NULL, m->dlogits, x, w->router_w, N, C, E, dt, st);
    add_forward(dx, dx, m->dx_router, (size_t)N * C, dt, st);
}
