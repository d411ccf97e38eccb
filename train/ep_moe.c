// Expert parallelism through the ops table.
#include "train/ep_moe.h"

#include <stdlib.h>
#include <string.h>

#include "model/config.h"

// The ops-memory buffers of m and of s, with their sizes in bytes: one list
// drives allocation and release.
typedef struct {
    void **p;
    size_t bytes;
} buffer;

static int scratch_buffers(ep_moe *m, buffer *b)
{
    size_t N = m->N, nk = (size_t)m->n * m->K, R = m->R, C = m->C, es = m->es;
    int k = 0;
    b[k++] = (buffer){(void **)&m->logits, N * m->E * es};
    b[k++] = (buffer){(void **)&m->dlogits, N * m->E * es};
    b[k++] = (buffer){(void **)&m->xp, nk * C * es};
    b[k++] = (buffer){(void **)&m->dyp, nk * C * es};
    b[k++] = (buffer){(void **)&m->dxp, nk * C * es};
    b[k++] = (buffer){(void **)&m->xrecv, R * C * es};
    b[k++] = (buffer){(void **)&m->yr, R * C * es};
    b[k++] = (buffer){(void **)&m->dyr, R * C * es};
    b[k++] = (buffer){(void **)&m->dxr, R * C * es};
    b[k++] = (buffer){(void **)&m->dhr, R * m->F * es};
    b[k++] = (buffer){(void **)&m->slice, (size_t)m->n * C * es};
    b[k++] = (buffer){(void **)&m->dgates_slice, nk * sizeof(float)};
    b[k++] = (buffer){(void **)&m->dgates, N * m->K * sizeof(float)};
    b[k++] = (buffer){(void **)&m->dx_router, N * C * es};
    b[k++] = (buffer){(void **)&m->exchange, 2 * (size_t)m->E * sizeof(int)};
    return k;
}

static int saved_buffers(const ep_moe *m, ep_moe_saved *s, buffer *b)
{
    size_t L = m->L, N = m->N, nk = (size_t)m->n * m->K, R = m->R, es = m->es;
    int k = 0;
    b[k++] = (buffer){(void **)&s->probs, L * N * m->E * sizeof(float)};
    b[k++] = (buffer){(void **)&s->topk, L * N * m->K * sizeof(int)};
    b[k++] = (buffer){(void **)&s->gates, L * N * m->K * sizeof(float)};
    b[k++] = (buffer){(void **)&s->pos, L * nk * sizeof(int)};
    b[k++] = (buffer){(void **)&s->offsets, L * (m->E + 1) * sizeof(int)};
    b[k++] = (buffer){(void **)&s->xr, L * R * m->C * es};
    b[k++] = (buffer){(void **)&s->hr, L * R * m->F * es};
    b[k++] = (buffer){(void **)&s->hrg, L * R * m->F * es};
    b[k++] = (buffer){(void **)&s->yp, L * nk * m->C * es};
    b[k++] = (buffer){(void **)&s->aux, L * sizeof(float)};
    return k;
}

static int alloc_all(const tr_ops *o, buffer *b, int k)
{
    int ok = 1;
    for (int i = 0; i < k; i++)
        ok &= (*b[i].p = o->alloc(b[i].bytes)) != NULL;
    return ok ? 0 : -1;
}

static void release_all(const tr_ops *o, buffer *b, int k)
{
    for (int i = 0; i < k; i++)
        if (*b[i].p)
            o->release(*b[i].p);
}

int ep_moe_alloc(ep_moe *m, const tr_ops *ops, int L, int N, int C, int F, int E, int K,
                 tr_group *tp, tr_group *ep)
{
    int n = N / tp->size;
    *m = (ep_moe){.L = L, .N = N, .n = n, .C = C, .F = F, .E = E, .El = E / ep->size, .K = K,
                  .R = ep->size * n * K, .ops = ops, .es = tr_ops_es(ops), .tp = tp, .ep = ep,
                  .aux_scale = 1};
    buffer b[16];
    int k = scratch_buffers(m, b);
    m->h_rows = calloc(E, sizeof(int));
    return alloc_all(ops, b, k) == 0 && m->h_rows ? 0 : -1;
}

void ep_moe_free(ep_moe *m)
{
    buffer b[16];
    release_all(m->ops, b, scratch_buffers(m, b));
    free(m->h_rows);
}

int ep_moe_saved_alloc(const ep_moe *m, ep_moe_saved *s)
{
    memset(s, 0, sizeof *s);
    buffer b[16];
    int k = saved_buffers(m, s, b);
    s->h_offsets = calloc((size_t)m->L * (m->E + 1), sizeof(int));
    s->counts = calloc((size_t)m->L * m->E, sizeof(int));
    return alloc_all(m->ops, b, k) == 0 && s->h_offsets && s->counts ? 0 : -1;
}

