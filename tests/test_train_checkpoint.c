// Checkpoints with the threads backend: a run saved after 2 steps and
// resumed by fresh workers gives bit-identical fp32 losses to an
// uninterrupted run; no temporary files stay behind; loading into another
// layout is refused with one line naming both layouts; a damaged shard is
// refused by its checksum, and every rank learns whether some rank failed
// (tr_worker_all_ok) instead of waiting on it.
#include "model/config.h"
#include "tests/check.h"
#include "tests/temp_dir.h"
#include "train/checkpoint.h"
#include "train/layout_groups.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { STEPS = 4, SAVE_AT = 2, MAX_WORLD = 8 };
#define SEED 99
#define DATA_SEED 5

typedef struct {
    const hg_plan *plan;
    tr_threads_world *world;
    int rank, first, last; // steps [first, last)
    const char *save, *load; // directories, or NULL
    float loss[STEPS];
    char err[1024];
} rank_run;

static void *run_rank(void *arg)
{
    rank_run *r = arg;
    tr_rank_groups groups;
    hg_optim_config o;
    hg_optim_defaults(&o);
    if (tr_threads_layout_groups(r->world, r->plan, r->rank, &groups) != 0) {
        snprintf(r->err, sizeof r->err, "rank %d: no memory for groups", r->rank);
        return NULL;
    }
    tr_worker *w = tr_worker_create(r->plan, r->rank, &groups, SEED, r->err, sizeof r->err);
    int step = r->first, generation = -1;
    if (w && r->load && tr_checkpoint_load(w, r->load, &step, &generation, r->err,
                                           sizeof r->err) == 0 &&
        (step != r->first || generation != 3))
        snprintf(r->err, sizeof r->err, "loaded step %d generation %d", step, generation);
    for (; w && !r->err[0] && step < r->last; step++) {
        r->loss[step] = tr_worker_forward_backward(w, DATA_SEED, step);
        tr_worker_optimizer_step(w, &o);
    }
    if (w && !r->err[0] && r->save)
        tr_checkpoint_save(w, r->save, step, 3, r->err, sizeof r->err);
    tr_worker_free(w);
    tr_layout_groups_free(&groups);
    return NULL;
}

// Every rank loads r->load and asks whether all did: r->loss[0] = 1 if
// this rank's load worked, r->loss[1] = 1 if all agreed they did.
static void *agree_rank(void *arg)
{
    rank_run *r = arg;
    tr_rank_groups groups;
    int step, generation;
    char err[1024];
    tr_threads_layout_groups(r->world, r->plan, r->rank, &groups);
    tr_worker *w = tr_worker_create(r->plan, r->rank, &groups, SEED, r->err, sizeof r->err);
    if (w) {
        int ok = tr_checkpoint_load(w, r->load, &step, &generation, err, sizeof err) == 0;
        r->loss[0] = (float)ok;
        r->loss[1] = (float)tr_worker_all_ok(w, ok);
    }
    tr_worker_free(w);
    tr_layout_groups_free(&groups);
    return NULL;
}

// Every rank of plan loads dir; the rank `bad` (-1: none) must fail, and
// all must agree on whether every load worked.
static void agree(const hg_plan *plan, const char *dir, int bad)
{
    tr_threads_world *world = tr_threads_world_create(plan->world_size);
    static rank_run runs[MAX_WORLD];
    pthread_t th[MAX_WORLD];
    for (int r = 0; r < plan->world_size; r++) {
        runs[r] = (rank_run){.plan = plan, .world = world, .rank = r, .load = dir};
        pthread_create(&th[r], NULL, agree_rank, &runs[r]);
    }
    for (int r = 0; r < plan->world_size; r++) {
        pthread_join(th[r], NULL);
        CHECK(runs[r].err[0] == 0, "rank %d: %s", r, runs[r].err);
        CHECK(runs[r].loss[0] == (r != bad), "rank %d: load %s", r,
              runs[r].loss[0] ? "worked" : "failed");
        CHECK(runs[r].loss[1] == (bad < 0), "rank %d: all_ok says %g with rank %d failing", r,
              runs[r].loss[1], bad);
    }
    tr_threads_world_free(world);
}

