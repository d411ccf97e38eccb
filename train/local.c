// Every module on one rank: a worker per module (each encoder, then the
// LLM) of a layout of one-rank groups, driven micro-batch by micro-batch
// with the bridges as local copies.
#include "train/local.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "train/checkpoint.h"
#include "train/worker_impl.h"

struct tr_local {
    const tr_ops *ops;
    hg_plan plan;
    int n;                         // modules: the encoders, then the LLM
    tr_worker *w[HG_MAX_MODULES];  // by plan index
    tr_rank_groups groups[HG_MAX_MODULES]; // each module's rank: g[0] its groups, no bridges
    tr_samples ahead; // the next micro-batch, made while the GPU works
};

// A group of one: the collectives (comm.c) only copy, in the ops' memory.
static void solo_copy(tr_group *g, void *dst, const void *src, size_t bytes)
{
    ((const tr_ops *)g->impl)->copy(dst, src, bytes);
}

static void solo_free(tr_group *g)
{
    free(g->members);
    free(g);
}

static const tr_backend solo_backend = {.copy = solo_copy, .free = solo_free};

static tr_group *solo_group(const tr_ops *ops, int rank)
{
    tr_group *g = calloc(1, sizeof *g);
    int *members = malloc(sizeof(int));
    if (!g || !members) {
        free(g), free(members);
        return NULL;
    }
    *members = rank;
    *g = (tr_group){.be = &solo_backend, .impl = (void *)ops, .size = 1, .members = members};
    if (tr_group_counts_init(g)) {
        free(g), free(members);
        return NULL;
    }
    return g;
}

static int plan_for(const hg_model_config *model, int micro_batch, int global_batch,
                    hg_plan *plan, char *err, size_t errlen)
{
    hg_layout_spec spec;
    hg_layout_spec_defaults(&spec);
    spec.encoder_tp = spec.encoder_dp = 1;
    spec.num_encoders = model->image_streams > 1 ? model->image_streams : 0;
    for (int e = 0; e < spec.num_encoders; e++)
        spec.encoders[e] = (hg_encoder_spec){.tp = 1, .dp = 1};
    for (int e = 0; e < spec.num_encoders; e++)
        snprintf(spec.encoders[e].name, sizeof spec.encoders[e].name, "encoder%d", e);
    spec.llm_tp = spec.llm_cp = spec.llm_pp = spec.llm_dp = spec.llm_ep = spec.llm_expt_tp = 1;
    spec.micro_batch_size = micro_batch, spec.global_batch_size = global_batch;
    spec.make_vocab_size_divisible_by = 1; // the model as given: callers pad (hg_padded_vocab)
    spec.model = *model;
    return hg_plan_build(&spec, plan, err, errlen);
}

tr_local *tr_local_create(const tr_ops *ops, const hg_model_config *model, int micro_batch,
                          int global_batch, uint64_t seed, char *err, size_t errlen)
{
    tr_local *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->ops = ops;
    if (plan_for(model, micro_batch, global_batch, &l->plan, err, errlen) != 0) {
        free(l);
        return NULL;
    }
    if (tr_samples_alloc(&l->ahead, model, micro_batch) != 0) {
        snprintf(err, errlen, "out of memory for a batch of %d", micro_batch);
        tr_local_free(l);
        return NULL;
    }
    l->n = l->plan.num_modules;
    for (int id = 0; id < l->n; id++) {
        const hg_module_grid *m = &l->plan.modules[id];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            if (!hg_group_applies(m, k))
                continue;
            if (!(l->groups[id].g[0][k] = solo_group(ops, m->rank_offset))) {
                snprintf(err, errlen, "out of memory for groups");
                tr_local_free(l);
                return NULL;
            }
        }
        l->w[id] = tr_worker_create_with(ops, &l->plan, m->rank_offset, &l->groups[id], seed,
                                         err, errlen);
        if (!l->w[id]) {
            tr_local_free(l);
            return NULL;
        }
        l->w[id]->ahead = &l->ahead;
    }
    return l;
}

