// Both modules on one rank (train/local.h) with the CPU ops against the
// unsharded CPU reference model (model/cpu_model.c), fp32: every step's
// caption loss and gradient norm, the first step's gradients and the
// parameters after the last step, element by element, over several
// clipped AdamW steps, dense and MoE, one and two micro-batches a step,
// one encoder and two (each its own weights and images).
// A checkpoint of both modules resumes with the same losses, and loads into
// the workers of the two-rank job of the same layout.
#include "model/config.h"
#include "model/cpu_model.h"
#include "model/data.h"
#include "tests/check.h"
#include "tests/temp_dir.h"
#include "train/checkpoint.h"
#include "train/layout_groups.h"
#include "train/local.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STEPS = 4 };
#define SEED 99
#define DATA_SEED 5
#define TOL 2e-6 // relative: the same ops in the same order, up to summation order
// Parameters after the steps, absolute, in units of the learning rate: AdamW
// moves an element by about lr a step whatever its gradient's size, so the
// last bits of a near-zero gradient can move it by a visible part of lr.
#define PARAM_TOL_LR 0.05

typedef struct {
    const char *config;
    int mbs, gbs, streams; // streams: encoders (0: one)
} local_case;

// Worst per-tensor max|a - b| / max|b| over a module's tables.
static double worst_rel(const hg_param_table *t, const float *a, const float *b)
{
    double worst = 0;
    for (int id = 0; id < t->num_tensors; id++) {
        const hg_tensor_info *ti = &t->tensors[id];
        double diff = 0, mag = 1e-30;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
            diff = fmax(diff, fabs((double)a[i] - b[i]));
            mag = fmax(mag, fabs(b[i]));
        }
        if (ti->count && mag > 1e-20)
            worst = fmax(worst, diff / mag);
    }
    return worst;
}