// Runs steps [first, last) on every rank; loss gets the last rank's (the
// LLM's last stage) losses.
static void run(const hg_plan *plan, int first, int last, const char *save, const char *load,
                float *loss)
{
    tr_threads_world *world = tr_threads_world_create(plan->world_size);
    static rank_run runs[MAX_WORLD];
    pthread_t th[MAX_WORLD];
    for (int r = 0; r < plan->world_size; r++) {
        runs[r] = (rank_run){.plan = plan, .world = world, .rank = r, .first = first,
                             .last = last, .save = save, .load = load};
        pthread_create(&th[r], NULL, run_rank, &runs[r]);
    }
    for (int r = 0; r < plan->world_size; r++) {
        pthread_join(th[r], NULL);
        CHECK(runs[r].err[0] == 0, "rank %d: %s", r, runs[r].err);
    }
    memcpy(loss, runs[plan->world_size - 1].loss, sizeof runs[0].loss);
    tr_threads_world_free(world);
}

static hg_plan plan_of(int edp, int tp, int dp)
{
    hg_layout_spec spec;
    hg_plan plan;
    char err[HG_ERR_LEN];
    hg_layout_spec_defaults(&spec);
    spec.model = hg_config_find("tiny")->model;
    spec.model.seq_length = 32;
    spec.encoder_tp = 1, spec.encoder_dp = edp;
    spec.llm_tp = tp, spec.llm_dp = dp;
    spec.micro_batch_size = 2, spec.global_batch_size = 4;
    int rc = hg_plan_build(&spec, &plan, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    return plan;
}

static int temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, ".tmp") != NULL;
    if (d)
        closedir(d);
    return n;
}

int main(void)
{
    char dir[] = "/tmp/hgrid-ckpt-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
    hg_plan plan = plan_of(2, 2, 1); // encoder tp1 dp2 + llm tp2: 4 ranks
    float straight[STEPS] = {0}, first[STEPS] = {0}, resumed[STEPS] = {0};
    run(&plan, 0, STEPS, NULL, NULL, straight);
    run(&plan, 0, SAVE_AT, dir, NULL, first);
    CHECK(temp_files(dir) == 0, "temporary files left in %s", dir);
    run(&plan, SAVE_AT, STEPS, NULL, dir, resumed);
    for (int s = 0; s < STEPS; s++) {
        float got = s < SAVE_AT ? first[s] : resumed[s];
        CHECK(memcmp(&got, &straight[s], sizeof got) == 0, "step %d: %.9g after resume, %.9g "
              "straight", s, got, straight[s]);
        printf("step %d: straight %.7f, saved/resumed %.7f\n", s, straight[s], got);
    }

    // Another layout: refused, naming both.
    hg_plan other = plan_of(1, 1, 1);
    tr_threads_world *world = tr_threads_world_create(other.world_size);
    tr_rank_groups groups;
    char err[1024] = "";
    int step, generation;
    tr_threads_layout_groups(world, &other, 0, &groups);
    tr_worker *w = tr_worker_create(&other, 0, &groups, SEED, err, sizeof err);
    CHECK(w != NULL, "%s", err);
    CHECK(tr_checkpoint_load(w, dir, &step, &generation, err, sizeof err) == -1,
          "a checkpoint of another layout loaded");
    CHECK(strstr(err, "encoder_dp=2 llm_tp=2") && strstr(err, "encoder_dp=1 llm_tp=1") &&
              !strchr(err, '\n'),
          "error names both layouts on one line: %s", err);
    printf("other layout: %s\n", err);
    tr_worker_free(w);
    tr_layout_groups_free(&groups);
    tr_threads_world_free(world);

    agree(&plan, dir, -1); // every rank loads the whole checkpoint and says so

    // A flipped byte in a shard: refused by its checksum.
    char path[512];
    snprintf(path, sizeof path, "%s/rank-00002.bin", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL, "cannot open %s", path);
    if (f) {
        fseek(f, 100, SEEK_SET);
        int c = fgetc(f);
        fseek(f, 100, SEEK_SET);
        fputc(c ^ 1, f);
        fclose(f);
    }
    world = tr_threads_world_create(plan.world_size);
    tr_threads_layout_groups(world, &plan, 2, &groups);
    w = tr_worker_create(&plan, 2, &groups, SEED, err, sizeof err);
    err[0] = 0;
    CHECK(w && tr_checkpoint_load(w, dir, &step, &generation, err, sizeof err) == -1 &&
              strstr(err, "checksum"),
          "damaged shard: %s", err);
    tr_worker_free(w);
    tr_layout_groups_free(&groups);
    tr_threads_world_free(world);
    agree(&plan, dir, 2); // every rank loads: rank 2 fails, and all of them know it

    CHECK(temp_dir_remove(dir) == 0, "could not remove %s", dir);
    return check_summary("test_train_checkpoint");
}
