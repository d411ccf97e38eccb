// One encoder micro-batch (no pipeline): patch embedding, positions, the
// tp blocks, final LayerNorm and the projection to the LLM's width, whose
// output the dp lane's leader sends over the bridge.
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"
#include "model/config.h"
#include "model/data.h"
#include "train/worker_impl.h"

#define ENC(base, id) ((float *)hg_tensor_at(&w->shard.local, (base), sizeof(float), (id)))

static float *fz(size_t n) { return calloc(n + 1, sizeof(float)); }

int encoder_setup(tr_worker *w)
{
    const hg_model_config *m = &w->plan.spec.model;
    size_t bp = (size_t)w->B * w->P;
    if (tp_stack_alloc(&w->stack, w->shard.local.num_layers, w->B, w->P, w->Ce,
                       hg_encoder_ffn_size(m), m->encoder_num_attention_heads, 0, 0, 0,
                       w->g[HG_GROUP_TP], NULL, w->in_flight) != 0)
        return -1;
    int bad = 0;
    for (int i = 0; i < w->in_flight; i++) {
        tr_slot *s = &w->slots[i];
        s->patches = fz(bp * w->D);
        s->lnf = fz(bp * w->Ce), s->lnf_mean = fz(bp), s->lnf_rstd = fz(bp);
        s->img = fz(bp * w->C);
        bad |= !s->patches || !s->lnf || !s->lnf_mean || !s->lnf_rstd || !s->img;
    }
    w->images = fz(bp / w->P * w->S * w->S * 3);
    w->tokens = calloc((size_t)w->B * w->Tt, sizeof(int));
    w->dimg = fz(bp * w->C), w->dlnf = fz(bp * w->Ce);
    return bad || !w->images || !w->tokens || !w->dimg || !w->dlnf ? -1 : 0;
}

void encoder_recvs(tr_worker *w, tr_sched_op op, int slot)
{
    (void)slot;
    size_t piece = (size_t)w->piece * w->P * w->C;
    if (op.pass == TR_BACKWARD)
        for (int q = 0; q < w->num_edges; q++)
            tr_add_op(w, w->batch, &w->nbatch, w->bridge, w->edge_peer[q], 0, w->dimg + q * piece,
                      piece);
}

void encoder_forward(tr_worker *w, int mb, int slot)
{
    tr_slot *s = &w->slots[slot];
    int B = w->B, P = w->P, Ce = w->Ce, N = B * P;
    float *res = w->stack.slots[slot].res;
    hg_batch(w->data_seed, tr_first_sample(w, mb), B, w->S, w->Tt, w->images, w->tokens);
    hg_patchify(w->images, B, w->S, w->plan.spec.model.patch_size, s->patches);
    ref_matmul_forward(res, s->patches, ENC(w->params, HG_ENC_PATCH_W),
                       ENC(w->params, HG_ENC_PATCH_B), N, w->D, Ce);
    ref_position_embedding_forward(res, res, ENC(w->params, HG_ENC_POS), B, P, Ce);
    tp_stack_forward(&w->stack, slot, &w->shard.local, w->params);
    ref_layernorm_forward(s->lnf, s->lnf_mean, s->lnf_rstd, tp_stack_output(&w->stack, slot),
                          ENC(w->params, HG_ENC_LNF_W), ENC(w->params, HG_ENC_LNF_B), N, Ce);
    ref_matmul_forward(s->img, s->lnf, ENC(w->params, HG_ENC_PROJ_W),
                       ENC(w->params, HG_ENC_PROJ_B), N, Ce, w->C);
    size_t piece = (size_t)w->piece * P * w->C;
    for (int q = 0; q < w->num_edges; q++)
        tr_add_op(w, w->pending, &w->npending, w->bridge, w->edge_peer[q], 1, s->img + q * piece,
                  piece);
}

void encoder_backward(tr_worker *w, int mb, int slot)
{
    (void)mb;
    tr_slot *s = &w->slots[slot];
    int B = w->B, P = w->P, Ce = w->Ce, N = B * P;
    tp_stack *st = &w->stack;
    tr_broadcast(w->g[HG_GROUP_TP], w->dimg, (size_t)N * w->C, TR_F32, 0);
    ref_matmul_backward(w->dlnf, ENC(w->grads, HG_ENC_PROJ_W), ENC(w->grads, HG_ENC_PROJ_B),
                        w->dimg, s->lnf, ENC(w->params, HG_ENC_PROJ_W), N, Ce, w->C);
    memset(st->dres, 0, sizeof(float) * N * Ce);
    ref_layernorm_backward(st->dres, ENC(w->grads, HG_ENC_LNF_W), ENC(w->grads, HG_ENC_LNF_B),
                           w->dlnf, tp_stack_output(st, slot), ENC(w->params, HG_ENC_LNF_W),
                           s->lnf_mean, s->lnf_rstd, N, Ce);
    tp_stack_backward(st, slot, &w->shard.local, w->params, w->grads);
    ref_position_embedding_backward(ENC(w->grads, HG_ENC_POS), st->dres, B, P, Ce);
    ref_matmul_backward(NULL, ENC(w->grads, HG_ENC_PATCH_W), ENC(w->grads, HG_ENC_PATCH_B),
                        st->dres, s->patches, ENC(w->params, HG_ENC_PATCH_W), N, w->D, Ce);
}
