// One LLM micro-batch on one pipeline stage: the first stage embeds
// [each encoder's image embeddings from its bridge, caption tokens], every stage runs its
// layers, the last stage computes the vocab-parallel head and loss on the
// caption rows only (image positions have no target: their logits would be
// masked work, e.g. 196 of small's 1024 positions).
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/data.h"
#include "train/worker_impl.h"

#define W(id) ((char *)hg_tensor_at(&w->shard.local, w->work, w->es, (id)))
#define G(id) ((float *)hg_tensor_at(&w->shard.local, w->grads, sizeof(float), (id)))

int llm_setup(tr_worker *w)
{
    const hg_model_config *m = &w->plan.spec.model;
    const tr_ops *o = w->ops;
    int tp = w->grid->dense[HG_DIM_TP];
    size_t bt = (size_t)w->B * w->T, es = w->es, btc = bt * w->C * es;
    size_t btt = (size_t)w->B * w->Tt;
    if (m->num_experts && bt % tp != 0)
        return -1;
    if (tp_stack_alloc(&w->stack, o, w->shard.local.num_layers, w->B, w->T, w->C, hg_ffn_size(m),
                       m->num_attention_heads, 1, m->num_experts, m->moe_router_topk,
                       w->g[HG_GROUP_TP], w->g[HG_GROUP_EP], w->in_flight) != 0)
        return -1;
    w->stack.moe.aux_scale = w->loss_scale;
    int bad = 0;
    for (int i = 0; i < w->in_flight; i++) {
        tr_slot *s = &w->slots[i];
        s->tokens = o->alloc(sizeof(int) * btt), s->h_tokens = calloc(btt + 1, sizeof(int));
        s->targets = o->alloc(sizeof(int) * btt), s->mask = o->alloc(sizeof(float) * btt);
        bad |= !s->tokens || !s->h_tokens || !s->targets || !s->mask;
        if (w->last) {
            s->lnf = o->alloc(btt * w->C * es);
            s->lnf_mean = o->alloc(bt * 4), s->lnf_rstd = o->alloc(bt * 4);
            s->logits = o->alloc(btt * w->Vl * es);
            bad |= !s->lnf || !s->lnf_mean || !s->lnf_rstd || !s->logits;
        }
    }
    w->images = calloc((size_t)w->B * w->S * w->S * 3 + 1, sizeof(float));
    w->tokens = calloc(btt + 1, sizeof(int));
    w->h_targets = calloc(btt + 1, sizeof(int)), w->h_mask = calloc(btt + 1, sizeof(float));
    w->h_losses = calloc(btt + 1, sizeof(float));
    size_t bpc = (size_t)w->B * w->P * w->C * es;
    w->img = o->alloc(w->E * bpc), w->img_pos = o->alloc(bpc), w->dimg = o->alloc(w->E * bpc);
    w->emb = o->alloc(btt * w->C * es), w->dsend = o->alloc(btc), w->dlnf = o->alloc(btc);
    w->losses = o->alloc(bt * 4), w->ce_scratch = o->alloc((size_t)(tp + 3) * bt * 4);
    if (w->first && vp_rows_alloc(&w->rows, o, (int)btt) != 0)
        return -1;
    void *all[] = {w->images, w->tokens, w->h_targets, w->h_mask, w->h_losses, w->img,
                   w->img_pos, w->dimg, w->emb, w->dsend, w->dlnf, w->losses, w->ce_scratch};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        bad |= !all[k];
    if (bad)
        return -1;
    if (w->last) {
        w->lnf_all = o->alloc(btc), w->dhead = o->alloc(btt * w->C * es);
        if (!w->lnf_all || !w->dhead)
            return -1;
        o->zero(w->dlnf, btc); // its image rows stay zero: the head writes caption rows only
    }
    return 0;
}

void llm_recvs(tr_worker *w, tr_sched_op op, int slot)
{
    size_t btc = (size_t)w->B * w->T * w->C;
    if (op.pass == TR_FORWARD && w->first) {
        tr_add_bridge_ops(w, w->batch, &w->nbatch, 0, w->img, (size_t)w->B * w->P * w->C * w->es);
    } else if (op.pass == TR_FORWARD) {
        tr_add_op(w, w->batch, &w->nbatch, w->g[HG_GROUP_PP], w->stage - 1, 0,
                  w->stack.slots[slot].res, btc);
    } else if (!w->last) {
        tr_add_op(w, w->batch, &w->nbatch, w->g[HG_GROUP_PP], w->stage + 1, 0, w->stack.dres,
                  btc);
    }
}

// res (B, T, C) = [img_0 + wpe[0, P), ..., img_{E-1} + wpe[(E-1) P, E P),
// wte[tokens] + wpe[E P, T)] per sample.
static void embed(tr_worker *w, tr_slot *s, char *res)
{
    const tr_ops *o = w->ops;
    int B = w->B, P = w->P, T = w->T, Tt = w->Tt, C = w->C, EP = w->E * P;
    size_t row = (size_t)C * w->es, bpc = (size_t)B * P * C;
    char *wpe = W(HG_LLM_WPE);
    tr_broadcast(w->g[HG_GROUP_TP], w->img, w->E * bpc, o->act, 0);
    tr_vocab_embedding_forward(o, w->g[HG_GROUP_TP], w->emb, s->tokens, W(HG_LLM_WTE),
                               wpe + EP * row, B, Tt, C, w->v0, w->Vl);
    for (int e = 0; e < w->E; e++) {
        o->position_embedding_forward(w->img_pos, w->img + e * bpc * w->es, wpe + e * P * row, B,
                                      P, C);
        o->copy_rows(res + e * P * row, T * row, w->img_pos, P * row, P * row, B);
    }
    o->copy_rows(res + EP * row, T * row, w->emb, Tt * row, Tt * row, B);
}