void ep_moe_saved_free(const ep_moe *m, ep_moe_saved *s)
{
    buffer b[16];
    release_all(m->ops, b, saved_buffers(m, s, b));
    free(s->h_offsets);
    free(s->counts);
}

// Layer l's part of the saved tensors.
typedef struct {
    float *probs, *gates;
    char *xr, *hr, *hrg, *yp;
    int *topk, *pos, *offsets, *h_offsets, *counts;
} layer_view;

static layer_view at(const ep_moe *m, const ep_moe_saved *s, int l)
{
    size_t N = m->N, nk = (size_t)m->n * m->K, R = m->R, es = m->es;
    return (layer_view){.probs = s->probs + l * N * m->E, .gates = s->gates + l * N * m->K,
                        .xr = s->xr + l * R * m->C * es, .hr = s->hr + l * R * m->F * es,
                        .hrg = s->hrg + l * R * m->F * es, .yp = s->yp + l * nk * m->C * es,
                        .topk = s->topk + l * N * m->K, .pos = s->pos + l * nk,
                        .offsets = s->offsets + (size_t)l * (m->E + 1),
                        .h_offsets = s->h_offsets + (size_t)l * (m->E + 1),
                        .counts = s->counts + (size_t)l * m->E};
}

// Element counts of the exchange: send[j] to ep member j (its experts'
// rows of the slice), recv[i] from member i (rows for the local experts).
static void exchange_counts(const ep_moe *m, const layer_view *v, size_t *send, size_t *recv)
{
    for (int j = 0; j < m->ep->size; j++) {
        send[j] = (size_t)(v->h_offsets[(j + 1) * m->El] - v->h_offsets[j * m->El]) * m->C;
        recv[j] = 0;
        for (int e = 0; e < m->El; e++)
            recv[j] += (size_t)v->counts[j * m->El + e] * m->C;
    }
}

