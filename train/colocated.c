// A colocated rank's step: its encoder and LLM parts micro-batch by
// micro-batch, the hand-off a re-sharding between the encoder's dp lanes
// and the LLM's on the same ranks (llm pp is 1: no pipeline). Ranks are
// tp-fastest in both grids, so with k = max(dp) / min(dp) a lane of the
// module with fewer lanes holds exactly k lanes of the other: the shard
// a rank needs is on its own GPU (a local copy) except when the wider
// lane gathers it, by a sum over that lane's tp group where each lane's
// tp rank 0 puts its rows and the others zeros.
#include <string.h>

#include "train/worker_impl.h"

// Bytes of that many samples' (P, C) image embeddings.
static size_t rows_bytes(const tr_worker *w, int samples)
{
    return (size_t)samples * w->P * w->C * w->es;
}

// dst (wide lane's samples) from each narrow lane's src over the wide
// module's tp group: narrow lane `lane` of this rank sits at index
// lane % k of the wide lane; `puts` where this rank is its narrow lane's
// tp rank 0.
static void gather_lanes(tr_worker *wide, char *dst, const char *src, int narrow_B, int k,
                         int lane, int puts)
{
    const tr_ops *o = wide->ops;
    size_t piece = rows_bytes(wide, narrow_B);
    o->zero(dst, piece * k);
    if (puts)
        o->copy(dst + (lane % k) * piece, src, piece);
    tr_all_reduce(wide->g[HG_GROUP_TP], dst, piece * k / wide->es, o->act);
}

// The encoder's image embeddings of this rank's encoder lane into the
// LLM's buffer of its LLM lane.
static void hand_forward(tr_worker *enc, tr_worker *llm)
{
    int edp = enc->grid->dense[HG_DIM_DP], ldp = llm->grid->dense[HG_DIM_DP];
    const char *img = enc->slots[0].img;
    if (edp == ldp)
        enc->ops->copy(llm->img, img, rows_bytes(llm, llm->B));
    else if (edp < ldp) // the encoder's lane holds k LLM lanes: this one's rows are here
        enc->ops->copy(llm->img, img + (llm->co.dp % (ldp / edp)) * rows_bytes(llm, llm->B),
                       rows_bytes(llm, llm->B));
    else
        gather_lanes(llm, llm->img, img, enc->B, edp / ldp, enc->co.dp, enc->co.tp == 0);
}

// The reverse: the LLM's gradient of the image embeddings into the encoder.
static void hand_backward(tr_worker *llm, tr_worker *enc)
{
    int edp = enc->grid->dense[HG_DIM_DP], ldp = llm->grid->dense[HG_DIM_DP];
    if (edp == ldp)
        enc->ops->copy(enc->dimg, llm->dimg, rows_bytes(enc, enc->B));
    else if (edp > ldp) // the LLM's lane holds k encoder lanes: this one's rows are here
        enc->ops->copy(enc->dimg, llm->dimg + (enc->co.dp % (edp / ldp)) * rows_bytes(enc, enc->B),
                       rows_bytes(enc, enc->B));
    else
        gather_lanes(enc, enc->dimg, llm->dimg, llm->B, ldp / edp, llm->co.dp, llm->co.tp == 0);
}

float tr_colocated_forward_backward(tr_worker *enc, uint64_t data_seed, int step)
{
    tr_worker *llm = enc->colo;
    tr_step_begin(enc, data_seed, step);
    tr_step_begin(llm, data_seed, step);
    for (int mb = 0; mb < llm->nmb; mb++) {
        int last = mb == llm->nmb - 1; // its backward makes the gradients final
        encoder_forward(enc, mb, 0);
        hand_forward(enc, llm);
        llm_forward(llm, mb, 0);
        tr_overlap_hook(llm, last);
        llm_backward(llm, mb, 0);
        tr_overlap_hook(llm, 0);
        hand_backward(llm, enc);
        tr_overlap_hook(enc, last);
        encoder_backward(enc, mb, 0);
        tr_overlap_hook(enc, 0);
    }
    tr_step_finish(enc);
    return tr_step_finish(llm);
}