// Next-token targets of the caption rows (B, Tt), as the CPU model's.
static void targets(tr_worker *w, tr_slot *s)
{
    int n = w->B * w->Tt;
    hg_caption_targets(s->h_tokens, w->B, w->Tt, w->tokens);
    s->count = 0;
    for (int i = 0; i < n; i++) {
        int target = w->tokens[i];
        w->h_targets[i] = target < 0 ? 0 : target;
        w->h_mask[i] = target < 0 ? 0.0f : 1.0f;
        s->count += target >= 0;
    }
    w->ops->upload(s->targets, w->h_targets, sizeof(int) * n);
    w->ops->upload(s->mask, w->h_mask, sizeof(float) * n);
}

void llm_forward(tr_worker *w, int mb, int slot)
{
    const tr_ops *o = w->ops;
    tr_slot *s = &w->slots[slot];
    int N = w->B * w->T, C = w->C;
    if (w->first || w->last) { // the tokens: embedded on the first stage, targets on the last
        tr_tokens(w, mb, s->h_tokens);
        o->upload(s->tokens, s->h_tokens, sizeof(int) * w->B * w->Tt);
    }
    if (w->first)
        embed(w, s, w->stack.slots[slot].res);
    tp_stack_forward(&w->stack, slot, &w->shard.local, w->work);
    char *out = tp_stack_output(&w->stack, slot);
    if (!w->last) {
        tr_add_op(w, w->pending, &w->npending, w->g[HG_GROUP_PP], w->stage + 1, 1, out,
                  (size_t)N * C);
        return;
    }
    targets(w, s);
    int Nh = w->B * w->Tt;
    size_t row = (size_t)C * w->es;
    o->layernorm_forward(w->lnf_all, s->lnf_mean, s->lnf_rstd, out, W(HG_LLM_LNF_W),
                         W(HG_LLM_LNF_B), N, C);
    o->copy_rows(s->lnf, w->Tt * row, w->lnf_all + (size_t)w->E * w->P * row, w->T * row,
                 w->Tt * row, w->B);
    o->matmul_forward(s->logits, s->lnf, W(HG_LLM_WTE), NULL, Nh, C, w->Vl);
    tr_vocab_crossentropy(o, w->g[HG_GROUP_TP], s->logits, w->losses, s->targets, s->mask,
                          w->loss_scale / s->count, Nh, w->v0, w->Vl, w->ce_scratch);
    o->download(w->h_losses, w->losses, sizeof(float) * Nh);
    double sum = 0;
    for (int i = 0; i < Nh; i++)
        sum += w->h_losses[i];
    w->loss_sum += sum / s->count;
}

void llm_backward(tr_worker *w, int mb, int slot)
{
    (void)mb;
    const tr_ops *o = w->ops;
    o->zero_join(); // the step's gradients, zeroed during the forward
    tr_slot *s = &w->slots[slot];
    int B = w->B, P = w->P, T = w->T, Tt = w->Tt, C = w->C, N = B * T;
    size_t row = (size_t)C * w->es;
    tp_stack *st = &w->stack;
    if (w->last) { // the head: the logits hold their gradient since the forward
        o->matmul_backward(w->dhead, G(HG_LLM_WTE), NULL, s->logits, s->lnf, W(HG_LLM_WTE),
                           B * Tt, C, w->Vl);
        tr_all_reduce(w->g[HG_GROUP_TP], w->dhead, (size_t)B * Tt * C, o->act);
        o->copy_rows(w->dlnf + (size_t)w->E * P * row, T * row, w->dhead, Tt * row, Tt * row, B);
        o->zero(st->dres, N * row);
        o->layernorm_backward(st->dres, G(HG_LLM_LNF_W), G(HG_LLM_LNF_B), NULL, w->dlnf,
                              tp_stack_output(st, slot), W(HG_LLM_LNF_W), s->lnf_mean,
                              s->lnf_rstd, N, C);
    }
    tp_stack_backward(st, slot, &w->shard.local, w->work, w->grads);
    if (!w->first) {
        o->copy(w->dsend, st->dres, N * row);
        tr_add_op(w, w->pending, &w->npending, w->g[HG_GROUP_PP], w->stage - 1, 1, w->dsend,
                  (size_t)N * C);
        return;
    }
    // Each encoder's image rows go back over its bridge; caption rows into
    // the embeddings.
    float *dwpe = G(HG_LLM_WPE);
    int EP = w->E * P;
    size_t bpc = (size_t)B * P * C * w->es;
    for (int e = 0; e < w->E; e++) {
        char *dimg = w->dimg + e * bpc;
        o->copy_rows(dimg, P * row, st->dres + e * P * row, T * row, P * row, B);
        o->position_embedding_backward(dwpe + (size_t)e * P * C, dimg, B, P, C);
    }
    o->copy_rows(w->emb, Tt * row, st->dres + EP * row, T * row, Tt * row, B);
    tr_vocab_embedding_backward(o, w->g[HG_GROUP_TP], &w->rows, G(HG_LLM_WTE),
                                dwpe + (size_t)EP * C, w->emb, s->tokens, s->h_tokens, B, Tt, C,
                                w->v0, w->Vl);
    tr_add_bridge_ops(w, w->pending, &w->npending, 1, w->dimg, bpc);
}
