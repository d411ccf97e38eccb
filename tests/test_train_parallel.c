// The decisive CPU test of the parallel model: with the threads backend,
// the same global batch and seed on the layouts give the same
// caption loss and the same gradients (every element of every rank's
// shard) as the unsharded fp32 CPU model, and the same losses over a few
// clipped AdamW steps. LLM-only layouts (no image encoder: zero image
// embeddings) are checked against the same model on one rank.
#include "model/config.h"
#include "model/cpu_model.h"
#include "model/data.h"
#include "tests/check.h"
#include "tests/train_grads.h"
#include "train/layout_groups.h"
#include "train/train.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { STEPS = 3, MAX_WORLD = 16 };
#define SEED 1234
#define DATA_SEED 77
#define TOL 1e-5

// What the unsharded run gives: first-step gradients of both modules
// (global tables' layout) and every step's loss.
typedef struct {
    float *grads[2]; // encoder, LLM (NULL encoder when llm_only)
    float loss[STEPS];
} reference;

typedef struct {
    const hg_plan *plan;
    tr_threads_world *world;
    const reference *ref; // NULL: keep rank 0's gradients as a reference instead
    reference *keep; // one-rank runs: where to keep the gradients
    int rank;
    float loss[STEPS];
    double grad_rel; // worst per-tensor max|diff| / max|ref| over the shard
    char err[256];
} rank_run;

static void optim(hg_optim_config *o)
{
    hg_optim_defaults(o);
    o->lr = 3e-3f;
}

// Whether the layout being run reduces the blocks' large gradients during
// the last backward (every rank of a layout alike).
static int dp_overlap;

static void *run_rank(void *arg)
{
    rank_run *r = arg;
    tr_rank_groups groups;
    hg_optim_config o;
    optim(&o);
    if (tr_threads_layout_groups(r->world, r->plan, r->rank, &groups) != 0) {
        snprintf(r->err, sizeof r->err, "rank %d: no memory for groups", r->rank);
        return NULL;
    }
    tr_worker *w = tr_worker_create(r->plan, r->rank, &groups, SEED, r->err, sizeof r->err);
    if (w)
        tr_worker_set_dp_overlap(w, dp_overlap);
    for (int step = 0; w && step < STEPS; step++) {
        r->loss[step] = tr_worker_forward_backward(w, DATA_SEED, step);
        if (step == 0 && r->ref)
            r->grad_rel = shard_grads_rel(w, r->ref->grads[tr_worker_shard(w)->global.module]);
        if (step == 0 && r->keep) { // a one-rank module holds whole tensors
            const tr_shard *s = tr_worker_shard(w);
            float **dst = &r->keep->grads[s->global.module];
            *dst = malloc(sizeof(float) * s->local.total);
            memcpy(*dst, tr_worker_grads(w), sizeof(float) * s->local.total);
        }
        tr_worker_optimizer_step(w, &o);
    }
    tr_worker_free(w);
    tr_layout_groups_free(&groups);
    return NULL;
}

