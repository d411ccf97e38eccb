// Expert parallelism on the CPU reference ops.
#include "train/ep_moe.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"
#include "model/config.h"

// One spare element so that empty tensors still get a pointer.
#define ALLOC(p, n) ((p) = calloc((size_t)(n) + 1, sizeof *(p)))

int ep_moe_alloc(ep_moe *m, int L, int N, int C, int F, int E, int K, tr_group *tp,
                 tr_group *ep)
{
    int n = N / tp->size;
    size_t R = (size_t)ep->size * n * K;
    *m = (ep_moe){.L = L, .N = N, .n = n, .C = C, .F = F, .E = E, .El = E / ep->size, .K = K,
                  .R = (int)R, .tp = tp, .ep = ep, .aux_scale = 1};
    ALLOC(m->logits, (size_t)N * E), ALLOC(m->dlogits, (size_t)N * E);
    ALLOC(m->xp, (size_t)n * K * C), ALLOC(m->dyp, (size_t)n * K * C);
    ALLOC(m->dxp, (size_t)n * K * C);
    ALLOC(m->xrecv, R * C), ALLOC(m->yr, R * C), ALLOC(m->dyr, R * C), ALLOC(m->dxr, R * C);
    ALLOC(m->dhr, R * F), ALLOC(m->slice, (size_t)n * C);
    ALLOC(m->dgates_slice, (size_t)n * K), ALLOC(m->dgates, (size_t)N * K);
    ALLOC(m->dx_router, (size_t)N * C);
    void *all[] = {m->logits, m->dlogits, m->xp, m->dyp, m->dxp, m->xrecv, m->yr, m->dyr,
                   m->dxr, m->dhr, m->slice, m->dgates_slice, m->dgates, m->dx_router};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i])
            return -1;
    return 0;
}

void ep_moe_free(ep_moe *m)
{
    void *all[] = {m->logits, m->dlogits, m->xp, m->dyp, m->dxp, m->xrecv, m->yr, m->dyr,
                   m->dxr, m->dhr, m->slice, m->dgates_slice, m->dgates, m->dx_router};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

int ep_moe_saved_alloc(const ep_moe *m, ep_moe_saved *s)
{
    size_t L = m->L, N = m->N, nk = (size_t)m->n * m->K, R = m->R;
    memset(s, 0, sizeof *s);
    ALLOC(s->probs, L * N * m->E), ALLOC(s->topk, L * N * m->K), ALLOC(s->gates, L * N * m->K);
    ALLOC(s->pos, L * nk), ALLOC(s->offsets, L * (m->E + 1));
    ALLOC(s->counts, L * m->E);
    ALLOC(s->xr, L * R * m->C), ALLOC(s->hr, L * R * m->F), ALLOC(s->hrg, L * R * m->F);
    ALLOC(s->yp, L * nk * m->C);
    void *all[] = {s->probs, s->topk, s->gates, s->pos, s->offsets, s->counts, s->xr, s->hr,
                   s->hrg, s->yp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i])
            return -1;
    return 0;
}

