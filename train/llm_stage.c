// One LLM micro-batch on one pipeline stage: the first stage embeds
// [image embeddings from the bridge, caption tokens], every stage runs its
// layers, the last stage computes the vocab-parallel head and loss.
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"
#include "model/config.h"
#include "model/data.h"
#include "train/vocab.h"
#include "train/worker_impl.h"

#define LLM(base, id) ((float *)hg_tensor_at(&w->shard.local, (base), sizeof(float), (id)))

static float *fz(size_t n) { return calloc(n + 1, sizeof(float)); }

int llm_setup(tr_worker *w)
{
    const hg_model_config *m = &w->plan.spec.model;
    int tp = w->grid->dense[HG_DIM_TP];
    size_t bt = (size_t)w->B * w->T, btc = bt * w->C;
    if (m->num_experts && bt % tp != 0)
        return -1;
    if (tp_stack_alloc(&w->stack, w->shard.local.num_layers, w->B, w->T, w->C, hg_ffn_size(m),
                       m->num_attention_heads, 1, m->num_experts, m->moe_router_topk,
                       w->g[HG_GROUP_TP], w->g[HG_GROUP_EP], w->in_flight) != 0)
        return -1;
    w->stack.moe.aux_scale = w->loss_scale;
    int bad = 0;
    for (int i = 0; i < w->in_flight; i++) {
        tr_slot *s = &w->slots[i];
        s->tokens = calloc((size_t)w->B * w->Tt, sizeof(int));
        s->targets = calloc(bt, sizeof(int));
        s->mask = fz(bt);
        bad |= !s->tokens || !s->targets || !s->mask;
        if (w->last) {
            s->lnf = fz(btc), s->lnf_mean = fz(bt), s->lnf_rstd = fz(bt);
            s->logits = fz(bt * w->Vl);
            bad |= !s->lnf || !s->lnf_mean || !s->lnf_rstd || !s->logits;
        }
    }
    w->images = fz((size_t)w->B * w->S * w->S * 3);
    w->tokens = calloc((size_t)w->B * w->Tt, sizeof(int));
    w->img = fz((size_t)w->B * w->P * w->C), w->dimg = fz((size_t)w->B * w->P * w->C);
    w->emb = fz((size_t)w->B * w->Tt * w->C), w->dsend = fz(btc), w->dlnf = fz(btc);
    w->losses = fz(bt), w->ce_scratch = fz((size_t)(tp + 3) * bt);
    return bad || !w->images || !w->tokens || !w->img || !w->dimg || !w->emb || !w->dsend ||
                   !w->dlnf || !w->losses || !w->ce_scratch
               ? -1
               : 0;
}

void llm_recvs(tr_worker *w, tr_sched_op op, int slot)
{
    size_t piece = (size_t)w->piece * w->P * w->C;
    if (op.pass == TR_FORWARD && w->first) {
        for (int q = 0; q < w->num_edges; q++)
            tr_add_op(w, w->batch, &w->nbatch, w->bridge, w->edge_peer[q], 0, w->img + q * piece,
                      piece);
    } else if (op.pass == TR_FORWARD) {
        tr_add_op(w, w->batch, &w->nbatch, w->g[HG_GROUP_PP], w->stage - 1, 0,
                  w->stack.slots[slot].res, (size_t)w->B * w->T * w->C);
    } else if (!w->last) {
        tr_add_op(w, w->batch, &w->nbatch, w->g[HG_GROUP_PP], w->stage + 1, 0, w->stack.dres,
                  (size_t)w->B * w->T * w->C);
    }
}

// res (B, T, C) = [img + wpe[0, P), wte[tokens] + wpe[P, T)] per sample.
static void embed(tr_worker *w, tr_slot *s, float *res)
{
    int B = w->B, P = w->P, T = w->T, Tt = w->Tt, C = w->C;
    const float *wpe = LLM(w->params, HG_LLM_WPE);
    tr_broadcast(w->g[HG_GROUP_TP], w->img, (size_t)B * P * C, TR_F32, 0);
    vp_embedding_forward(w->g[HG_GROUP_TP], w->emb, s->tokens, LLM(w->params, HG_LLM_WTE),
                         wpe + (size_t)P * C, B, Tt, C, w->v0, w->Vl);
    for (int b = 0; b < B; b++) {
        float *row = res + (size_t)b * T * C;
        const float *img = w->img + (size_t)b * P * C;
        for (size_t i = 0; i < (size_t)P * C; i++)
            row[i] = img[i] + wpe[i];
        memcpy(row + (size_t)P * C, w->emb + (size_t)b * Tt * C, sizeof(float) * Tt * C);
    }
}

