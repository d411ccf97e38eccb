// A rank's training worker: setup from the layout, the step's schedule
// with fused point-to-point batches, gradient reduction and the optimizer.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/rng.h"
#include "train/worker_impl.h"

void tr_add_op(tr_worker *w, tr_p2p_op *list, int *n, tr_group *g, int peer, int is_send,
               void *buf, size_t count)
{
    if (*n == TR_MAX_P2P) { // bounded by the bridge's fan-in/out, which setup checks
        fprintf(stderr, "rank %d: more than %d transfers in one batch\n", w->rank, TR_MAX_P2P);
        abort();
    }
    list[(*n)++] = (tr_p2p_op){g, peer, is_send, buf, count};
}

void tr_add_bridge_ops(tr_worker *w, tr_p2p_op *list, int *n, int is_send, char *buf,
                       size_t stride)
{
    for (int b = 0; b < w->plan.num_encoders; b++) {
        size_t piece = (size_t)w->piece[b] * w->P * w->C;
        char *part = buf + (w->llm ? b * stride : 0);
        for (int q = 0; q < w->num_edges[b]; q++)
            tr_add_op(w, list, n, w->bridge[b], w->edge_peer[b][q], is_send,
                      part + q * piece * w->es, piece);
    }
}

uint64_t tr_first_sample(const tr_worker *w, int mb)
{
    const hg_layout_spec *sp = &w->plan.spec;
    int llm_dp = hg_plan_module(&w->plan, HG_MODULE_LLM)->dense[HG_DIM_DP];
    return (uint64_t)w->step * sp->global_batch_size +
           (uint64_t)mb * sp->micro_batch_size * llm_dp + (uint64_t)w->co.dp * w->B;
}

static int fail(char *err, size_t len, const char *msg, int rank)
{
    snprintf(err, len, "rank %d: %s", rank, msg);
    return -1;
}

// This leader's edges of each bridge it is in, in hg_bridge_edge order.
static int bridge_setup(tr_worker *w, char *err, size_t len)
{
    for (int b = 0; b < w->plan.num_encoders; b++) {
        if (!w->bridge[b])
            continue;
        hg_bridge_peer peers[TR_MAX_EDGES];
        int n = hg_bridge_peers(&w->plan, b, w->rank, peers, TR_MAX_EDGES);
        if (n > TR_MAX_EDGES)
            return fail(err, len, "a bridge fan-in/out above 64 is not supported", w->rank);
        for (int e = 0; e < n; e++)
            w->edge_peer[b][e] = peers[e].rank_in_bridge;
        w->num_edges[b] = n;
    }
    return 0;
}

// Samples per micro-batch of module m: the LLM's micro-batch, or an
// encoder's share of the LLM's dp lanes' (as its bridge or re-sharding
// hands them over).
static int module_batch(const hg_plan *plan, const hg_module_grid *m)
{
    int mbs = plan->spec.micro_batch_size;
    int llm_dp = hg_plan_module(plan, HG_MODULE_LLM)->dense[HG_DIM_DP];
    return m->id == HG_MODULE_LLM ? mbs : mbs * llm_dp / m->dense[HG_DIM_DP];
}

