// train_run: the worker's groups on libhgrid's communicators, the GPU ops,
// the step loop with heartbeats and checkpoints.
#include "worker/run.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kernels/kernels.h"
#include "model/config.h"
#include "kernels/cuda_check.h"
#include "train/checkpoint.h"
#include "train/comm_nccl.h"
#include "train/ops_gpu.h"
#include "worker/run_watch.h"
#include "train/train.h"
#include "util/clock.h"

// The rank's groups on the communicators (a colocated rank's second
// module's named "llm.KIND"; bridges "bridge", or "bridge:NAME" with
// several encoders), the gradient reductions' (dp_cp, expt_dp) on stream
// `side` beside the compute on `st`; 0, or -1 if memory is short.
static int make_groups(hgrid_worker *w, hgrid_comms *comms, cudaStream_t st, cudaStream_t side,
                       tr_fence *fence, tr_rank_groups *out)
{
    const hg_plan *plan = hgrid_plan(w);
    int bad = 0;
    char name[HG_GROUP_NAME_LEN + 8];
    memset(out, 0, sizeof *out);
    for (int i = 0; i < hgrid_num_modules(w) && i < 2; i++)
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            snprintf(name, sizeof name, "%s%s", i ? "llm." : "", hg_group_name(k));
            const hgrid_group *g = hgrid_group_find(w, name);
            cudaStream_t on = k == HG_GROUP_DP_CP || k == HG_GROUP_EXPT_DP ? side : st;
            out->g[i][k] = g ? tr_nccl_group_beside(hgrid_comms_get(comms, name), st, on,
                                                    g->members, g->size, g->rank_in_group)
                             : NULL;
            bad |= g && !out->g[i][k];
            if (out->g[i][k])
                out->g[i][k]->fence = fence;
        }
    for (int b = 0; b < plan->num_encoders && b < HG_MAX_ENCODERS; b++) {
        if (plan->num_encoders > 1)
            snprintf(name, sizeof name, "bridge:%s", plan->modules[b].name);
        else
            snprintf(name, sizeof name, "bridge");
        const hgrid_group *g = hgrid_group_find(w, name);
        out->bridge[b] = g ? tr_nccl_group(hgrid_comms_get(comms, name), st, g->members, g->size,
                                           g->rank_in_group)
                           : NULL;
        bad |= g && !out->bridge[b];
        if (out->bridge[b])
            out->bridge[b]->fence = fence;
    }
    return bad ? -1 : 0;
}

// The training group at Assignment position i (libhgrid's group names:
// "KIND", a colocated rank's second module's "llm.KIND", "bridge" or
// "bridge:NAME"); NULL when training has none.
static tr_group *group_at(hgrid_worker *w, tr_rank_groups *groups, int i)
{
    const char *name = hgrid_group_at(w, i)->name;
    const hg_plan *plan = hgrid_plan(w);
    if (!strncmp(name, "bridge", 6)) {
        for (int b = 0; b < plan->num_encoders && b < HG_MAX_ENCODERS; b++)
            if (name[6] == '\0' || (name[6] == ':' && !strcmp(name + 7, plan->modules[b].name)))
                return groups->bridge[b];
        return NULL;
    }
    int module = !strncmp(name, "llm.", 4);
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
        if (!strcmp(name + 4 * module, hg_group_name(k)))
            return groups->g[module][k];
    return NULL;
}

typedef struct {
    hgrid_worker *w;
    tr_rank_groups *groups;
    tr_fence *fence;
} op_counter;

// libhgrid's counter (on the watch thread, as it handles an Abort): the
// fence first, so that the counts are final, then each group's.
static void count_ops(void *ctx, hgrid_group_ops *ops, int n)
{
    op_counter *oc = ctx;
    tr_fence_raise(oc->fence);
    for (int i = 0; i < n; i++) {
        tr_group *g = group_at(oc->w, oc->groups, i);
        if (g && g->size == hgrid_group_at(oc->w, i)->size)
            ops[i].collectives = tr_group_counts(g, ops[i].sent, ops[i].received);
    }
}

// After an escape: whether every group's operations finished by deadline.
static bool groups_quiet(tr_rank_groups *groups, double deadline)
{
    bool quiet = true;
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
            quiet &= tr_group_drain(groups->g[i][k], deadline);
    for (int b = 0; b < HG_MAX_ENCODERS; b++)
        quiet &= tr_group_drain(groups->bridge[b], deadline);
    return quiet;
}

static void free_groups(tr_rank_groups *groups)
{
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
            tr_group_free(groups->g[i][k]);
    for (int b = 0; b < HG_MAX_ENCODERS; b++)
        tr_group_free(groups->bridge[b]);
}

// Where to resume from: --load, else (a later generation) the --save
// directory once it holds a checkpoint; NULL: start fresh.
static const char *resume_dir(hgrid_worker *w, const train_options *o)
{
    char path[4096];
    struct stat sb;
    if (o->load_dir)
        return o->load_dir;
    if (!o->save_dir || hgrid_generation(w) <= 1)
        return NULL;
    snprintf(path, sizeof path, "%s/manifest", o->save_dir);
    return stat(path, &sb) == 0 ? o->save_dir : NULL;
}

