// The CPU model's mixture-of-experts MLP from the reference ops.
#include "model/cpu_moe.h"

#include <stdlib.h>

#include "kernels/reference.h"
#include "model/config.h"
#include "model/rng.h"

int cpu_moe_alloc(cpu_moe *m, int L, int N, int C, int F, int E, int K)
{
    size_t nk = (size_t)N * K;
    *m = (cpu_moe){.L = L, .N = N, .C = C, .F = F, .E = E, .K = K};
    m->probs = calloc((size_t)L * N * E, sizeof(float));
    m->topk = calloc(L * nk, sizeof(int)), m->pos = calloc(L * nk, sizeof(int));
    m->gates = calloc(L * nk, sizeof(float));
    m->offsets = calloc((size_t)L * (E + 1), sizeof(int));
    m->xp = calloc(L * nk * C, sizeof(float)), m->yp = calloc(L * nk * C, sizeof(float));
    m->hp = calloc(L * nk * F, sizeof(float)), m->hpg = calloc(L * nk * F, sizeof(float));
    m->logits = calloc((size_t)N * E, sizeof(float));
    m->dlogits = calloc((size_t)N * E, sizeof(float));
    m->dgates = calloc(nk, sizeof(float));
    m->dxp = calloc(nk * C, sizeof(float)), m->dyp = calloc(nk * C, sizeof(float));
    m->dhp = calloc(nk * F, sizeof(float));
    m->dx_router = calloc((size_t)N * C, sizeof(float));
    void *all[] = {m->probs, m->topk, m->pos, m->gates, m->offsets, m->xp, m->yp, m->hp, m->hpg,
                   m->logits, m->dlogits, m->dgates, m->dxp, m->dyp, m->dhp, m->dx_router};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i])
            return -1;
    return 0;
}

void cpu_moe_free(cpu_moe *m)
{
    void *all[] = {m->probs, m->topk, m->pos, m->gates, m->offsets, m->xp, m->yp, m->hp, m->hpg,
                   m->logits, m->dlogits, m->dgates, m->dxp, m->dyp, m->dhp, m->dx_router};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

// Layer l's saved tensors.
typedef struct {
    float *probs, *gates, *xp, *yp, *hp, *hpg;
    int *topk, *pos, *offsets;
} layer_view;

static layer_view at(const cpu_moe *m, int l)
{
    size_t nk = (size_t)m->N * m->K;
    return (layer_view){.probs = m->probs + (size_t)l * m->N * m->E,
                        .gates = m->gates + l * nk, .xp = m->xp + l * nk * m->C,
                        .yp = m->yp + l * nk * m->C, .hp = m->hp + l * nk * m->F,
                        .hpg = m->hpg + l * nk * m->F, .topk = m->topk + l * nk,
                        .pos = m->pos + l * nk, .offsets = m->offsets + (size_t)l * (m->E + 1)};
}

void cpu_moe_forward(cpu_moe *m, int l, const hg_block_view *w, const float *x, float *out)
{
    int N = m->N, C = m->C, F = m->F, E = m->E, K = m->K;
    layer_view v = at(m, l);
    const float *fc_w = w->fc_w, *fc_b = w->fc_b, *pw = w->fc_proj_w, *pb = w->fc_proj_b;
    float aux;
    ref_matmul_forward(m->logits, x, w->router_w, NULL, N, C, E);
    ref_moe_router_forward(v.probs, v.topk, v.gates, m->logits, N, E, K);
    ref_moe_aux_loss_forward(&aux, v.probs, v.topk, N, E, K, HG_MOE_AUX_COEFF);
    m->aux += aux;
    for (int i = 0; i < N * K; i++)
        m->routing = hg_mix64(m->routing ^ (uint64_t)v.topk[i]);
    ref_moe_permute_plan(v.pos, v.offsets, v.topk, N, E, K);
    ref_moe_permute_forward(v.xp, x, v.pos, N, K, C);
    for (int e = 0; e < E; e++) {
        size_t r0 = v.offsets[e];
        int rows = v.offsets[e + 1] - v.offsets[e];
        ref_matmul_forward(v.hp + r0 * F, v.xp + r0 * C, fc_w + (size_t)e * F * C, fc_b + e * F,
                           rows, C, F);
        ref_gelu_forward(v.hpg + r0 * F, v.hp + r0 * F, (size_t)rows * F);
        ref_matmul_forward(v.yp + r0 * C, v.hpg + r0 * F, pw + (size_t)e * C * F, pb + e * C,
                           rows, F, C);
    }
    ref_moe_unpermute_forward(out, v.yp, v.gates, v.pos, N, K, C);
}

void cpu_moe_backward(cpu_moe *m, int l, const hg_block_view *w, const hg_block_view *g,
                      const float *x, const float *dout, float *dx)
{
    int N = m->N, C = m->C, F = m->F, E = m->E, K = m->K;
    layer_view v = at(m, l);
    ref_moe_unpermute_backward(m->dyp, m->dgates, dout, v.yp, v.gates, v.pos, N, K, C);
    for (int e = 0; e < E; e++) {
        size_t r0 = v.offsets[e];
        int rows = v.offsets[e + 1] - v.offsets[e];
        ref_matmul_backward(m->dhp + r0 * F, (float *)g->fc_proj_w + (size_t)e * C * F,
                            (float *)g->fc_proj_b + e * C, m->dyp + r0 * C, v.hpg + r0 * F,
                            (const float *)w->fc_proj_w + (size_t)e * C * F, rows, F, C);
        ref_gelu_backward(m->dhp + r0 * F, v.hp + r0 * F, m->dhp + r0 * F, (size_t)rows * F);
        ref_matmul_backward(m->dxp + r0 * C, (float *)g->fc_w + (size_t)e * F * C,
                            (float *)g->fc_b + e * F, m->dhp + r0 * F, v.xp + r0 * C,
                            (const float *)w->fc_w + (size_t)e * F * C, rows, C, F);
    }
    ref_moe_permute_backward(dx, m->dxp, v.pos, N, K, C);
    // The router: through the gates, and the load-balancing loss added as is.
    ref_moe_router_backward(m->dlogits, m->dgates, v.probs, v.topk, v.gates, HG_MOE_AUX_COEFF, N,
                            E, K);
    ref_matmul_backward(m->dx_router, g->router_w, NULL, m->dlogits, x, w->router_w, N, C, E);
    ref_add_forward(dx, dx, m->dx_router, (size_t)N * C);
}
