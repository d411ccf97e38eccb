// Shard tables: which part of every tensor a rank holds.
#include "train/shard.h"

#include <stdio.h>
#include <string.h>

#include "model/config.h"

// Splits dimension d of tensor id into `parts` parts cut over n ranks.
static void cut(tr_shard *s, int id, int d, int parts, int n, int index)
{
    s->split[id][d] = (tr_dim_split){parts, n, index};
}

static int check_div(const char *what, int value, const char *by, int n, char *err, size_t len)
{
    if (n > 0 && value % n == 0)
        return 0;
    snprintf(err, len, "%s %d is not a multiple of %s %d; choose sizes that divide it", what,
             value, by, n);
    return -1;
}

// The local table: global shapes divided by the splits, offsets re-packed.
static void build_local(tr_shard *s, const unsigned char *present, int local_layers)
{
    hg_param_table *t = &s->local;
    *t = s->global;
    t->num_layers = local_layers;
    t->total = 0;
    for (int id = 0; id < t->num_tensors; id++) {
        hg_tensor_info *ti = &t->tensors[id];
        ti->count = present[id];
        for (int d = 0; d < ti->ndim; d++) {
            ti->shape[d] /= s->split[id][d].nshards;
            ti->count *= (size_t)ti->shape[d];
        }
        ti->offset = t->total;
        t->total += ti->count;
    }
}

int tr_shard_build(tr_shard *s, const hg_plan *plan, const hg_module_grid *grid, int rank,
                   char *err, size_t errlen)
{
    const hg_model_config *m = &plan->spec.model;
    hg_coords co;
    hg_module_coords(grid, rank, &co);
    memset(s, 0, sizeof *s);
    hg_param_table_build(&s->global, grid->id, m);
    hg_param_table *t = &s->global;
    int tp = grid->dense[HG_DIM_TP], pp = grid->dense[HG_DIM_PP], ep = grid->expert[HG_XDIM_EP];
    int llm = grid->id == HG_MODULE_LLM;
    int heads = llm ? m->num_attention_heads : m->encoder_num_attention_heads;
    int ffn = llm ? hg_ffn_size(m) : hg_encoder_ffn_size(m);
    int E = llm ? m->num_experts : 0;
    if (check_div("attention heads", heads, "tp", tp, err, errlen) ||
        check_div("ffn hidden size", ffn, "tp", tp, err, errlen) ||
        (llm && check_div("vocab size", m->vocab_size, "llm_tp", tp, err, errlen)) ||
        check_div("layers", t->num_layers, "pp", pp, err, errlen) ||
        (E && check_div("experts", E, "llm_ep", ep, err, errlen)))
        return -1;
    if (grid->expert[HG_XDIM_TP] != 1) {
        snprintf(err, errlen, "llm_expt_tp %d: expert tensor parallelism is not supported; use 1",
                 grid->expert[HG_XDIM_TP]);
        return -1;
    }
    unsigned char present[HG_MAX_TENSORS];
    for (int id = 0; id < t->num_tensors; id++) {
        present[id] = 1;
        for (int d = 0; d < 4; d++)
            cut(s, id, d, 1, 1, 0);
    }
    int b = t->first_block;
    for (int i = 0; i < HG_BLOCK_TENSORS; i++)
        cut(s, b + i, 0, 1, pp, co.pp);
    cut(s, b + HG_QKV_W, 1, 3, tp, co.tp);
    cut(s, b + HG_QKV_B, 1, 3, tp, co.tp);
    cut(s, b + HG_ATTN_PROJ_W, 2, 1, tp, co.tp);
    if (E) {
        int ids[] = {HG_FC_W, HG_FC_B, HG_FC_PROJ_W, HG_FC_PROJ_B};
        for (int i = 0; i < 4; i++) {
            cut(s, b + ids[i], 1, 1, ep, co.ep);
            s->expert[b + ids[i]] = 1;
        }
    } else {
        cut(s, b + HG_FC_W, 1, 1, tp, co.tp);
        cut(s, b + HG_FC_B, 1, 1, tp, co.tp);
        cut(s, b + HG_FC_PROJ_W, 2, 1, tp, co.tp);
    }
    if (llm) {
        int first = co.pp == 0, last = co.pp == pp - 1;
        cut(s, HG_LLM_WTE, 0, 1, tp, co.tp);
        present[HG_LLM_WTE] = first || last;
        present[HG_LLM_WPE] = first;
        present[HG_LLM_LNF_W] = present[HG_LLM_LNF_B] = last;
    }
    for (int id = 0; id < t->num_tensors; id++) {
        for (int d = 0; d < 4; d++)
            s->tp_split[id] |= !s->expert[id] && s->split[id][d].nshards > 1 && !(d == 0 && id >= b &&
                                                               id < b + HG_BLOCK_TENSORS);
        // One copy over tp (unless split), dp (expt_dp for experts), and the
        // first stage's copy of the tied embedding.
        int tp_copy = s->expert[id] || s->tp_split[id] || co.tp == 0;
        int dp_copy = s->expert[id] ? co.expt_dp == 0 : co.dp == 0;
        int stage_copy = !(llm && id == HG_LLM_WTE && co.pp != 0);
        s->owner[id] = present[id] && tp_copy && dp_copy && stage_copy;
    }
    build_local(s, present, t->num_layers / pp);
    return 0;
}

size_t tr_shard_global_index(const tr_shard *s, int id, size_t local_index)
{
    const hg_tensor_info *lt = &s->local.tensors[id], *gt = &s->global.tensors[id];
    size_t coord[4], rest = local_index, g = 0;
    for (int d = lt->ndim - 1; d >= 0; d--) {
        coord[d] = rest % (size_t)lt->shape[d];
        rest /= (size_t)lt->shape[d];
    }
    for (int d = 0; d < lt->ndim; d++) {
        const tr_dim_split *sp = &s->split[id][d];
        size_t part_size = (size_t)gt->shape[d] / sp->parts, piece = part_size / sp->nshards;
        size_t c = coord[d] / piece * part_size + sp->shard * piece + coord[d] % piece;
        g = g * (size_t)gt->shape[d] + c;
    }
    return g;
}

typedef struct {
    const tr_shard *s;
    uint64_t seed;
} init_job;

// A local element's init: the whole tensor's at its global index.
static float init_value(void *ctx, int id, size_t index)
{
    const init_job *j = ctx;
    return hg_param_init_value(&j->s->global, j->seed, id, tr_shard_global_index(j->s, id, index));
}

void tr_shard_init(const tr_shard *s, uint64_t seed, float *params)
{
    init_job j = {s, seed};
    hg_params_fill(&s->local, init_value, &j, params);
}
