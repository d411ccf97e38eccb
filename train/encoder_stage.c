// One encoder micro-batch (no pipeline): patch embedding, positions, the
// tp blocks, final LayerNorm and the projection to the LLM's width, whose
// output the dp lane's leader sends over its bridge (or, colocated, the
// re-sharding hands to the LLM).
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "train/worker_impl.h"

#define W(id) hg_tensor_at(&w->shard.local, w->work, w->es, (id))
#define G(id) ((float *)hg_tensor_at(&w->shard.local, w->grads, sizeof(float), (id)))

int encoder_setup(tr_worker *w)
{
    const hg_model_config *m = &w->plan.spec.model;
    const tr_ops *o = w->ops;
    size_t bp = (size_t)w->B * w->P, es = w->es;
    if (tp_stack_alloc(&w->stack, o, w->shard.local.num_layers, w->B, w->P, w->Ce,
                       hg_encoder_ffn_size(m), m->encoder_num_attention_heads, 0, 0, 0,
                       w->g[HG_GROUP_TP], NULL, w->in_flight) != 0)
        return -1;
    int bad = 0;
    for (int i = 0; i < w->in_flight; i++) {
        tr_slot *s = &w->slots[i];
        s->patches = o->alloc(bp * w->D * es);
        s->lnf = o->alloc(bp * w->Ce * es);
        s->lnf_mean = o->alloc(bp * 4), s->lnf_rstd = o->alloc(bp * 4);
        s->img = o->alloc(bp * w->C * es);
        bad |= !s->patches || !s->lnf || !s->lnf_mean || !s->lnf_rstd || !s->img;
    }
    w->images = calloc(bp / w->P * w->S * w->S * 3 + 1, sizeof(float));
    w->h_patches = calloc(bp * w->D + 1, sizeof(float));
    w->patches_f32 = o->alloc(bp * w->D * 4);
    w->tokens = calloc((size_t)w->B * w->Tt + 1, sizeof(int));
    w->dimg = o->alloc(bp * w->C * es), w->dlnf = o->alloc(bp * w->Ce * es);
    return bad || !w->images || !w->h_patches || !w->patches_f32 || !w->tokens || !w->dimg ||
                   !w->dlnf
               ? -1
               : 0;
}

void encoder_recvs(tr_worker *w, tr_sched_op op, int slot)
{
    (void)slot;
    if (op.pass == TR_BACKWARD)
        tr_add_bridge_ops(w, w->batch, &w->nbatch, 0, w->dimg, 0);
}

void encoder_forward(tr_worker *w, int mb, int slot)
{
    const tr_ops *o = w->ops;
    tr_slot *s = &w->slots[slot];
    int B = w->B, P = w->P, Ce = w->Ce, N = B * P;
    char *res = w->stack.slots[slot].res;
    o->upload(w->patches_f32, tr_patches(w, mb), sizeof(float) * N * w->D);
    o->to_act(s->patches, w->patches_f32, (size_t)N * w->D);
    o->matmul_forward(res, s->patches, W(HG_ENC_PATCH_W), W(HG_ENC_PATCH_B), N, w->D, Ce);
    o->position_embedding_forward(res, res, W(HG_ENC_POS), B, P, Ce);
    tp_stack_forward(&w->stack, slot, &w->shard.local, w->work);
    o->layernorm_forward(s->lnf, s->lnf_mean, s->lnf_rstd, tp_stack_output(&w->stack, slot),
                         W(HG_ENC_LNF_W), W(HG_ENC_LNF_B), N, Ce);
    o->matmul_forward(s->img, s->lnf, W(HG_ENC_PROJ_W), W(HG_ENC_PROJ_B), N, Ce, w->C);
    tr_add_bridge_ops(w, w->pending, &w->npending, 1, s->img, 0);
}

void encoder_backward(tr_worker *w, int mb, int slot)
{
    (void)mb;
    const tr_ops *o = w->ops;
    o->zero_join(); // the step's gradients, zeroed during the forward
    tr_slot *s = &w->slots[slot];
    int B = w->B, P = w->P, Ce = w->Ce, N = B * P;
    tp_stack *st = &w->stack;
    tr_broadcast(w->g[HG_GROUP_TP], w->dimg, (size_t)N * w->C, o->act, 0);
    o->matmul_backward(w->dlnf, G(HG_ENC_PROJ_W), G(HG_ENC_PROJ_B), w->dimg, s->lnf,
                       W(HG_ENC_PROJ_W), N, Ce, w->C);
    o->zero(st->dres, w->es * N * Ce);
    o->layernorm_backward(st->dres, G(HG_ENC_LNF_W), G(HG_ENC_LNF_B), NULL, w->dlnf,
                          tp_stack_output(st, slot), W(HG_ENC_LNF_W), s->lnf_mean, s->lnf_rstd, N,
                          Ce);
    tp_stack_backward(st, slot, &w->shard.local, w->work, w->grads);
    o->position_embedding_backward(G(HG_ENC_POS), st->dres, B, P, Ce);
    o->matmul_backward(NULL, G(HG_ENC_PATCH_W), G(HG_ENC_PATCH_B), st->dres, s->patches,
                       W(HG_ENC_PATCH_W), N, w->D, Ce);
}