// Next-token targets on the caption positions only, as the CPU model.
static void targets(tr_worker *w, tr_slot *s)
{
    int B = w->B, P = w->P, T = w->T, Tt = w->Tt;
    hg_caption_targets(s->tokens, B, Tt, w->tokens);
    s->count = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int target = t < P ? -1 : w->tokens[b * Tt + t - P];
            s->targets[b * T + t] = target < 0 ? 0 : target;
            s->mask[b * T + t] = target < 0 ? 0.0f : 1.0f;
            s->count += target >= 0;
        }
}

void llm_forward(tr_worker *w, int mb, int slot)
{
    tr_slot *s = &w->slots[slot];
    int N = w->B * w->T, C = w->C;
    if (w->first || w->last) // the tokens: embedded on the first stage, targets on the last
        hg_batch(w->data_seed, tr_first_sample(w, mb), w->B, w->S, w->Tt, w->images, s->tokens);
    if (w->first)
        embed(w, s, w->stack.slots[slot].res);
    tp_stack_forward(&w->stack, slot, &w->shard.local, w->params);
    float *out = tp_stack_output(&w->stack, slot);
    if (!w->last) {
        tr_add_op(w, w->pending, &w->npending, w->g[HG_GROUP_PP], w->stage + 1, 1, out,
                  (size_t)N * C);
        return;
    }
    targets(w, s);
    ref_layernorm_forward(s->lnf, s->lnf_mean, s->lnf_rstd, out, LLM(w->params, HG_LLM_LNF_W),
                          LLM(w->params, HG_LLM_LNF_B), N, C);
    ref_matmul_forward(s->logits, s->lnf, LLM(w->params, HG_LLM_WTE), NULL, N, C, w->Vl);
    vp_crossentropy(w->g[HG_GROUP_TP], s->logits, w->losses, s->targets, s->mask,
                    w->loss_scale / s->count, N, w->v0, w->Vl, w->ce_scratch);
    double sum = 0;
    for (int i = 0; i < N; i++)
        sum += w->losses[i];
    w->loss_sum += sum / s->count;
}

void llm_backward(tr_worker *w, int mb, int slot)
{
    (void)mb;
    tr_slot *s = &w->slots[slot];
    int B = w->B, P = w->P, T = w->T, Tt = w->Tt, C = w->C, N = B * T;
    tp_stack *st = &w->stack;
    if (w->last) { // the head: the logits hold their gradient since the forward
        ref_matmul_backward(w->dlnf, LLM(w->grads, HG_LLM_WTE), NULL, s->logits, s->lnf,
                            LLM(w->params, HG_LLM_WTE), N, C, w->Vl);
        tr_all_reduce(w->g[HG_GROUP_TP], w->dlnf, (size_t)N * C, TR_F32);
        memset(st->dres, 0, sizeof(float) * N * C);
        ref_layernorm_backward(st->dres, LLM(w->grads, HG_LLM_LNF_W),
                               LLM(w->grads, HG_LLM_LNF_B), w->dlnf, tp_stack_output(st, slot),
                               LLM(w->params, HG_LLM_LNF_W), s->lnf_mean, s->lnf_rstd, N, C);
    }
    tp_stack_backward(st, slot, &w->shard.local, w->params, w->grads);
    if (!w->first) {
        memcpy(w->dsend, st->dres, sizeof(float) * N * C);
        tr_add_op(w, w->pending, &w->npending, w->g[HG_GROUP_PP], w->stage - 1, 1, w->dsend,
                  (size_t)N * C);
        return;
    }
    // Image rows go back over the bridge; caption rows into the embeddings.
    float *dwpe = LLM(w->grads, HG_LLM_WPE);
    for (int b = 0; b < B; b++) {
        const float *row = st->dres + (size_t)b * T * C;
        memcpy(w->dimg + (size_t)b * P * C, row, sizeof(float) * P * C);
        memcpy(w->emb + (size_t)b * Tt * C, row + (size_t)P * C, sizeof(float) * Tt * C);
        for (size_t i = 0; i < (size_t)P * C; i++)
            dwpe[i] += row[i];
    }
    vp_embedding_backward(LLM(w->grads, HG_LLM_WTE), dwpe + (size_t)P * C, w->emb, s->tokens, B,
                          Tt, C, w->v0, w->Vl);
    size_t piece = (size_t)w->piece * P * C;
    for (int q = 0; q < w->num_edges; q++)
        tr_add_op(w, w->pending, &w->npending, w->bridge, w->edge_peer[q], 1, w->dimg + q * piece,
                  piece);
}