// max |a - b| over n elements.
static double max_abs(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

static void run_case(const local_case *c)
{
    hg_model_config m = hg_config_find(c->config)->model;
    m.image_streams = c->streams;
    m.seq_length = 32 + 16 * (hg_image_streams(&m) - 1); // 16 patches each, 16 caption positions
    int n = c->gbs / c->mbs, P = hg_num_patches(&m), Tt = hg_text_len(&m);
    int E = hg_image_streams(&m);
    size_t np = (size_t)c->mbs * P * hg_patch_dim(&m); // one encoder's patches
    hg_optim_config o;
    hg_optim_defaults(&o);
    o.lr = 3e-3f;
    char err[HG_ERR_LEN];
    tr_local *l = tr_local_create(&tr_cpu_ops, &m, c->mbs, c->gbs, SEED, err, sizeof err);
    hg_cpu_model *cpu = hg_cpu_model_create(&m, c->mbs, SEED);
    CHECK(l && cpu, "%s: %s", c->config, l ? "cpu model" : err);
    if (!l || !cpu) {
        tr_local_free(l);
        hg_cpu_model_free(cpu);
        return;
    }
    tr_worker *we = tr_local_worker(l, HG_MODULE_ENCODER), *wl = tr_local_worker(l, HG_MODULE_LLM);
    size_t ne1 = cpu->enc_table.total, ne = E * ne1, nl = cpu->llm_table.total; // every encoder's
    CHECK_EQ(tr_worker_shard(we)->local.total, ne1);
    CHECK_EQ(tr_worker_shard(wl)->local.total, nl);
    float *images = malloc(sizeof(float) * c->mbs * m.image_size * m.image_size * 3);
    float *patches = malloc(sizeof(float) * E * np);
    int *tokens = malloc(sizeof(int) * c->mbs * Tt);
    float *acc[2] = {calloc(ne, sizeof(float)), calloc(nl, sizeof(float))};
    double worst_loss = 0, worst_norm = 0, grad_enc = 0, grad_llm = 0;
    for (int step = 0; step < STEPS; step++) {
        memset(acc[0], 0, sizeof(float) * ne), memset(acc[1], 0, sizeof(float) * nl);
        double ref_loss = 0;
        for (int i = 0; i < n; i++) {
            uint64_t first = (uint64_t)step * c->gbs + (uint64_t)i * c->mbs;
            hg_batch(DATA_SEED, first, c->mbs, m.image_size, Tt, images, tokens);
            for (int e = 0; e < E; e++) {
                if (e > 0)
                    hg_encoder_images(DATA_SEED, e, first, c->mbs, m.image_size, images);
                hg_patchify(images, c->mbs, m.image_size, m.patch_size, patches + e * np);
            }
            ref_loss += hg_cpu_model_forward(cpu, patches, tokens);
            hg_cpu_model_backward(cpu);
            for (size_t k = 0; k < ne; k++)
                acc[0][k] += cpu->enc_grads[k] / n;
            for (size_t k = 0; k < nl; k++)
                acc[1][k] += cpu->llm_grads[k] / n;
        }
        ref_loss /= n;
        memcpy(cpu->enc_grads, acc[0], sizeof(float) * ne);
        memcpy(cpu->llm_grads, acc[1], sizeof(float) * nl);
        float loss = tr_local_forward_backward(l, DATA_SEED, step);
        if (step == 0) {
            grad_enc = worst_rel(&cpu->enc_table, tr_worker_grads(we), cpu->enc_grads);
            grad_llm = worst_rel(&cpu->llm_table, tr_worker_grads(wl), cpu->llm_grads);
        }
        float ref_norm = hg_cpu_model_step(cpu, &o), norm = tr_local_optimizer_step(l, &o);
        worst_loss = fmax(worst_loss, fabs(loss - ref_loss) / fabs(ref_loss));
        worst_norm = fmax(worst_norm, fabs(norm - ref_norm) / fabs(ref_norm));
        CHECK(isfinite(loss) && loss > 0, "%s: step %d loss %g", c->config, step, loss);
    }
    double par_enc = max_abs(tr_worker_params(we), cpu->enc_params, ne1) / o.lr; // the first's
    double par_llm = max_abs(tr_worker_params(wl), cpu->llm_params, nl) / o.lr;
    printf("%-9s %d enc mbs %d gbs %d: relative loss %.1e norm %.1e grads %.1e %.1e; params %.1e "
           "%.1e lr\n",
           c->config, E, c->mbs, c->gbs, worst_loss, worst_norm, grad_enc, grad_llm, par_enc,
           par_llm);
    CHECK(worst_loss <= TOL, "%s: losses differ by %.3g relative", c->config, worst_loss);
    CHECK(worst_norm <= TOL, "%s: norms differ by %.3g relative", c->config, worst_norm);
    CHECK(grad_enc <= TOL && grad_llm <= TOL, "%s: gradients differ by %.3g / %.3g relative",
          c->config, grad_enc, grad_llm);
    CHECK(par_enc <= PARAM_TOL_LR && par_llm <= PARAM_TOL_LR,
          "%s: parameters differ by %.3g / %.3g lr",
          c->config, par_enc, par_llm);
    free(images), free(patches), free(tokens), free(acc[0]), free(acc[1]);
    tr_local_free(l);
    hg_cpu_model_free(cpu);
}

// rank's parameters after loading dir into the two-rank job encoder | llm
// (threads backend) equal want's (max |diff|; -1 if it did not load).
static double load_into_job(const hg_model_config *m, const char *dir, tr_local *want, int rank)
{
    hg_layout_spec spec;
    hg_plan plan;
    char err[HG_ERR_LEN];
    hg_layout_spec_defaults(&spec);
    spec.encoder_tp = spec.encoder_dp = 1;
    spec.llm_tp = spec.llm_pp = spec.llm_dp = 1;
    spec.micro_batch_size = 2, spec.global_batch_size = 4;
    spec.model = *m;
    CHECK(hg_plan_build(&spec, &plan, err, sizeof err) == 0, "%s", err);
    tr_threads_world *world = tr_threads_world_create(2);
    tr_rank_groups groups;
    double worst = -1;
    int step, gen;
    CHECK(tr_threads_layout_groups(world, &plan, rank, &groups) == 0, "groups");
    tr_worker *w = tr_worker_create(&plan, rank, &groups, SEED + 2, err, sizeof err);
    if (w && tr_checkpoint_load(w, dir, &step, &gen, err, sizeof err) == 0) {
        tr_worker *x = tr_local_worker(want, rank == 0 ? HG_MODULE_ENCODER : HG_MODULE_LLM);
        size_t n = tr_worker_shard(x)->local.total;
        worst = tr_worker_shard(w)->local.total == n
                    ? max_abs(tr_worker_params(w), tr_worker_params(x), n)
                    : 1;
    } else {
        fprintf(stderr, "rank %d of encoder | llm: %s\n", rank, err);
    }
    tr_worker_free(w);
    tr_layout_groups_free(&groups);
    tr_threads_world_free(world);
    return worst;
}

// Saved after 2 of 4 steps, loaded into a fresh model: the last 2 steps'
// losses bit for bit; and the files load into the two-rank job.
static void checkpoint_case(void)
{
    hg_model_config m = hg_config_find("tiny")->model;
    m.seq_length = 32;
    hg_optim_config o;
    hg_optim_defaults(&o);
    char err[HG_ERR_LEN], dir[] = "/tmp/hgrid-local-ckpt-XXXXXX";
    float straight[4], resumed[4] = {0};
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    tr_local *a = tr_local_create(&tr_cpu_ops, &m, 2, 4, SEED, err, sizeof err);
    tr_local *b = tr_local_create(&tr_cpu_ops, &m, 2, 4, SEED + 1, err, sizeof err);
    CHECK(a && b, "%s", err);
    if (!a || !b) {
        tr_local_free(a), tr_local_free(b);
        return;
    }
    for (int s = 0; s < 4; s++) {
        straight[s] = tr_local_forward_backward(a, DATA_SEED, s);
        tr_local_optimizer_step(a, &o);
        if (s == 1)
            CHECK(tr_local_save(a, dir, 2, err, sizeof err) == 0, "save: %s", err);
    }
    int step = -1;
    CHECK(tr_local_load(b, dir, &step, err, sizeof err) == 0, "load: %s", err);
    CHECK_EQ(step, 2);
    for (int r = 0; r < 2; r++) {
        double d = load_into_job(&m, dir, b, r);
        CHECK(d == 0, "rank %d of encoder | llm: parameters differ by %g after loading", r, d);
    }
    for (int s = 2; step == 2 && s < 4; s++) {
        resumed[s] = tr_local_forward_backward(b, DATA_SEED, s);
        tr_local_optimizer_step(b, &o);
        CHECK(resumed[s] == straight[s], "step %d: resumed %.8f, straight %.8f", s, resumed[s],
              straight[s]);
    }
    printf("checkpoint: resumed at step %d with losses %.6f %.6f as straight; loads into "
           "encoder | llm\n", step, resumed[2], resumed[3]);
    CHECK(temp_dir_remove(dir) == 0, "could not remove %s", dir);
    tr_local_free(a);
    tr_local_free(b);
}

int main(void)
{
    static const local_case cases[] = {
        {"tiny", 2, 2, 0}, {"tiny", 2, 4, 0}, {"tiny-moe", 2, 4, 0}, {"tiny", 2, 4, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
    checkpoint_case();
    char err[HG_ERR_LEN];
    hg_model_config m = hg_config_find("tiny")->model;
    CHECK(!tr_local_create(&tr_cpu_ops, &m, 2, 3, SEED, err, sizeof err) && err[0],
          "a global batch that is not a multiple of the micro-batch is refused");
    return check_summary("test_train_local");
}