// Runs every rank of plan as a thread and checks each against ref (when
// given), or keeps the one-rank run's gradients and losses into keep. The
// losses are those of the LLM's last stage, lane 0, tp rank 0.
static void run_layout(const char *name, const hg_plan *plan, const reference *ref,
                       reference *keep)
{
    tr_threads_world *world = tr_threads_world_create(plan->world_size);
    static rank_run runs[MAX_WORLD];
    pthread_t th[MAX_WORLD];
    for (int r = 0; r < plan->world_size; r++) {
        runs[r] = (rank_run){.plan = plan, .world = world, .ref = ref, .keep = keep, .rank = r};
        pthread_create(&th[r], NULL, run_rank, &runs[r]);
    }
    for (int r = 0; r < plan->world_size; r++)
        pthread_join(th[r], NULL);
    const hg_module_grid *llm = hg_plan_module(plan, HG_MODULE_LLM);
    int last = llm->rank_offset + llm->dense[HG_DIM_TP] * llm->dense[HG_DIM_DP] *
                                      (llm->dense[HG_DIM_PP] - 1);
    double worst_grad = 0, worst_loss = 0;
    for (int r = 0; r < plan->world_size; r++) {
        CHECK(runs[r].err[0] == 0, "%s: %s", name, runs[r].err);
        worst_grad = fmax(worst_grad, runs[r].grad_rel);
    }
    if (keep)
        memcpy(keep->loss, runs[last].loss, sizeof keep->loss);
    if (ref) {
        for (int s = 0; s < STEPS; s++)
            worst_loss = fmax(worst_loss, fabs(runs[last].loss[s] - ref->loss[s]) /
                                              fabs(ref->loss[s]));
        CHECK(worst_grad <= TOL, "%s: gradients differ by %.3g relative", name, worst_grad);
        CHECK(worst_loss <= TOL, "%s: losses differ by %.3g relative", name, worst_loss);
        printf("%-44s %2d ranks  losses %.6f %.6f %.6f  grad rel %.2e  loss rel %.2e\n", name,
               plan->world_size, runs[last].loss[0], runs[last].loss[1], runs[last].loss[2],
               worst_grad, worst_loss);
    }
    tr_threads_world_free(world);
}

// The unsharded CPU model over the same global batches: micro-batch i of a
// step is samples [i mbs, (i + 1) mbs) of it.
static void cpu_reference(const hg_plan *plan, reference *ref)
{
    hg_model_config trained = plan->spec.model; // the layout's padded vocabulary
    trained.vocab_size = plan->padded_vocab_size;
    const hg_model_config *m = &trained;
    int mbs = plan->spec.micro_batch_size, gbs = plan->spec.global_batch_size, n = gbs / mbs;
    int P = hg_num_patches(m), Tt = hg_text_len(m);
    hg_cpu_model *cpu = hg_cpu_model_create(m, mbs, SEED);
    hg_optim_config o;
    optim(&o);
    size_t ne = cpu->enc_table.total, nl = cpu->llm_table.total;
    float *images = malloc(sizeof(float) * mbs * m->image_size * m->image_size * 3);
    float *patches = malloc(sizeof(float) * mbs * P * hg_patch_dim(m));
    int *tokens = malloc(sizeof(int) * mbs * Tt);
    float *acc[2] = {calloc(ne, sizeof(float)), calloc(nl, sizeof(float))};
    for (int step = 0; step < STEPS; step++) {
        memset(acc[0], 0, sizeof(float) * ne), memset(acc[1], 0, sizeof(float) * nl);
        double loss = 0;
        for (int i = 0; i < n; i++) {
            hg_batch(DATA_SEED, (uint64_t)step * gbs + (uint64_t)i * mbs, mbs, m->image_size, Tt,
                     images, tokens);
            hg_patchify(images, mbs, m->image_size, m->patch_size, patches);
            loss += hg_cpu_model_forward(cpu, patches, tokens);
            hg_cpu_model_backward(cpu);
            for (size_t k = 0; k < ne; k++)
                acc[0][k] += cpu->enc_grads[k] / n;
            for (size_t k = 0; k < nl; k++)
                acc[1][k] += cpu->llm_grads[k] / n;
        }
        ref->loss[step] = (float)(loss / n);
        if (step == 0) {
            ref->grads[0] = malloc(sizeof(float) * ne), ref->grads[1] = malloc(sizeof(float) * nl);
            memcpy(ref->grads[0], acc[0], sizeof(float) * ne);
            memcpy(ref->grads[1], acc[1], sizeof(float) * nl);
        }
        memcpy(cpu->enc_grads, acc[0], sizeof(float) * ne);
        memcpy(cpu->llm_grads, acc[1], sizeof(float) * nl);
        hg_cpu_model_step(cpu, &o);
    }
    free(images), free(patches), free(tokens), free(acc[0]), free(acc[1]);
    hg_cpu_model_free(cpu);
}