static int setup(tr_worker *w, const hg_module_grid *grid, tr_group *const groups[],
                 tr_group *const bridges[], uint64_t seed, char *err, size_t len)
{
    const hg_plan *plan = &w->plan;
    const hg_model_config *m = &plan->spec.model;
    const hg_module_grid *llm = hg_plan_module(plan, HG_MODULE_LLM);
    w->grid = grid;
    w->llm = w->grid->id == HG_MODULE_LLM;
    w->encoder = w->llm ? -1 : grid->index;
    hg_module_coords(grid, w->rank, &w->co);
    memcpy(w->g, groups, sizeof w->g);
    for (int b = 0; b < plan->num_encoders && !plan->colocated; b++)
        w->bridge[b] = w->llm || b == w->encoder ? bridges[b] : NULL;
    if (!w->g[HG_GROUP_TP] || !w->g[HG_GROUP_DP_CP] || !w->g[HG_GROUP_MODULE] ||
        (w->llm && (!w->g[HG_GROUP_PP] || !w->g[HG_GROUP_EP] || !w->g[HG_GROUP_EXPT_DP])))
        return fail(err, len, "a tp, dp_cp, module, pp, ep or expt_dp group is missing", w->rank);
    if (tr_shard_build(&w->shard, plan, grid, w->rank, err, len) != 0)
        return -1;
    const tr_ops *o = w->ops;
    size_t n = w->shard.local.total, bytes = n * sizeof(float);
    w->params = o->alloc(bytes), w->grads = o->alloc(bytes);
    w->m = o->alloc(bytes), w->v = o->alloc(bytes), w->scalar = o->alloc(2 * sizeof(float));
    w->work = o->act == TR_F32 ? (void *)w->params : o->alloc(n * w->es);
    float *host = malloc(bytes + sizeof(float));
    if (!w->params || !w->grads || !w->m || !w->v || !w->scalar || !w->work || !host) {
        free(host);
        return fail(err, len, "out of memory for the parameter shard", w->rank);
    }
    tr_shard_init(&w->shard, w->llm ? seed : hg_encoder_seed(seed, w->encoder), host);
    o->upload(w->params, host, bytes);
    free(host);
    tr_refresh_work(w);

    int mbs = plan->spec.micro_batch_size, llm_dp = llm->dense[HG_DIM_DP];
    w->nmb = plan->num_microbatches;
    w->P = hg_num_patches(m), w->T = m->seq_length, w->Tt = hg_text_len(m);
    w->E = w->llm ? hg_image_streams(m) : 1;
    w->C = m->hidden_size, w->Ce = m->encoder_hidden_size, w->D = hg_patch_dim(m);
    w->S = m->image_size, w->V = m->vocab_size;
    w->Vl = w->V / llm->dense[HG_DIM_TP], w->v0 = w->co.tp * w->Vl;
    w->pp = llm->dense[HG_DIM_PP];
    w->stage = w->llm ? w->co.pp : 0;
    w->first = w->stage == 0, w->last = w->llm && w->stage == w->pp - 1;
    w->B = module_batch(plan, grid);
    for (int b = 0; b < plan->num_encoders; b++) {
        int enc_B = module_batch(plan, &plan->modules[b]);
        w->piece[b] = enc_B < mbs ? enc_B : mbs;
    }
    w->loss_scale = 1.0f / (float)(w->nmb * llm_dp);
    // With a bridge the encoder is one more pipeline stage before the
    // LLM's: it runs ahead by the LLM's depth, so that it computes the next
    // micro-batches while the LLM works on the first.
    int bridged = hg_plan_has_bridge(plan);
    int stages = w->pp + bridged, stage = w->llm ? w->stage + bridged : 0;
    w->in_flight = tr_schedule_in_flight(stages, stage, w->nmb);
    w->sched = calloc(2 * (size_t)w->nmb, sizeof *w->sched);
    w->slots = calloc(w->in_flight, sizeof *w->slots);
    if (!w->sched || !w->slots)
        return fail(err, len, "out of memory", w->rank);
    tr_schedule_1f1b(stages, stage, w->nmb, w->sched);
    if (bridge_setup(w, err, len) != 0)
        return -1;
    if ((w->llm ? llm_setup : encoder_setup)(w) != 0)
        return fail(err, len,
                    "out of memory for activations, or B * seq_length not a multiple of llm_tp "
                    "with experts",
                    w->rank);
    return 0;
}

void tr_release(const tr_worker *w, void *p)
{
    if (p)
        w->ops->release(p);
}

void tr_refresh_work(tr_worker *w)
{
    if (w->work != (void *)w->params)
        w->ops->to_act(w->work, w->params, w->shard.local.total);
}

// NCCL connects a point-to-point channel on its first use, and a batch
// holding a first receive waits until the peer's first send connects it.
// The step's batches pair a send one way with a receive the other way,
// so the first step would deadlock: the sender's batch waits for a
// connection that its peer makes only after receiving. One symmetric
// exchange with every peer (bridge edges, pipeline neighbours), at the
// step's sizes, connects both directions on both sides first (in the
// first step: creating a worker involves no other rank).
static void connect_peers(tr_worker *w)
{
    size_t btc = (size_t)w->B * w->T * w->C, stride = (size_t)w->B * w->P * w->C * w->es;
    char *send = w->llm ? w->dimg : w->slots[0].img, *recv = w->llm ? w->img : w->dimg;
    w->nbatch = 0;
    for (int b = 0; b < w->plan.num_encoders; b++) { // each edge's send, then its receive
        size_t piece = (size_t)w->piece[b] * w->P * w->C;
        size_t at = w->llm ? b * stride : 0;
        for (int q = 0; q < w->num_edges[b]; q++) {
            tr_add_op(w, w->batch, &w->nbatch, w->bridge[b], w->edge_peer[b][q], 1,
                      send + at + q * piece * w->es, piece);
            tr_add_op(w, w->batch, &w->nbatch, w->bridge[b], w->edge_peer[b][q], 0,
                      recv + at + q * piece * w->es, piece);
        }
    }
    if (w->llm && !w->first) {
        tr_add_op(w, w->batch, &w->nbatch, w->g[HG_GROUP_PP], w->stage - 1, 1, w->dsend, btc);
        tr_add_op(w, w->batch, &w->nbatch, w->g[HG_GROUP_PP], w->stage - 1, 0,
                  w->stack.slots[0].res, btc);
    }
    if (w->llm && !w->last) {
        tr_add_op(w, w->batch, &w->nbatch, w->g[HG_GROUP_PP], w->stage + 1, 1, w->dsend, btc);
        tr_add_op(w, w->batch, &w->nbatch, w->g[HG_GROUP_PP], w->stage + 1, 0, w->stack.dres,
                  btc);
    }
    tr_p2p(w->batch, w->nbatch, w->ops->act);
    w->nbatch = 0;
}

