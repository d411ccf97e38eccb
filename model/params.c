// Parameter tables, deterministic init and views into parameter buffers.
#include "model/params.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "model/config.h"
#include "model/rng.h"

static void add(hg_param_table *t, const char *name, hg_init_kind init, float std, int ndim,
                const int *dims)
{
    hg_tensor_info *ti = &t->tensors[t->num_tensors++];
    ti->name = name;
    ti->ndim = ndim;
    ti->count = 1;
    for (int i = 0; i < 4; i++) {
        ti->shape[i] = i < ndim ? dims[i] : 0;
        if (i < ndim)
            ti->count *= (size_t)dims[i];
    }
    ti->offset = t->total;
    ti->init = init;
    ti->std = std;
    ti->decay = init == HG_INIT_NORMAL;
    t->total += ti->count;
}

#define DIMS(...) (const int[]){__VA_ARGS__}

// Block tensors stacked over L layers of width C and MLP width F, with E
// experts (0: a dense MLP).
static void add_blocks(hg_param_table *t, int L, int C, int F, int E)
{
    float proj_std = 0.02f / sqrtf(2.0f * L);
    t->first_block = t->num_tensors;
    add(t, "blocks.ln1_w", HG_INIT_ONE, 0, 2, DIMS(L, C));
    add(t, "blocks.ln1_b", HG_INIT_ZERO, 0, 2, DIMS(L, C));
    add(t, "blocks.qkv_w", HG_INIT_NORMAL, 0.02f, 3, DIMS(L, 3 * C, C));
    add(t, "blocks.qkv_b", HG_INIT_ZERO, 0, 2, DIMS(L, 3 * C));
    add(t, "blocks.attn_proj_w", HG_INIT_NORMAL, proj_std, 3, DIMS(L, C, C));
    add(t, "blocks.attn_proj_b", HG_INIT_ZERO, 0, 2, DIMS(L, C));
    add(t, "blocks.ln2_w", HG_INIT_ONE, 0, 2, DIMS(L, C));
    add(t, "blocks.ln2_b", HG_INIT_ZERO, 0, 2, DIMS(L, C));
    if (E == 0) {
        add(t, "blocks.fc_w", HG_INIT_NORMAL, 0.02f, 3, DIMS(L, F, C));
        add(t, "blocks.fc_b", HG_INIT_ZERO, 0, 2, DIMS(L, F));
        add(t, "blocks.fc_proj_w", HG_INIT_NORMAL, proj_std, 3, DIMS(L, C, F));
        add(t, "blocks.fc_proj_b", HG_INIT_ZERO, 0, 2, DIMS(L, C));
    } else {
        add(t, "blocks.fc_w", HG_INIT_NORMAL, 0.02f, 4, DIMS(L, E, F, C));
        add(t, "blocks.fc_b", HG_INIT_ZERO, 0, 3, DIMS(L, E, F));
        add(t, "blocks.fc_proj_w", HG_INIT_NORMAL, proj_std, 4, DIMS(L, E, C, F));
        add(t, "blocks.fc_proj_b", HG_INIT_ZERO, 0, 3, DIMS(L, E, C));
    }
    add(t, "blocks.router_w", HG_INIT_NORMAL, 0.02f, 3, DIMS(L, E, C));
}

void hg_param_table_build(hg_param_table *t, hg_module_id module, const hg_model_config *m)
{
    t->module = module;
    t->num_tensors = 0;
    t->total = 0;
    if (module == HG_MODULE_ENCODER) {
        int Ce = m->encoder_hidden_size;
        t->num_layers = m->encoder_num_layers;
        add(t, "patch_w", HG_INIT_NORMAL, 0.02f, 2, DIMS(Ce, hg_patch_dim(m)));
        add(t, "patch_b", HG_INIT_ZERO, 0, 1, DIMS(Ce));
        add(t, "pos", HG_INIT_NORMAL, 0.02f, 2, DIMS(hg_num_patches(m), Ce));
        add_blocks(t, t->num_layers, Ce, hg_encoder_ffn_size(m), 0);
        add(t, "lnf_w", HG_INIT_ONE, 0, 1, DIMS(Ce));
        add(t, "lnf_b", HG_INIT_ZERO, 0, 1, DIMS(Ce));
        add(t, "proj_w", HG_INIT_NORMAL, 0.02f, 2, DIMS(m->hidden_size, Ce));
        add(t, "proj_b", HG_INIT_ZERO, 0, 1, DIMS(m->hidden_size));
    } else {
        int C = m->hidden_size;
        t->num_layers = m->num_layers;
        add(t, "wte", HG_INIT_NORMAL, 0.02f, 2, DIMS(m->vocab_size, C));
        add(t, "wpe", HG_INIT_NORMAL, 0.02f, 2, DIMS(m->seq_length, C));
        add_blocks(t, t->num_layers, C, hg_ffn_size(m), m->num_experts);
        add(t, "lnf_w", HG_INIT_ONE, 0, 1, DIMS(C));
        add(t, "lnf_b", HG_INIT_ZERO, 0, 1, DIMS(C));
    }
}