// Rows of width C between source-major order (as the exchange delivers
// them: by source, then local expert) and expert-major order (by local
// expert, then source), which the expert matmuls need. Blocks that follow
// each other on both sides go as one copy (all of them when ep is 1).
static void reorder(const ep_moe *m, const int *counts, char *dst, const char *src,
                    int to_expert)
{
    int ep = m->ep->size, El = m->El;
    size_t src_at[256], at = 0, row = (size_t)m->C * m->es; // E <= 256 (hg_config_check)
    for (int i = 0; i < ep; i++)
        for (int e = 0; e < El; e++) {
            src_at[i * El + e] = at;
            at += counts[i * El + e];
        }
    size_t run_from = 0, run_to = 0, run_rows = 0;
    at = 0;
    for (int e = 0; e < El; e++)
        for (int i = 0; i < ep; i++) {
            size_t rows = counts[i * El + e], s = src_at[i * El + e];
            size_t from = to_expert ? s : at, to = to_expert ? at : s;
            if (run_rows && (from != run_from + run_rows || to != run_to + run_rows)) {
                m->ops->copy(dst + run_to * row, src + run_from * row, run_rows * row);
                run_rows = 0;
            }
            if (!run_rows)
                run_from = from, run_to = to;
            run_rows += rows;
            at += rows;
        }
    if (run_rows)
        m->ops->copy(dst + run_to * row, src + run_from * row, run_rows * row);
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

// The routing plan of this rank's slice, and how many rows each ep member
// sends to each local expert (on the host: they size what follows).
static void plan_exchange(ep_moe *m, const layer_view *v)
{
    const tr_ops *o = m->ops;
    int E = m->E;
    size_t off = (size_t)m->tp->rank * m->n;
    o->moe_permute_plan(v->pos, v->offsets, v->topk + off * m->K, m->n, E, m->K);
    o->download(v->h_offsets, v->offsets, (E + 1) * sizeof(int));
    for (int e = 0; e < E; e++)
        m->h_rows[e] = v->h_offsets[e + 1] - v->h_offsets[e];
    o->upload(m->exchange, m->h_rows, E * sizeof(int));
    tr_all_to_all(m->ep, m->exchange, m->exchange + E, m->El, TR_I32);
    o->download(v->counts, m->exchange + E, E * sizeof(int));
}

void ep_moe_forward(ep_moe *m, ep_moe_saved *s, int l, const hg_block_view *w, const void *x,
                    void *out)
{
    const tr_ops *o = m->ops;
    int N = m->N, n = m->n, C = m->C, F = m->F, E = m->E, K = m->K;
    size_t off = (size_t)m->tp->rank * n, es = m->es;
    layer_view v = at(m, s, l);
    o->matmul_forward(m->logits, x, w->router_w, NULL, N, C, E);
    o->moe_router_forward(v.probs, v.topk, v.gates, m->logits, N, E, K);
    o->moe_aux_loss_forward(s->aux + l, v.probs, v.topk, N, E, K, HG_MOE_AUX_COEFF);
    plan_exchange(m, &v);
    o->moe_permute_forward(m->xp, (const char *)x + off * C * es, v.pos, n, K, C);

    size_t send[256], recv[256];
    exchange_counts(m, &v, send, recv);
    tr_all_to_all_v(m->ep, m->xp, send, m->xrecv, recv, o->act);
    reorder(m, v.counts, v.xr, m->xrecv, 1);
    const char *fc_w = w->fc_w, *fc_b = w->fc_b, *pw = w->fc_proj_w, *pb = w->fc_proj_b;
    for (int e = 0; e < m->El; e++) {
        size_t r0;
        int rows;
        expert_rows(m, v.counts, e, &r0, &rows);
        if (!rows)
            continue;
        char *hr = v.hr + r0 * F * es, *hrg = v.hrg + r0 * F * es;
        o->matmul_forward_gelu(hrg, hr, v.xr + r0 * C * es, fc_w + (size_t)e * F * C * es,
                               fc_b + (size_t)e * F * es, rows, C, F);
        o->matmul_forward(m->yr + r0 * C * es, hrg, pw + (size_t)e * C * F * es,
                          pb + (size_t)e * C * es, rows, F, C);
    }
    reorder(m, v.counts, m->xrecv, m->yr, 0);
    tr_all_to_all_v(m->ep, m->xrecv, recv, v.yp, send, o->act);
    o->moe_unpermute_forward(m->slice, v.yp, v.gates + off * K, v.pos, n, K, C);
    tr_all_gather(m->tp, m->slice, out, (size_t)n * C, o->act);
}

void ep_moe_backward(ep_moe *m, ep_moe_saved *s, int l, const hg_block_view *w,
                     const hg_block_view *g, const void *x, const void *dout, void *dx)
{
    const tr_ops *o = m->ops;
    int N = m->N, n = m->n, C = m->C, F = m->F, E = m->E, K = m->K;
    size_t off = (size_t)m->tp->rank * n, es = m->es;
    layer_view v = at(m, s, l);
    o->moe_unpermute_backward(m->dyp, m->dgates_slice, (const char *)dout + off * C * es, v.yp,
                              v.gates + off * K, v.pos, n, K, C);
    size_t send[256], recv[256];
    exchange_counts(m, &v, send, recv);
    tr_all_to_all_v(m->ep, m->dyp, send, m->xrecv, recv, o->act);
    reorder(m, v.counts, m->dyr, m->xrecv, 1);
    const char *fc_w = w->fc_w, *pw = w->fc_proj_w;
    float *dfc_w = g->fc_w, *dfc_b = g->fc_b, *dpw = g->fc_proj_w, *dpb = g->fc_proj_b;
    for (int e = 0; e < m->El; e++) {
        size_t r0;
        int rows;
        expert_rows(m, v.counts, e, &r0, &rows);
        if (!rows)
            continue;
        char *dhr = m->dhr + r0 * F * es;
        o->matmul_backward_dgelu(dhr, dpw + (size_t)e * C * F, dpb + (size_t)e * C,
                                 m->dyr + r0 * C * es, v.hrg + r0 * F * es,
                                 pw + (size_t)e * C * F * es, v.hr + r0 * F * es, rows, F, C);
        o->matmul_backward(m->dxr + r0 * C * es, dfc_w + (size_t)e * F * C, dfc_b + (size_t)e * F,
                           dhr, v.xr + r0 * C * es, fc_w + (size_t)e * F * C * es, rows, C, F);
    }
    reorder(m, v.counts, m->xrecv, m->dxr, 0);
    tr_all_to_all_v(m->ep, m->xrecv, recv, m->dxp, send, o->act);
    o->moe_permute_backward(m->slice, m->dxp, v.pos, n, K, C);
    tr_all_gather(m->tp, m->slice, dx, (size_t)n * C, o->act);
    tr_all_gather(m->tp, m->dgates_slice, m->dgates, (size_t)n * K, TR_F32);
    // The router: replicated over tp, so every tp rank computes the same
    // gradient from all N tokens.
    o->moe_router_backward(m->dlogits, m->dgates, v.probs, v.topk, v.gates,
                           HG_MOE_AUX_COEFF * m->aux_scale, N, E, K);
    o->matmul_backward(m->dx_router, g->router_w, NULL, m->dlogits, x, w->router_w, N, C, E);
    o->add(dx, dx, m->dx_router, (size_t)N * C);
}