void ep_moe_saved_free(ep_moe_saved *s)
{
    void *all[] = {s->probs, s->topk, s->gates, s->pos, s->offsets, s->counts, s->xr, s->hr,
                   s->hrg, s->yp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

// Layer l's part of the saved tensors.
typedef struct {
    float *probs, *gates, *xr, *hr, *hrg, *yp;
    int *topk, *pos, *offsets, *counts;
} layer_view;

static layer_view at(const ep_moe *m, const ep_moe_saved *s, int l)
{
    size_t N = m->N, nk = (size_t)m->n * m->K, R = m->R;
    return (layer_view){.probs = s->probs + l * N * m->E, .gates = s->gates + l * N * m->K,
                        .xr = s->xr + l * R * m->C, .hr = s->hr + l * R * m->F,
                        .hrg = s->hrg + l * R * m->F, .yp = s->yp + l * nk * m->C,
                        .topk = s->topk + l * N * m->K, .pos = s->pos + l * nk,
                        .offsets = s->offsets + (size_t)l * (m->E + 1),
                        .counts = s->counts + (size_t)l * m->E};
}

// Element counts of the exchange: send[j] to ep member j (its experts'
// rows of the slice), recv[i] from member i (rows for the local experts).
static void exchange_counts(const ep_moe *m, const layer_view *v, size_t *send, size_t *recv)
{
    for (int j = 0; j < m->ep->size; j++) {
        send[j] = (size_t)(v->offsets[(j + 1) * m->El] - v->offsets[j * m->El]) * m->C;
        recv[j] = 0;
        for (int e = 0; e < m->El; e++)
            recv[j] += (size_t)v->counts[j * m->El + e] * m->C;
    }
}

// Rows of width C between source-major order (as the exchange delivers
// them: by source, then local expert) and expert-major order (by local
// expert, then source), which the expert matmuls need.
static void reorder(const ep_moe *m, const int *counts, float *dst, const float *src,
                    int to_expert)
{
    int ep = m->ep->size, El = m->El;
    size_t src_at[256], at = 0; // E <= 256 (hg_config_check)
    for (int i = 0; i < ep; i++)
        for (int e = 0; e < El; e++) {
            src_at[i * El + e] = at;
            at += counts[i * El + e];
        }
    at = 0;
    for (int e = 0; e < El; e++)
        for (int i = 0; i < ep; i++) {
            size_t rows = counts[i * El + e], s = src_at[i * El + e];
            size_t bytes = rows * m->C * sizeof(float);
            if (to_expert)
                memcpy(dst + at * m->C, src + s * m->C, bytes);
            else
                memcpy(dst + s * m->C, src + at * m->C, bytes);
            at += rows;
        }
}

// Rows [first, first + rows) of local expert e in expert-major order.
static void expert_rows(const ep_moe *m, const int *counts, int e, size_t *first, int *rows)
{
    size_t at = 0;
    for (int k = 0; k < e; k++)
        for (int i = 0; i < m->ep->size; i++)
            at += counts[i * m->El + k];
    *first = at;
    *rows = 0;
    for (int i = 0; i < m->ep->size; i++)
        *rows += counts[i * m->El + e];
}

void ep_moe_forward(ep_moe *m, ep_moe_saved *s, int l, const hg_block_view *w, const float *x,
                    float *out)
{
    int N = m->N, n = m->n, C = m->C, F = m->F, E = m->E, K = m->K;
    size_t off = (size_t)m->tp->rank * n;
    layer_view v = at(m, s, l);
    float aux;
    ref_matmul_forward(m->logits, x, w->router_w, NULL, N, C, E);
    ref_moe_router_forward(v.probs, v.topk, v.gates, m->logits, N, E, K);
    ref_moe_aux_loss_forward(&aux, v.probs, v.topk, N, E, K, HG_MOE_AUX_COEFF);
    s->aux += aux;
    ref_moe_permute_plan(v.pos, v.offsets, v.topk + off * K, n, E, K);
    ref_moe_permute_forward(m->xp, x + off * C, v.pos, n, K, C);

    int per_expert[256];
    for (int e = 0; e < E; e++)
        per_expert[e] = v.offsets[e + 1] - v.offsets[e];
    tr_all_to_all(m->ep, per_expert, v.counts, m->El, TR_I32);
    size_t send[256], recv[256];
    exchange_counts(m, &v, send, recv);
    tr_all_to_all_v(m->ep, m->xp, send, m->xrecv, recv, TR_F32);
    reorder(m, v.counts, v.xr, m->xrecv, 1);
    for (int e = 0; e < m->El; e++) {
        size_t r0;
        int rows;
        expert_rows(m, v.counts, e, &r0, &rows);
        ref_matmul_forward(v.hr + r0 * F, v.xr + r0 * C, (const float *)w->fc_w + (size_t)e * F * C,
                           (const float *)w->fc_b + (size_t)e * F, rows, C, F);
        ref_gelu_forward(v.hrg + r0 * F, v.hr + r0 * F, (size_t)rows * F);
        ref_matmul_forward(m->yr + r0 * C, v.hrg + r0 * F,
                           (const float *)w->fc_proj_w + (size_t)e * C * F,
                           (const float *)w->fc_proj_b + (size_t)e * C, rows, F, C);
    }
    reorder(m, v.counts, m->xrecv, m->yr, 0);
    tr_all_to_all_v(m->ep, m->xrecv, recv, v.yp, send, TR_F32);
    ref_moe_unpermute_forward(m->slice, v.yp, v.gates + off * K, v.pos, n, K, C);
    tr_all_gather(m->tp, m->slice, out, (size_t)n * C, TR_F32);
}

void ep_moe_backward(ep_moe *m, ep_moe_saved *s, int l, const hg_block_view *w,
                     const hg_block_view *g, const float *x, const float *dout, float *dx)
{
    int N = m->N, n = m->n, C = m->C, F = m->F, E = m->E, K = m->K;
    size_t off = (size_t)m->tp->rank * n;
    layer_view v = at(m, s, l);
    ref_moe_unpermute_backward(m->dyp, m->dgates_slice, dout + off * C, v.yp, v.gates + off * K,
                               v.pos, n, K, C);
    size_t send[256], recv[256];
    exchange_counts(m, &v, send, recv);
    tr_all_to_all_v(m->ep, m->dyp, send, m->xrecv, recv, TR_F32);
    reorder(m, v.counts, m->dyr, m->xrecv, 1);
    for (int e = 0; e < m->El; e++) {
        size_t r0;
        int rows;
        expert_rows(m, v.counts, e, &r0, &rows);
        ref_matmul_backward(m->dhr + r0 * F, (float *)g->fc_proj_w + (size_t)e * C * F,
                            (float *)g->fc_proj_b + (size_t)e * C, m->dyr + r0 * C,
                            v.hrg + r0 * F, (const float *)w->fc_proj_w + (size_t)e * C * F, rows,
                            F, C);
        ref_gelu_backward(m->dhr + r0 * F, v.hr + r0 * F, m->dhr + r0 * F, (size_t)rows * F);
        ref_matmul_backward(m->dxr + r0 * C, (float *)g->fc_w + (size_t)e * F * C,
                            (float *)g->fc_b + (size_t)e * F, m->dhr + r0 * F, v.xr + r0 * C,
                            (const float *)w->fc_w + (size_t)e * F * C, rows, C, F);
    }
    reorder(m, v.counts, m->xrecv, m->dxr, 0);
    tr_all_to_all_v(m->ep, m->xrecv, recv, m->dxp, send, TR_F32);
    ref_moe_permute_backward(m->slice, m->dxp, v.pos, n, K, C);
    tr_all_gather(m->tp, m->slice, dx, (size_t)n * C, TR_F32);
    tr_all_gather(m->tp, m->dgates_slice, m->dgates, (size_t)n * K, TR_F32);
    // The router: replicated over tp, so every tp rank computes the same
    // gradient from all N tokens.
    ref_moe_router_backward(m->dlogits, m->dgates, v.probs, v.topk, v.gates,
                            HG_MOE_AUX_COEFF * m->aux_scale, N, E, K);
    ref_matmul_backward(m->dx_router, g->router_w, NULL, m->dlogits, x, w->router_w, N, C, E);
    ref_add_forward(dx, dx, m->dx_router, (size_t)N * C);
}
