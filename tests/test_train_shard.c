// Shard tables: over all ranks of a module, the owners' copies cover every
// element of every tensor exactly once (what the gradient norm and a
// gathered checkpoint rely on), every held element maps inside its tensor,
// and a shard's seeded init equals the whole tensor's init at the mapped
// elements. Layouts that do not split are refused with a reason.
#include "model/config.h"
#include "tests/check.h"
#include "train/shard.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

// hidden > 0 widens the model (LLM hidden size; 4x FFN): shards of more
// than 2^20 elements are initialised on several threads.
static void check_layout_wide(const char *config, int hidden, int etp, int edp, int tp, int pp,
                              int dp, int ep)
{
    hg_layout_spec spec;
    hg_plan plan;
    char err[HG_ERR_LEN];
    hg_layout_spec_defaults(&spec);
    spec.model = hg_config_find(config)->model;
    if (hidden)
        spec.model.hidden_size = hidden, spec.model.ffn_hidden_size = 4 * hidden;
    spec.encoder_tp = etp, spec.encoder_dp = edp;
    spec.llm_tp = tp, spec.llm_pp = pp, spec.llm_dp = dp, spec.llm_ep = ep;
    spec.micro_batch_size = 2;
    if (hg_plan_build(&spec, &plan, err, sizeof err) != 0) {
        CHECK(0, "%s: %s", config, err);
        return;
    }
    for (int mod = 0; mod < plan.num_modules; mod++) {
        const hg_module_grid *g = &plan.modules[mod];
        hg_param_table full;
        hg_param_table_build(&full, g->id, &spec.model);
        float *init = malloc(sizeof(float) * full.total);
        hg_params_init(&full, 7, init);
        int *count = calloc(full.total, sizeof(int));
        int bad_index = 0, bad_init = 0;
        for (int r = g->rank_offset; r < g->rank_offset + g->num_ranks; r++) {
            static tr_shard s;
            CHECK(tr_shard_build(&s, &plan, hg_plan_module_of_rank(&plan, r), r, err, sizeof err) == 0, "rank %d: %s", r, err);
            float *p = malloc(sizeof(float) * (s.local.total + 1));
            tr_shard_init(&s, 7, p);
            for (int id = 0; id < s.local.num_tensors; id++) {
                const hg_tensor_info *lt = &s.local.tensors[id], *gt = &full.tensors[id];
                for (size_t i = 0; i < lt->count; i++) {
                    size_t gi = tr_shard_global_index(&s, id, i);
                    if (gi >= gt->count) {
                        bad_index++;
                        continue;
                    }
                    bad_init += p[lt->offset + i] != init[gt->offset + gi];
                    count[gt->offset + gi] += s.owner[id];
                }
            }
            free(p);
        }
        int not_once = 0;
        for (size_t i = 0; i < full.total; i++)
            not_once += count[i] != 1;
        CHECK(bad_index == 0 && bad_init == 0 && not_once == 0,
              "%s %s tp%d pp%d dp%d ep%d: %d outside, %d wrong init, %d not owned once", config,
              hg_module_name(g->id), g->dense[HG_DIM_TP], g->dense[HG_DIM_PP],
              g->dense[HG_DIM_DP], g->expert[HG_XDIM_EP], bad_index, bad_init, not_once);
        free(count);
        free(init);
    }
}

static void check_layout(const char *config, int etp, int edp, int tp, int pp, int dp, int ep)
{
    check_layout_wide(config, 0, etp, edp, tp, pp, dp, ep);
}

typedef struct {
    unsigned char *hits;
    pthread_t threads[64];
    int num_threads;
    pthread_mutex_t lock;
} fill_log;

static void log_fill(void *ctx, size_t lo, size_t hi)
{
    fill_log *f = ctx;
    for (size_t i = lo; i < hi; i++)
        f->hits[i]++;
    pthread_mutex_lock(&f->lock);
    if (f->num_threads < 64)
        f->threads[f->num_threads++] = pthread_self();
    pthread_mutex_unlock(&f->lock);
}

// hg_params_parallel: every element once, on more than one thread where
// this process may run on more than one core; one range below 2^20.
static void check_parallel(size_t total)
{
    fill_log f = {.hits = calloc(total, 1), .lock = PTHREAD_MUTEX_INITIALIZER};
    hg_params_parallel(total, log_fill, &f);
    size_t not_once = 0;
    for (size_t i = 0; i < total; i++)
        not_once += f.hits[i] != 1;
    cpu_set_t set;
    int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    int want = total < (1u << 20) || cores < 2 ? 1 : cores > 32 ? 32 : cores;
    CHECK(not_once == 0 && f.num_threads == want,
          "parallel fill of %zu: %zu elements not filled once, %d ranges (want %d on %d cores)",
          total, not_once, f.num_threads, want, cores);
    free(f.hits);
}

int main(void)
{
    check_parallel(1000);
    check_parallel((3u << 20) + 7);
    check_layout_wide("tiny", 512, 1, 1, 2, 1, 1, 1); // 3.3M elements a shard: threads
    check_layout("tiny", 1, 1, 1, 1, 1, 1);
    check_layout("tiny", 2, 2, 2, 1, 2, 1);
    check_layout("tiny", 2, 1, 4, 2, 1, 1);
    check_layout("tiny-moe", 1, 2, 2, 2, 2, 2);
    check_layout("tiny-moe", 1, 1, 2, 1, 4, 8);

    // The split rules refuse what does not divide.
    hg_layout_spec spec;
    hg_plan plan;
    tr_shard s;
    char err[HG_ERR_LEN];
    hg_layout_spec_defaults(&spec);
    spec.model = hg_config_find("tiny")->model;
    spec.model.vocab_size = 255; // the layout pads it; the shards do not
    spec.encoder_tp = 1, spec.encoder_dp = 1, spec.llm_tp = 2, spec.llm_dp = 1;
    CHECK(hg_plan_build(&spec, &plan, err, sizeof err) == 0, "%s", err);
    CHECK(tr_shard_build(&s, &plan, hg_plan_module_of_rank(&plan, 1), 1, err, sizeof err) == -1 && strstr(err, "vocab size 255"),
          "odd vocab over tp 2: %s", err);
    return check_summary("test_train_shard");
}