void tr_local_free(tr_local *l)
{
    if (!l)
        return;
    for (int id = 0; id < l->n; id++) {
        tr_worker_free(l->w[id]);
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
            tr_group_free(l->groups[id].g[0][k]);
    }
    tr_samples_free(&l->ahead);
    free(l);
}

// Micro-batch after micro-batch: the encoder's forward, the LLM's forward
// and backward, the encoder's backward, each on its slot 0; then, while
// the device runs them, the next micro-batch's samples (the next step's
// first, after the last).
float tr_local_forward_backward(tr_local *l, uint64_t data_seed, int step)
{
    int E = l->n - 1;
    tr_worker *llm = l->w[E];
    const tr_ops *o = l->ops;
    size_t img = (size_t)llm->B * llm->P * llm->C * llm->es;
    for (int id = 0; id < l->n; id++)
        tr_step_begin(l->w[id], data_seed, step);
    for (int mb = 0; mb < llm->nmb; mb++) {
        for (int e = 0; e < E; e++) {
            encoder_forward(l->w[e], mb, 0);
            o->copy(llm->img + e * img, l->w[e]->slots[0].img, img);
        }
        llm_forward(llm, mb, 0);
        llm_backward(llm, mb, 0);
        for (int e = 0; e < E; e++) {
            o->copy(l->w[e]->dimg, llm->dimg + e * img, img);
            encoder_backward(l->w[e], mb, 0);
        }
        uint64_t next = mb + 1 < llm->nmb ? tr_first_sample(llm, mb + 1)
                                          : (uint64_t)(step + 1) * l->plan.spec.global_batch_size;
        tr_samples_make(&l->ahead, &l->plan.spec.model, data_seed, next);
    }
    return (float)(llm->loss_sum * llm->loss_scale);
}

float tr_local_optimizer_step(tr_local *l, const hg_optim_config *opt)
{
    float *sq = l->w[l->n - 1]->scalar, host;
    l->ops->zero(sq, sizeof(float));
    for (int id = 0; id < l->n; id++)
        tr_add_norm_squared(l->w[id], sq);
    l->ops->download(&host, sq, sizeof host);
    float norm = sqrtf(host), scale = hg_clip_scale(opt, norm);
    for (int id = 0; id < l->n; id++)
        tr_adamw_shard(l->w[id], opt, scale);
    return norm;
}

float tr_local_aux_loss(tr_local *l)
{
    tp_stack *s = &l->w[l->n - 1]->stack;
    if (!s->experts)
        return 0;
    float *aux = malloc(sizeof(float) * s->L), sum = 0;
    if (!aux)
        return NAN;
    l->ops->download(aux, s->slots[0].moe.aux, sizeof(float) * s->L);
    for (int i = 0; i < s->L; i++)
        sum += aux[i];
    free(aux);
    return sum;
}

void tr_local_routing(tr_local *l, int *topk)
{
    tp_stack *s = &l->w[l->n - 1]->stack;
    if (s->experts)
        l->ops->download(topk, s->slots[0].moe.topk,
                         sizeof(int) * s->L * s->moe.N * s->moe.K);
}

int tr_local_save(tr_local *l, const char *dir, int step, char *err, size_t errlen)
{
    return tr_checkpoint_save_all(l->w, l->n, dir, step, 1, err, errlen);
}

int tr_local_load(tr_local *l, const char *dir, int *step, char *err, size_t errlen)
{
    int generation;
    for (int id = 0; id < l->n; id++)
        if (tr_checkpoint_load(l->w[id], dir, step, &generation, err, errlen) != 0)
            return -1;
    return 0;
}

tr_worker *tr_local_worker(tr_local *l, hg_module_id module)
{
    return module == HG_MODULE_LLM ? l->w[l->n - 1] : l->w[0];
}

tr_worker *tr_local_module(tr_local *l, int index)
{
    return index >= 0 && index < l->n ? l->w[index] : NULL;
}