typedef struct {
    const char *name, *config;
    int num_experts; // 0: the config's
    int etp, edp, tp, pp, dp, ep, mbs, gbs, llm_only;
} layout_case;

static int plan_of(const layout_case *c, hg_plan *plan)
{
    hg_layout_spec spec;
    char err[HG_ERR_LEN];
    hg_layout_spec_defaults(&spec);
    spec.model = hg_config_find(c->config)->model;
    if (c->num_experts)
        spec.model.num_experts = c->num_experts;
    spec.model.seq_length = 32; // 16 patches and 16 caption positions: half the time under ASan
    spec.encoder_tp = c->etp, spec.encoder_dp = c->edp;
    spec.llm_tp = c->tp, spec.llm_pp = c->pp, spec.llm_dp = c->dp, spec.llm_ep = c->ep;
    spec.llm_only = c->llm_only;
    spec.micro_batch_size = c->mbs, spec.global_batch_size = c->gbs;
    int rc = hg_plan_build(&spec, plan, err, sizeof err);
    CHECK(rc == 0, "%s: %s", c->name, err);
    return rc;
}

static void free_ref(reference *r) { free(r->grads[0]), free(r->grads[1]); }

int main(void)
{
    static const layout_case hetero[] = {
        {"encoder | llm", "tiny", 0, 1, 1, 1, 1, 1, 1, 2, 4, 0},
        {"encoder tp1 dp2 + llm tp2 (fan-in)", "tiny", 0, 1, 2, 2, 1, 1, 1, 2, 4, 0},
        {"encoder tp2 dp2 + llm tp1 dp1 (fan-in)", "tiny", 0, 2, 2, 1, 1, 1, 1, 2, 2, 0},
        {"encoder + llm pp2 dp2 (fan-out)", "tiny", 0, 1, 1, 1, 2, 2, 1, 1, 6, 0},
        {"encoder tp2 dp2 + llm tp2 pp2 dp2 (equal)", "tiny", 0, 2, 2, 2, 2, 2, 1, 1, 4, 0},
        {"encoder + llm dp2 ep2, 8 experts (fan-out)", "tiny-moe", 0, 1, 1, 1, 1, 2, 2, 1, 4, 0},
        {"encoder + llm tp2 pp2 ep2, 8 experts", "tiny-moe", 0, 1, 1, 2, 2, 1, 2, 1, 3, 0},
    };
    for (size_t i = 0; i < sizeof hetero / sizeof hetero[0]; i++) {
        hg_plan plan;
        reference ref = {0};
        if (plan_of(&hetero[i], &plan) != 0)
            continue;
        cpu_reference(&plan, &ref);
        dp_overlap = i % 2; // both ways of reducing over the layouts
        char name[96];
        snprintf(name, sizeof name, "%s%s", hetero[i].name, dp_overlap ? ", dp overlap" : "");
        run_layout(name, &plan, &ref, NULL);
        free_ref(&ref);
    }
    // LLM only, 4 experts: tp2 dp2 ep2 against the same model on one rank
    // with the same micro-batches (the load-balancing loss is per micro-batch).
    layout_case one = {"llm only, 1 rank", "tiny-moe", 4, 1, 1, 1, 1, 1, 1, 1, 4, 1};
    layout_case four = {"llm only tp2 dp2 ep2, 4 experts", "tiny-moe", 4, 1, 1, 2, 1, 2, 2, 1, 4, 1};
    hg_plan p1, p4;
    if (plan_of(&one, &p1) == 0 && plan_of(&four, &p4) == 0) {
        reference ref = {0};
        dp_overlap = 0;
        run_layout(one.name, &p1, NULL, &ref);
        dp_overlap = 1;
        run_layout("llm only tp2 dp2 ep2, 4 experts, dp overlap", &p4, &ref, NULL);
        free_ref(&ref);
    }
    return check_summary("test_train_parallel");
}
