// Tensor-parallel transformer blocks through the ops table.
#include "train/tp_stack.h"

#include <stdlib.h>
#include <string.h>

static int slot_alloc(tp_stack *s, tp_slot *x)
{
    const tr_ops *o = s->ops;
    size_t L = s->L, N = (size_t)s->B * s->T, C = s->C, Cl = C / s->tp->size, es = s->es;
    x->res = o->alloc((L + 1) * N * C * es);
    x->ln1 = o->alloc(L * N * C * es);
    x->ln1_mean = o->alloc(L * N * 4), x->ln1_rstd = o->alloc(L * N * 4);
    x->qkv = o->alloc(L * N * 3 * Cl * es);
    x->att = o->alloc(L * N * Cl * es), x->lse = o->alloc(L * N * s->NH * 4);
    x->res2 = o->alloc(L * N * C * es), x->ln2 = o->alloc(L * N * C * es);
    x->ln2_mean = o->alloc(L * N * 4), x->ln2_rstd = o->alloc(L * N * 4);
    x->fch = o->alloc(L * N * s->F * es), x->fch_gelu = o->alloc(L * N * s->F * es);
    void *all[] = {x->res, x->ln1, x->ln1_mean, x->ln1_rstd, x->qkv, x->att, x->lse, x->res2,
                   x->ln2, x->ln2_mean, x->ln2_rstd, x->fch, x->fch_gelu};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i])
            return -1;
    return s->experts ? ep_moe_saved_alloc(&s->moe, &x->moe) : 0;
}

static void release(const tr_ops *o, void *p)
{
    if (p)
        o->release(p);
}

static void slot_free(tp_stack *s, tp_slot *x)
{
    void *all[] = {x->res, x->ln1, x->ln1_mean, x->ln1_rstd, x->qkv, x->att, x->lse, x->res2,
                   x->ln2, x->ln2_mean, x->ln2_rstd, x->fch, x->fch_gelu};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        release(s->ops, all[i]);
    if (s->experts)
        ep_moe_saved_free(&s->moe, &x->moe);
}

int tp_stack_alloc(tp_stack *s, const tr_ops *ops, int L, int B, int T, int C, int F, int NH,
                   int causal, int E, int K, tr_group *tp, tr_group *ep, int num_slots)
{
    int n = tp->size;
    *s = (tp_stack){.L = L, .B = B, .T = T, .C = C, .F = E ? 0 : F / n, .NH = NH / n,
                    .causal = causal, .experts = E > 0, .ops = ops, .es = tr_ops_es(ops),
                    .tp = tp, .num_slots = num_slots};
    size_t N = (size_t)B * T, es = s->es;
    if (E && ep_moe_alloc(&s->moe, ops, L, B * T, C, F, E, K, tp, ep) != 0)
        return -1;
    s->dres = ops->alloc(N * C * es), s->dC = ops->alloc(N * C * es);
    s->datt = ops->alloc(N * C / n * es);
    s->dF = ops->alloc(N * s->F * es), s->dqkv = ops->alloc(N * 3 * C / n * es);
    s->slots = calloc(num_slots, sizeof *s->slots);
    if (!s->dres || !s->dC || !s->datt || !s->dF || !s->dqkv || !s->slots)
        return -1;
    for (int i = 0; i < num_slots; i++)
        if (slot_alloc(s, &s->slots[i]) != 0)
            return -1;
    return 0;
}