// The part of module `module` (plan index) on rank.
void tr_plan_as_trained(hg_plan *plan)
{
    if (plan->padded_vocab_size > plan->spec.model.vocab_size)
        plan->spec.model.vocab_size = plan->padded_vocab_size;
}

static tr_worker *part_create(const tr_ops *ops, const hg_plan *plan, int module, int rank,
                              tr_group *const groups[], tr_group *const bridges[],
                              uint64_t seed, char *err, size_t errlen)
{
    tr_worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "rank %d: out of memory", rank);
        return NULL;
    }
    w->ops = ops;
    w->es = tr_ops_es(ops);
    w->plan = *plan;
    tr_plan_as_trained(&w->plan);
    w->rank = rank;
    if (setup(w, &w->plan.modules[module], groups, bridges, seed, err, errlen) != 0) {
        tr_worker_free(w);
        return NULL;
    }
    return w;
}

tr_worker *tr_worker_create_with(const tr_ops *ops, const hg_plan *plan, int rank,
                                 const tr_rank_groups *groups, uint64_t seed, char *err,
                                 size_t errlen)
{
    const hg_module_grid *mods[2];
    int n = hg_plan_modules_of_rank(plan, rank, mods);
    if (n == 0) {
        snprintf(err, errlen, "rank %d is outside the layout's %d ranks", rank, plan->world_size);
        return NULL;
    }
    tr_worker *w = part_create(ops, plan, mods[0]->index, rank, groups->g[0], groups->bridge,
                               seed, err, errlen);
    if (w && n == 2 &&
        !(w->colo = part_create(ops, plan, mods[1]->index, rank, groups->g[1], groups->bridge,
                                seed, err, errlen))) {
        tr_worker_free(w);
        return NULL;
    }
    return w;
}

tr_worker *tr_worker_create(const hg_plan *plan, int rank, const tr_rank_groups *groups,
                            uint64_t seed, char *err, size_t errlen)
{
    return tr_worker_create_with(&tr_cpu_ops, plan, rank, groups, seed, err, errlen);
}

void tr_worker_free(tr_worker *w)
{
    if (!w)
        return;
    tr_worker_free(w->colo);
    if (w->stack.slots || w->stack.dres)
        tp_stack_free(&w->stack);
    for (int i = 0; w->slots && i < w->in_flight; i++) {
        tr_slot *s = &w->slots[i];
        void *dev[] = {s->patches, s->lnf, s->lnf_mean, s->lnf_rstd, s->img, s->tokens,
                       s->targets, s->mask, s->logits};
        for (size_t k = 0; k < sizeof dev / sizeof dev[0]; k++)
            tr_release(w, dev[k]);
        free(s->h_tokens);
    }
    if (w->work != (void *)w->params)
        tr_release(w, w->work);
    if (w->rows.h_rows)
        vp_rows_free(&w->rows, w->ops);
    void *dev[] = {w->params, w->grads, w->m, w->v, w->scalar, w->patches_f32, w->img,
                   w->img_pos, w->dimg, w->emb, w->dsend, w->dlnf, w->lnf_all, w->dhead,
                   w->losses, w->ce_scratch};
    for (size_t k = 0; k < sizeof dev / sizeof dev[0]; k++)
        tr_release(w, dev[k]);
    void *host[] = {w->sched, w->slots, w->images, w->h_patches, w->tokens, w->h_targets,
                    w->h_mask, w->h_losses};
    for (size_t k = 0; k < sizeof host / sizeof host[0]; k++)
        free(host[k]);
    free(w);
}

// The group that sums tensor id's gradient over its data-parallel copies.
static tr_group *reducer(const tr_worker *w, int id)
{
    return w->shard.expert[id] ? w->g[HG_GROUP_EXPT_DP] : w->g[HG_GROUP_DP_CP];
}

