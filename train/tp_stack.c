// Tensor-parallel transformer blocks on the CPU reference ops.
#include "train/tp_stack.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"

static float *fz(size_t n) { return calloc(n + 1, sizeof(float)); }

static int slot_alloc(tp_stack *s, tp_slot *x)
{
    size_t L = s->L, N = (size_t)s->B * s->T, C = s->C, Cl = C / s->tp->size;
    x->res = fz((L + 1) * N * C);
    x->ln1 = fz(L * N * C), x->ln1_mean = fz(L * N), x->ln1_rstd = fz(L * N);
    x->qkv = fz(L * N * 3 * Cl);
    x->att = fz(L * N * Cl), x->lse = fz(L * N * s->NH);
    x->res2 = fz(L * N * C);
    x->ln2 = fz(L * N * C), x->ln2_mean = fz(L * N), x->ln2_rstd = fz(L * N);
    x->fch = fz(L * N * s->F), x->fch_gelu = fz(L * N * s->F);
    float *all[] = {x->res, x->ln1, x->ln1_mean, x->ln1_rstd, x->qkv, x->att, x->lse, x->res2,
                    x->ln2, x->ln2_mean, x->ln2_rstd, x->fch, x->fch_gelu};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i])
            return -1;
    return s->experts ? ep_moe_saved_alloc(&s->moe, &x->moe) : 0;
}

static void slot_free(tp_stack *s, tp_slot *x)
{
    float *all[] = {x->res, x->ln1, x->ln1_mean, x->ln1_rstd, x->qkv, x->att, x->lse, x->res2,
                    x->ln2, x->ln2_mean, x->ln2_rstd, x->fch, x->fch_gelu};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    if (s->experts)
        ep_moe_saved_free(&x->moe);
}

int tp_stack_alloc(tp_stack *s, int L, int B, int T, int C, int F, int NH, int causal, int E,
                   int K, tr_group *tp, tr_group *ep, int num_slots)
{
    int n = tp->size;
    *s = (tp_stack){.L = L, .B = B, .T = T, .C = C, .F = E ? 0 : F / n, .NH = NH / n,
                    .causal = causal, .experts = E > 0, .tp = tp, .num_slots = num_slots};
    size_t N = (size_t)B * T;
    if (E && ep_moe_alloc(&s->moe, L, B * T, C, F, E, K, tp, ep) != 0)
        return -1;
    s->dres = fz(N * C), s->dC = fz(N * C), s->datt = fz(N * C / n);
    s->dF = fz(N * s->F), s->dqkv = fz(N * 3 * C / n);
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
    free(s->dres), free(s->dC), free(s->datt), free(s->dF), free(s->dqkv);
    if (s->experts)
        ep_moe_free(&s->moe);
}

float *tp_stack_output(const tp_stack *s, int slot)
{
    return s->slots[slot].res + (size_t)s->L * s->B * s->T * s->C;
}

// out (N, C) = all-reduce over tp of the partial product, then + bias + residual.
static void row_parallel_finish(tp_stack *s, float *out, const float *bias, const float *resid)
{
    size_t N = (size_t)s->B * s->T, C = s->C;
    tr_all_reduce(s->tp, out, N * C, TR_F32);
    for (size_t i = 0; i < N; i++)
        for (size_t c = 0; c < C; c++)
            out[i * C + c] += bias[c];
    ref_add_forward(out, out, resid, N * C);
}