float hg_param_init_value(const hg_param_table *t, uint64_t seed, int id, size_t index)
{
    const hg_tensor_info *ti = &t->tensors[id];
    if (ti->init != HG_INIT_NORMAL)
        return ti->init == HG_INIT_ONE ? 1.0f : 0.0f;
    uint64_t key = hg_mix64(seed) ^ ((uint64_t)t->module << 32 | (uint64_t)id);
    return (float)(ti->std * hg_normal(key, index, 0));
}

typedef struct {
    void (*fill)(void *ctx, size_t lo, size_t hi);
    void *ctx;
    size_t lo, hi;
} fill_range;

static void *fill_worker(void *arg)
{
    const fill_range *r = arg;
    r->fill(r->ctx, r->lo, r->hi);
    return NULL;
}

static int usable_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void hg_params_parallel(size_t total, void (*fill)(void *ctx, size_t lo, size_t hi), void *ctx)
{
    enum { MAX_THREADS = 32 };
    int cores = usable_cores();
    int n = total < (1u << 20) || cores < 2 ? 1 : cores > MAX_THREADS ? MAX_THREADS : cores;
    fill_range r[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int started = 0;
    for (int k = 0; k < n; k++)
        r[k] = (fill_range){fill, ctx, total * k / n, total * (k + 1) / n};
    for (int k = 1; k < n; k++, started++)
        if (pthread_create(&th[k], NULL, fill_worker, &r[k]) != 0)
            break;
    fill_worker(&r[0]);
    for (int k = 1; k <= started; k++)
        pthread_join(th[k], NULL);
    for (int k = started + 1; k < n; k++) // threads that could not start
        fill_worker(&r[k]);
}

typedef struct {
    const hg_param_table *t;
    float (*value)(void *ctx, int id, size_t index);
    void *ctx;
    float *out;
} fill_job;

// Elements [lo, hi) of the whole buffer.
static void fill_range_of(void *arg, size_t lo_all, size_t hi_all)
{
    const fill_job *j = arg;
    const hg_param_table *t = j->t;
    for (int id = 0; id < t->num_tensors; id++) {
        const hg_tensor_info *ti = &t->tensors[id];
        size_t lo = lo_all > ti->offset ? lo_all : ti->offset;
        size_t hi = hi_all < ti->offset + ti->count ? hi_all : ti->offset + ti->count;
        for (size_t i = lo; i < hi; i++)
            j->out[i] = j->value(j->ctx, id, i - ti->offset);
    }
}

void hg_params_fill(const hg_param_table *t, float (*value)(void *ctx, int id, size_t index),
                    void *ctx, float *out)
{
    fill_job j = {t, value, ctx, out};
    hg_params_parallel(t->total, fill_range_of, &j);
}

typedef struct {
    const hg_param_table *t;
    uint64_t seed;
} init_job;

static float init_value(void *ctx, int id, size_t index)
{
    const init_job *j = ctx;
    return hg_param_init_value(j->t, j->seed, id, index);
}

void hg_params_init(const hg_param_table *t, uint64_t seed, float *params)
{
    init_job j = {t, seed};
    hg_params_fill(t, init_value, &j, params);
}

void *hg_tensor_at(const hg_param_table *t, void *base, size_t elem_size, int id)
{
    return (char *)base + t->tensors[id].offset * elem_size;
}

void hg_block_view_at(const hg_param_table *t, void *base, size_t elem_size, int layer,
                      hg_block_view *v)
{
    void **slots[HG_BLOCK_TENSORS] = {&v->ln1_w, &v->ln1_b, &v->qkv_w, &v->qkv_b,
                                      &v->attn_proj_w, &v->attn_proj_b, &v->ln2_w, &v->ln2_b,
                                      &v->fc_w, &v->fc_b, &v->fc_proj_w, &v->fc_proj_b,
                                      &v->router_w};
    for (int i = 0; i < HG_BLOCK_TENSORS; i++) {
        const hg_tensor_info *ti = &t->tensors[t->first_block + i];
        size_t per_layer = ti->count / t->num_layers;
        *slots[i] = (char *)base + (ti->offset + per_layer * layer) * elem_size;
    }
}