// Block tensors with at least this many elements per layer are reduced
// layer by layer with dp_overlap; smaller ones (gains, biases) would cost
// more in calls than they move, and go whole after the backward.
#define OVERLAP_MIN_ELEMS 16384

static int reduced_by_layer(const tr_worker *w, int id)
{
    const hg_param_table *t = &w->shard.local;
    return w->dp_overlap && id >= t->first_block && id < t->first_block + HG_BLOCK_TENSORS &&
           t->tensors[id].count / t->num_layers >= OVERLAP_MIN_ELEMS;
}

// Layer l's gradients are final (called during the step's last backward):
// the large ones' reduction starts now, beside the backward of the layers
// below.
static void reduce_layer(void *ctx, int l)
{
    tr_worker *w = ctx;
    const hg_param_table *t = &w->shard.local;
    for (int id = t->first_block; id < t->first_block + HG_BLOCK_TENSORS; id++) {
        size_t per_layer = t->tensors[id].count / t->num_layers;
        if (reduced_by_layer(w, id))
            tr_all_reduce(reducer(w, id), w->grads + t->tensors[id].offset + l * per_layer,
                          per_layer, TR_F32);
    }
}

// Sums the other gradients over their data-parallel copies, waits for all
// of them, and sums the tied embedding's over the first and last stage.
static void reduce_grads(tr_worker *w)
{
    const hg_param_table *t = &w->shard.local;
    for (int id = 0; id < t->num_tensors; id++) {
        const hg_tensor_info *ti = &t->tensors[id];
        if (ti->count && !reduced_by_layer(w, id))
            tr_all_reduce(reducer(w, id), w->grads + ti->offset, ti->count, TR_F32);
    }
    tr_group_join(w->g[HG_GROUP_DP_CP]);
    if (w->g[HG_GROUP_EXPT_DP])
        tr_group_join(w->g[HG_GROUP_EXPT_DP]);
    if (w->llm && w->pp > 1) {
        const hg_tensor_info *wte = &t->tensors[HG_LLM_WTE];
        tr_all_reduce(w->g[HG_GROUP_EMBD], w->grads + wte->offset, wte->count, TR_F32);
    }
}

void tr_worker_set_dp_overlap(tr_worker *w, int on)
{
    w->dp_overlap = on;
    if (w->colo)
        w->colo->dp_overlap = on;
}

void tr_overlap_hook(tr_worker *w, int on)
{
    w->stack.layer_done = on && w->dp_overlap ? reduce_layer : NULL;
    w->stack.layer_ctx = w;
}

void tr_step_begin(tr_worker *w, uint64_t data_seed, int step)
{
    w->data_seed = data_seed;
    w->step = step;
    w->loss_sum = 0;
    // 5.5 GB at 1b: beside the forward pass, which never touches them
    w->ops->zero_aside(w->grads, sizeof(float) * w->shard.local.total);
}

float tr_worker_forward_backward(tr_worker *w, uint64_t data_seed, int step)
{
    if (w->colo)
        return tr_colocated_forward_backward(w, data_seed, step);
    if (!w->peers_connected) { // the first step, where every rank is
        connect_peers(w);
        w->peers_connected = 1;
    }
    tr_step_begin(w, data_seed, step);
    for (int i = 0; i < 2 * w->nmb; i++) {
        tr_sched_op op = w->sched[i];
        int slot = op.microbatch % w->in_flight;
        // Last op's sends and this op's receives go in one batch, so that
        // neighbours sending to each other cannot deadlock.
        memcpy(w->batch, w->pending, sizeof(tr_p2p_op) * w->npending);
        w->nbatch = w->npending;
        w->npending = 0;
        (w->llm ? llm_recvs : encoder_recvs)(w, op, slot);
        tr_p2p(w->batch, w->nbatch, w->ops->act);
        tr_overlap_hook(w, i == 2 * w->nmb - 1); // the last op: gradients become final
        if (op.pass == TR_FORWARD)
            (w->llm ? llm_forward : encoder_forward)(w, op.microbatch, slot);
        else
            (w->llm ? llm_backward : encoder_backward)(w, op.microbatch, slot);
        tr_overlap_hook(w, 0);
    }
    tr_p2p(w->pending, w->npending, w->ops->act);
    w->npending = 0;
    return tr_step_finish(w);
}

float tr_step_finish(tr_worker *w)
{
    w->ops->zero_join(); // a stage that ran no backward still hands zeros on
    reduce_grads(w);
    if (!w->last)
        return 0;
    float loss = (float)w->loss_sum;
    w->ops->upload(w->scalar, &loss, sizeof loss);
    tr_all_reduce(w->g[HG_GROUP_DP_CP], w->scalar, 1, TR_F32);
    tr_group_join(w->g[HG_GROUP_DP_CP]); // its operations may run beside the compute stream
    w->ops->download(&loss, w->scalar, sizeof loss);
    return loss * w->loss_scale;
}