void tp_stack_forward(tp_stack *s, int slot, const hg_param_table *t, float *params)
{
    tp_slot *x = &s->slots[slot];
    int N = s->B * s->T, C = s->C, Cl = C / s->tp->size, F = s->F, HD = Cl / s->NH;
    size_t nc = (size_t)N * C, ncl = (size_t)N * Cl, nf = (size_t)N * F;
    x->moe.aux = 0;
    for (int l = 0; l < s->L; l++) {
        hg_block_view w;
        hg_block_view_at(t, params, sizeof(float), l, &w);
        float *in = x->res + l * nc, *ln1 = x->ln1 + l * nc, *qkv = x->qkv + l * 3 * ncl;
        float *att = x->att + l * ncl, *res2 = x->res2 + l * nc, *ln2 = x->ln2 + l * nc;
        float *fch = x->fch + l * nf, *fchg = x->fch_gelu + l * nf;
        float *out = x->res + (l + 1) * nc;
        ref_layernorm_forward(ln1, x->ln1_mean + l * N, x->ln1_rstd + l * N, in, w.ln1_w, w.ln1_b,
                              N, C);
        ref_matmul_forward(qkv, ln1, w.qkv_w, w.qkv_b, N, C, 3 * Cl);
        ref_attention_forward(att, x->lse + (size_t)l * N * s->NH, qkv, s->B, s->T, s->NH, HD,
                              s->causal);
        ref_matmul_forward(res2, att, w.attn_proj_w, NULL, N, Cl, C);
        row_parallel_finish(s, res2, w.attn_proj_b, in);
        ref_layernorm_forward(ln2, x->ln2_mean + l * N, x->ln2_rstd + l * N, res2, w.ln2_w,
                              w.ln2_b, N, C);
        if (s->experts) {
            ep_moe_forward(&s->moe, &x->moe, l, &w, ln2, out);
            ref_add_forward(out, out, res2, nc);
        } else {
            ref_matmul_forward(fch, ln2, w.fc_w, w.fc_b, N, C, F);
            ref_gelu_forward(fchg, fch, nf);
            ref_matmul_forward(out, fchg, w.fc_proj_w, NULL, N, F, C);
            row_parallel_finish(s, out, w.fc_proj_b, res2);
        }
    }
}

void tp_stack_backward(tp_stack *s, int slot, const hg_param_table *t, float *params,
                       float *grads)
{
    tp_slot *x = &s->slots[slot];
    int N = s->B * s->T, C = s->C, Cl = C / s->tp->size, F = s->F, HD = Cl / s->NH;
    size_t nc = (size_t)N * C, ncl = (size_t)N * Cl, nf = (size_t)N * F;
    for (int l = s->L - 1; l >= 0; l--) {
        hg_block_view w, g;
        hg_block_view_at(t, params, sizeof(float), l, &w);
        hg_block_view_at(t, grads, sizeof(float), l, &g);
        float *in = x->res + l * nc, *ln1 = x->ln1 + l * nc, *qkv = x->qkv + l * 3 * ncl;
        float *att = x->att + l * ncl, *res2 = x->res2 + l * nc, *ln2 = x->ln2 + l * nc;
        float *fch = x->fch + l * nf, *fchg = x->fch_gelu + l * nf;
        // MLP: row-parallel fc_proj takes the replicated gradient as is;
        // column-parallel fc's input gradient is a partial sum over tp.
        if (s->experts) {
            ep_moe_backward(&s->moe, &x->moe, l, &w, &g, ln2, s->dres, s->dC);
        } else {
            ref_matmul_backward(s->dF, g.fc_proj_w, g.fc_proj_b, s->dres, fchg, w.fc_proj_w, N,
                                F, C);
            ref_gelu_backward(s->dF, fch, s->dF, nf);
            ref_matmul_backward(s->dC, g.fc_w, g.fc_b, s->dF, ln2, w.fc_w, N, C, F);
            tr_all_reduce(s->tp, s->dC, nc, TR_F32);
        }
        ref_layernorm_backward(s->dres, g.ln2_w, g.ln2_b, s->dC, res2, w.ln2_w,
                               x->ln2_mean + l * N, x->ln2_rstd + l * N, N, C);
        ref_matmul_backward(s->datt, g.attn_proj_w, g.attn_proj_b, s->dres, att, w.attn_proj_w,
                            N, Cl, C);
        ref_attention_backward(s->dqkv, s->datt, qkv, att, x->lse + (size_t)l * N * s->NH, s->B,
                               s->T, s->NH, HD, s->causal);
        ref_matmul_backward(s->dC, g.qkv_w, g.qkv_b, s->dqkv, ln1, w.qkv_w, N, C, 3 * Cl);
        tr_all_reduce(s->tp, s->dC, nc, TR_F32);
        ref_layernorm_backward(s->dres, g.ln1_w, g.ln1_b, s->dC, in, w.ln1_w,
                               x->ln1_mean + l * N, x->ln1_rstd + l * N, N, C);
    }
}