void tp_stack_free(tp_stack *s)
{
    for (int i = 0; s->slots && i < s->num_slots; i++)
        slot_free(s, &s->slots[i]);
    free(s->slots);
    void *all[] = {s->dres, s->dC, s->datt, s->dF, s->dqkv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        release(s->ops, all[i]);
    if (s->experts)
        ep_moe_free(&s->moe);
}

char *tp_stack_output(const tp_stack *s, int slot)
{
    return s->slots[slot].res + (size_t)s->L * s->B * s->T * s->C * s->es;
}

// out (N, C) = inp @ w^T, all-reduced over tp, + bias + residual. The
// replicated bias and residual join on tp rank 0 only, in its matmul's
// epilogue (before the all-reduce), so the sum holds each once; with tp 1
// that is the whole row-parallel layer in one matmul.
static void row_parallel(tp_stack *s, char *out, const char *inp, const void *w,
                         const void *bias, int K, const char *resid)
{
    int N = s->B * s->T, C = s->C;
    if (s->tp->rank == 0)
        s->ops->matmul_forward_residual(out, inp, w, bias, resid, N, K, C);
    else
        s->ops->matmul_forward(out, inp, w, NULL, N, K, C);
    tr_all_reduce(s->tp, out, (size_t)N * C, s->ops->act);
}

void tp_stack_forward(tp_stack *s, int slot, const hg_param_table *t, void *work)
{
    const tr_ops *o = s->ops;
    tp_slot *x = &s->slots[slot];
    int N = s->B * s->T, C = s->C, Cl = C / s->tp->size, F = s->F, HD = Cl / s->NH;
    size_t es = s->es, nc = (size_t)N * C * es, ncl = (size_t)N * Cl * es, nf = (size_t)N * F * es;
    for (int l = 0; l < s->L; l++) {
        hg_block_view w;
        hg_block_view_at(t, work, es, l, &w);
        char *in = x->res + l * nc, *ln1 = x->ln1 + l * nc, *qkv = x->qkv + l * 3 * ncl;
        char *att = x->att + l * ncl, *res2 = x->res2 + l * nc, *ln2 = x->ln2 + l * nc;
        char *fch = x->fch + l * nf, *fchg = x->fch_gelu + l * nf;
        char *out = x->res + (l + 1) * nc;
        o->layernorm_forward(ln1, x->ln1_mean + l * N, x->ln1_rstd + l * N, in, w.ln1_w, w.ln1_b,
                             N, C);
        o->matmul_forward(qkv, ln1, w.qkv_w, w.qkv_b, N, C, 3 * Cl);
        o->attention_forward(att, x->lse + (size_t)l * N * s->NH, qkv, s->B, s->T, s->NH, HD,
                             s->causal);
        row_parallel(s, res2, att, w.attn_proj_w, w.attn_proj_b, Cl, in);
        o->layernorm_forward(ln2, x->ln2_mean + l * N, x->ln2_rstd + l * N, res2, w.ln2_w,
                             w.ln2_b, N, C);
        if (s->experts) {
            ep_moe_forward(&s->moe, &x->moe, l, &w, ln2, out);
            o->add(out, out, res2, (size_t)N * C);
        } else {
            // fc is column-parallel: each rank adds its own slice of fc_b.
            o->matmul_forward_gelu(fchg, fch, ln2, w.fc_w, w.fc_b, N, C, F);
            row_parallel(s, out, fchg, w.fc_proj_w, w.fc_proj_b, F, res2);
        }
    }
}

void tp_stack_backward(tp_stack *s, int slot, const hg_param_table *t, void *work, float *grads)
{
    const tr_ops *o = s->ops;
    tp_slot *x = &s->slots[slot];
    int N = s->B * s->T, C = s->C, Cl = C / s->tp->size, F = s->F, HD = Cl / s->NH;
    size_t es = s->es, nc = (size_t)N * C * es, ncl = (size_t)N * Cl * es, nf = (size_t)N * F * es;
    for (int l = s->L - 1; l >= 0; l--) {
        hg_block_view w, g;
        hg_block_view_at(t, work, es, l, &w);
        hg_block_view_at(t, grads, sizeof(float), l, &g);
        char *in = x->res + l * nc, *ln1 = x->ln1 + l * nc, *qkv = x->qkv + l * 3 * ncl;
        char *att = x->att + l * ncl, *res2 = x->res2 + l * nc, *ln2 = x->ln2 + l * nc;
        char *fch = x->fch + l * nf, *fchg = x->fch_gelu + l * nf;
        // MLP: row-parallel fc_proj takes the replicated gradient as is;
        // column-parallel fc's input gradient is a partial sum over tp.
        // fc_proj's bias gradient (the column sums of dres) came with the
        // layer above's ln1 backward, which left dres; the top layer's here.
        if (s->experts) {
            ep_moe_backward(&s->moe, &x->moe, l, &w, &g, ln2, s->dres, s->dC);
        } else {
            o->matmul_backward_dgelu(s->dF, g.fc_proj_w, l == s->L - 1 ? g.fc_proj_b : NULL,
                                     s->dres, fchg, w.fc_proj_w, fch, N, F, C);
            o->matmul_backward(s->dC, g.fc_w, g.fc_b, s->dF, ln2, w.fc_w, N, C, F);
            tr_all_reduce(s->tp, s->dC, (size_t)N * C, o->act);
        }
        // dres out of ln2's backward is attn_proj's dout: its bias gradient
        // is summed in that pass, not by a second read of dres.
        o->layernorm_backward(s->dres, g.ln2_w, g.ln2_b, g.attn_proj_b, s->dC, res2,
                              w.ln2_w, x->ln2_mean + l * N, x->ln2_rstd + l * N, N, C);
        o->matmul_backward(s->datt, g.attn_proj_w, NULL, s->dres, att,
                           w.attn_proj_w, N, Cl, C);
        o->attention_backward(s->dqkv, s->datt, qkv, att, x->lse + (size_t)l * N * s->NH, s->B,
                              s->T, s->NH, HD, s->causal);
        o->matmul_backward(s->dC, g.qkv_w, g.qkv_b, s->dqkv, ln1, w.qkv_w, N, C, 3 * Cl);
        tr_all_reduce(s->tp, s->dC, (size_t)N * C, o->act);
        // and out of ln1's, the layer below's fc_proj dout (a dense MLP's)
        float *below_fc_proj_b = NULL;
        if (l > 0 && !s->experts) {
            hg_block_view gb;
            hg_block_view_at(t, grads, sizeof(float), l - 1, &gb);
            below_fc_proj_b = gb.fc_proj_b;
        }
        o->layernorm_backward(s->dres, g.ln1_w, g.ln1_b, below_fc_proj_b, s->dC, in, w.ln1_w,
                              x->ln1_mean + l * N, x->ln1_rstd + l * N, N, C);
        if (s->layer_done)
            s->layer_done(s->layer_ctx, l);
    }
}