void tr_across_modules(tr_worker *w, void *x, void *scratch, size_t n, tr_dtype t)
{
    const hg_plan *p = &w->plan;
    if (!hg_plan_has_bridge(p))
        return;
    int leader0 = hg_module_bridge_leader(w->grid, 0);
    size_t bytes = n * tr_dtype_size(t);
    // The LLM's lane-0 leader adds each encoder's, bridge by bridge; then
    // hands the total back over each bridge.
    for (int phase = 0; phase < 2; phase++)
        for (int b = 0; b < p->num_encoders; b++) {
            if (!w->bridge[b])
                continue;
            int contributes = w->rank == leader0 && (phase == 0 || w->llm);
            if (contributes)
                w->ops->copy(scratch, x, bytes);
            else
                w->ops->zero(scratch, bytes);
            tr_all_reduce(w->bridge[b], scratch, n, t);
            if (w->rank == leader0 && (w->llm ? phase == 0 : phase == 1))
                w->ops->copy(x, scratch, bytes);
        }
    tr_broadcast(w->g[HG_GROUP_MODULE], x, n, t, leader0 - w->grid->rank_offset);
}

// w->scalar summed over every rank of every module (each rank's part
// added once: a colocated rank holds both of its modules'). Returns the
// sum (on every rank).
static float world_sum(tr_worker *w)
{
    float *x = w->scalar, out;
    tr_all_reduce(w->g[HG_GROUP_MODULE], x, 1, TR_F32);
    tr_across_modules(w, x, w->scalar + 1, 1, TR_F32);
    w->ops->download(&out, x, sizeof out);
    return out;
}

// One call per run of owned tensors that follow each other in the shard.
void tr_add_norm_squared(const tr_worker *w, float *out)
{
    const hg_param_table *t = &w->shard.local;
    size_t from = 0, count = 0;
    for (int id = 0; id <= t->num_tensors; id++) {
        const hg_tensor_info *ti = id < t->num_tensors ? &t->tensors[id] : NULL;
        if (ti && w->shard.owner[id] && ti->offset == from + count) {
            count += ti->count;
            continue;
        }
        if (count)
            w->ops->norm_squared(out, w->grads + from, count);
        from = ti && w->shard.owner[id] ? ti->offset : 0;
        count = ti && w->shard.owner[id] ? ti->count : 0;
    }
}

// Squared norm over every module: each element counted once (its owner's copy).
static float global_norm_squared(tr_worker *w)
{
    w->ops->zero(w->scalar, sizeof(float));
    tr_add_norm_squared(w, w->scalar);
    if (w->colo)
        tr_add_norm_squared(w->colo, w->scalar);
    return world_sum(w);
}

int tr_worker_all_ok(tr_worker *w, int ok)
{
    float failed = ok ? 0.0f : 1.0f;
    w->ops->upload(w->scalar, &failed, sizeof failed);
    return world_sum(w) == 0.0f;
}

void tr_adamw_shard(tr_worker *w, const hg_optim_config *o, float scale)
{
    const hg_param_table *t = &w->shard.local;
    w->adam_steps++;
    for (int id = 0; id < t->num_tensors; id++) {
        const hg_tensor_info *ti = &t->tensors[id];
        size_t off = ti->offset;
        void *work = w->work == (void *)w->params ? NULL : (char *)w->work + off * w->es;
        w->ops->adamw(w->params + off, work, w->grads + off, w->m + off, w->v + off, ti->count,
                      o->lr, o->beta1, o->beta2, o->eps, ti->decay ? o->weight_decay : 0, scale,
                      w->adam_steps);
    }
}

float tr_worker_optimizer_step(tr_worker *w, const hg_optim_config *o)
{
    float norm = sqrtf(global_norm_squared(w));
    tr_adamw_shard(w, o, hg_clip_scale(o, norm));
    if (w->colo)
        tr_adamw_shard(w->colo, o, hg_clip_scale(o, norm));
    return norm;
}

int tr_worker_has_loss(const tr_worker *w) { return w->colo ? w->colo->last : w->last; }
tr_worker *tr_worker_colocated_llm(tr_worker *w) { return w->colo; }
const tr_shard *tr_worker_shard(const tr_worker *w) { return &w->shard; }
float *tr_worker_params(tr_worker *w) { return w->params; }
float *tr_worker_grads(tr_worker *w) { return w->grads; }
