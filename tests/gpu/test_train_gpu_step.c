// GPU test (make test-gpu, 1 GPU): the training step through the GPU ops
// (train/ops_gpu.h) against the same step through the CPU reference ops,
// on an LLM-only layout of one rank (every group of one: no NCCL traffic,
// so this isolates the ops, the device buffers and the host-device
// transfers); and both modules on one rank (train/local.h, what
// hgrid-worker --single-gpu runs), dense and MoE. Three steps of 2
// micro-batches and AdamW: losses within 1e-4 relative in fp32 and 2e-2 in
// bf16, and gradient norms likewise.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/config.h"
#include "kernels/cuda_check.h"
#include "tests/check.h"
#include "train/comm_nccl.h"
#include "train/layout_groups.h"
#include "train/local.h"
#include "train/ops_gpu.h"
#include "train/train.h"

enum { STEPS = 3 };

// Losses and norms of STEPS steps with the ops; groups of one rank: the
// threads backend's for the CPU ops, the NCCL backend's (copies on the
// stream) for the GPU ops.
static void run(const hg_plan *plan, const tr_ops *ops, cudaStream_t st, float *loss,
                float *norm)
{
    tr_rank_groups groups = {0};
    tr_threads_world *world = NULL;
    int me = 0;
    char err[256];
    hg_optim_config o;
    hg_optim_defaults(&o);
    o.lr = 3e-3f;
    if (ops->device) {
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
            groups.g[0][k] = tr_nccl_group(NULL, st, &me, 1, 0);
    } else {
        world = tr_threads_world_create(1);
        CHECK(tr_threads_layout_groups(world, plan, 0, &groups) == 0, "groups");
    }
    tr_worker *w = tr_worker_create_with(ops, plan, 0, &groups, 1234, err, sizeof err);
    CHECK(w != NULL, "%s: %s", ops->name, err);
    for (int s = 0; w && s < STEPS; s++) {
        loss[s] = tr_worker_forward_backward(w, 77, s);
        norm[s] = tr_worker_optimizer_step(w, &o);
    }
    tr_worker_free(w);
    tr_layout_groups_free(&groups);
    if (world)
        tr_threads_world_free(world);
}

// The same with both modules on one rank (plan: its model and batch).
static void run_local(const hg_plan *plan, const tr_ops *ops, cudaStream_t st, float *loss,
                      float *norm)
{
    (void)st;
    char err[256];
    hg_optim_config o;
    hg_optim_defaults(&o);
    o.lr = 3e-3f;
    tr_local *l = tr_local_create(ops, &plan->spec.model, plan->spec.micro_batch_size,
                                  plan->spec.global_batch_size, 1234, err, sizeof err);
    CHECK(l != NULL, "%s: %s", ops->name, err);
    for (int s = 0; l && s < STEPS; s++) {
        loss[s] = tr_local_forward_backward(l, 77, s);
        norm[s] = tr_local_optimizer_step(l, &o);
    }
    tr_local_free(l);
}

typedef void (*runner)(const hg_plan *, const tr_ops *, cudaStream_t, float *, float *);

// The GPU ops' losses and norms against the CPU ops', fp32 and bf16.
static void compare(const char *name, runner fn, const hg_plan *plan, cudaStream_t st)
{
    float ref_loss[STEPS], ref_norm[STEPS];
    fn(plan, &tr_cpu_ops, st, ref_loss, ref_norm);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        float loss[STEPS], norm[STEPS], tol = bf16 ? 2e-2f : 1e-4f;
        const tr_ops *ops = tr_gpu_ops(bf16, st);
        fn(plan, ops, st, loss, norm);
        double wl = 0, wn = 0;
        for (int s = 0; s < STEPS; s++) {
            wl = fmax(wl, fabs(loss[s] - ref_loss[s]) / fabs(ref_loss[s]));
            wn = fmax(wn, fabs(norm[s] - ref_norm[s]) / fabs(ref_norm[s]));
        }
        printf("%-22s %-9s losses %.6f %.6f %.6f (cpu %.6f %.6f %.6f) loss rel %.2e norm rel "
               "%.2e\n",
               name, ops->name, loss[0], loss[1], loss[2], ref_loss[0], ref_loss[1], ref_loss[2],
               wl, wn);
        CHECK(wl <= tol && ref_loss[0] > 1, "%s %s: losses differ by %.3g relative", name,
              ops->name, wl);
        CHECK(wn <= tol * 5, "%s %s: gradient norms differ by %.3g relative", name, ops->name,
              wn);
    }
}

int main(void)
{
    hg_layout_spec spec;
    hg_plan plan;
    char err[HG_ERR_LEN];
    hg_layout_spec_defaults(&spec);
    spec.model = hg_config_find("tiny")->model;
    spec.llm_only = true;
    spec.llm_tp = 1, spec.llm_dp = 1;
    spec.micro_batch_size = 4, spec.global_batch_size = 8;
    if (hg_plan_build(&spec, &plan, err, sizeof err) != 0) {
        fprintf(stderr, "test_train_gpu_step: %s\n", err);
        return 1;
    }
    cudaStream_t st;
    kernels_init();
    cudaCheck(cudaStreamCreate(&st));
    compare("llm only", run, &plan, st);
    compare("encoder + llm", run_local, &plan, st);
    plan.spec.model = hg_config_find("tiny-moe")->model;
    compare("encoder + llm, MoE", run_local, &plan, st);
    cudaCheck(cudaStreamDestroy(st));
    kernels_free();
    return check_summary("test_train_gpu_step (gpu)");
}