// The steps from first_step, each reported to the watch thread.
// Returns 1 when every step ran, 0 after a failed checkpoint.
static int loop(hgrid_worker *w, tr_worker *tw, const hg_plan *plan, const train_options *o,
                int first_step, train_watch *watch)
{
    hg_optim_config opt;
    hg_optim_defaults(&opt);
    if (o->lr > 0)
        opt.lr = o->lr;
    int rank = hgrid_rank(w), gen = (int)hgrid_generation(w);
    char err[512];
    double total_s = 0;
    tr_nccl_timing(o->profile_comm);
    double comm0 = tr_nccl_comm_seconds();
    for (int step = first_step; step < o->steps; step++) {
        double t0 = now_s();
        float loss = tr_worker_forward_backward(tw, o->seed, step);
        float norm = tr_worker_optimizer_step(tw, &opt);
        double dt = now_s() - t0, tok_s = train_tokens_per_step(plan) / dt;
        total_s += dt;
        if (tr_worker_has_loss(tw)) {
            printf("rank %d step %5d | loss %.6f | norm %.4f | %8.2f ms | %10.0f tok/s\n", rank,
                   step + 1, loss, norm, dt * 1e3, tok_s);
            fflush(stdout);
        }
        train_watch_progress(watch, (uint64_t)step + 1,
                             tr_worker_has_loss(tw) ? loss : HGRID_NO_LOSS, (float)tok_s);
        if (train_should_save(o, step + 1) &&
            tr_checkpoint_save(tw, o->save_dir, step + 1, gen, err, sizeof err) != 0) {
            fprintf(stderr, "hgrid-worker: checkpoint after step %d: %s\n", step + 1, err);
            return 0;
        }
    }
    printf("rank %d: trained %d steps\n", rank, o->steps);
    int n = o->steps - first_step;
    if (o->profile_comm && n > 0) {
        double comm = tr_nccl_comm_seconds() - comm0;
        printf("rank %d: communication %.2f ms of %.2f ms per step (%.0f%%; each operation "
               "timed alone)\n", rank, comm * 1e3 / n, total_s * 1e3 / n, 100 * comm / total_s);
    }
    tr_nccl_timing(0);
    fflush(stdout);
    return 1;
}

// Loads the checkpoint to resume from (every rank agreeing) and trains;
// 1 when every step ran.
static int resume_and_train(hgrid_worker *w, tr_worker *tw, const hg_plan *plan,
                            const train_options *o, train_watch *watch)
{
    char err[512];
    int first_step = 0, gen;
    const char *from = resume_dir(w, o);
    int loaded = !from || tr_checkpoint_load(tw, from, &first_step, &gen, err, sizeof err) == 0;
    if (!loaded)
        fprintf(stderr, "hgrid-worker: %s\n", err);
    if (!tr_worker_all_ok(tw, loaded)) { // every rank stops, none waits on the others
        fprintf(stderr, "hgrid-worker: rank %d: not every rank loaded checkpoint %s; see the "
                        "failing ranks' errors\n", hgrid_rank(w), from);
        return 0;
    }
    return loop(w, tw, plan, o, first_step, watch);
}

int train_run(hgrid_worker *w, hgrid_comms **comms, const train_options *o, double beat_s)
{
    hg_plan plan = *hgrid_plan(w); // checked at assignment (train_check_job)
    cudaStream_t st, side;
    kernels_init();
    cudaCheck(cudaStreamCreate(&st));
    cudaCheck(cudaStreamCreate(&side));
    tr_rank_groups groups = {0};
    tr_worker *volatile tw = NULL; // set after setjmp, read after longjmp
    char err[512];
    int rc = HGRID_ERR_STATE, aborted = 0;
    jmp_buf escape;
    tr_fence fence = {.escape = &escape};
    op_counter counter = {w, &groups, &fence};
    int made = make_groups(w, *comms, st, side, &fence, &groups);
    hgrid_set_op_counter(w, count_ops, &counter); // before the watch thread polls
    train_watch *watch = train_watch_start(w, *comms, beat_s, &fence);
    if (watch && made != 0) {
        fprintf(stderr, "hgrid-worker: out of memory for the training groups\n");
        rc = train_watch_finish(watch, 0, &aborted);
    } else if (watch && setjmp(escape)) { // the watch thread raised the fence
        bool quiet = groups_quiet(&groups, train_watch_deadline(watch));
        rc = train_watch_finish(watch, 0, &aborted);
        if (rc == HGRID_ABORTED && (aborted || !quiet)) { // the next generation re-creates them
            if (!aborted)
                hgrid_comms_abort(*comms);
            aborted = 1;
            hgrid_report_comms_lost(w, "an operation on a kept communicator did not finish "
                                       "after the Abort");
        }
    } else if (watch) {
        tw = tr_worker_create_with(tr_gpu_ops(!o->fp32, st), &plan, hgrid_rank(w), &groups,
                                   o->seed, err, sizeof err);
        if (!tw)
            fprintf(stderr, "hgrid-worker: %s\n", err);
        else
            tr_worker_set_dp_overlap(tw, o->dp_overlap);
        int done = tw && resume_and_train(w, tw, &plan, o, watch);
        rc = train_watch_finish(watch, done, &aborted);
        if (!done && rc >= 0)
            rc = HGRID_ERR_STATE;
    }
    hgrid_set_op_counter(w, NULL, NULL); // the watch thread is gone
    if (aborted)
        *comms = NULL;
    tr_worker_free(tw);
    free_groups(&groups);
    cudaCheck(cudaStreamSynchronize(st));
    cudaCheck(cudaStreamSynchronize(side));
    cudaCheck(cudaStreamDestroy(st));
    cudaCheck(cudaStreamDestroy(side));
    kernels_free();
    return rc;
}
