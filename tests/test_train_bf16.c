// The GPU step's bf16 bookkeeping on the CPU: the same orchestration with
// an ops table whose activations and working weights are bf16 (each op
// rounds its inputs from bf16, runs the fp32 reference, rounds its outputs
// back), through the threads backend's bf16 collectives. Every buffer
// offset and transfer size then counts 2-byte elements, as on the GPU, and
// the losses must stay within bf16's reach (2e-2 relative) of the fp32
// ops' on several layouts (colocated and two-encoder ones among them),
// while the fp32 master weights keep training.
// A checkpoint taken in bf16 and loaded into a fresh worker (its bf16
// working copy rebuilt from the master) continues with identical losses.
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"
#include "kernels/reference_vp.h"
#include "model/config.h"
#include "tests/check.h"
#include "tests/temp_dir.h"
#include "train/checkpoint.h"
#include "train/layout_groups.h"
#include "train/train.h"

enum { STEPS = 2, MAX_WORLD = 8 };

static float bf(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t to_bf(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

// fp32 copy of n bf16 values (NULL stays NULL); put() stores and frees one.
static float *get(const void *p, size_t n)
{
    if (!p)
        return NULL;
    float *f = calloc(n + 1, sizeof(float));
    for (size_t i = 0; i < n; i++)
        f[i] = bf(((const uint16_t *)p)[i]);
    return f;
}

static void put(void *p, float *f, size_t n)
{
    if (p)
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)p)[i] = to_bf(f[i]);
    free(f);
}

static void b_to_act(void *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ((uint16_t *)dst)[i] = to_bf(src[i]);
}

static void b_matmul_forward(void *out, const void *inp, const void *w, const void *b, int M,
                             int K, int N)
{
    float *o = get(out, (size_t)M * N), *x = get(inp, (size_t)M * K), *wf = get(w, (size_t)N * K);
    float *bb = get(b, N);
    ref_matmul_forward(o, x, wf, bb, M, K, N);
    put(out, o, (size_t)M * N), free(x), free(wf), free(bb);
}

static void b_matmul_backward(void *dinp, float *dw, float *db, const void *dout,
                              const void *inp, const void *w, int M, int K, int N)
{
    float *di = get(dinp, (size_t)M * K), *d = get(dout, (size_t)M * N);
    float *x = get(inp, (size_t)M * K), *wf = get(w, (size_t)N * K);
    ref_matmul_backward(di, dw, db, d, x, wf, M, K, N);
    put(dinp, di, (size_t)M * K), free(d), free(x), free(wf);
}

// As the GPU's epilogue: the sum in fp32, rounded once (out may alias resid).
static void b_matmul_forward_residual(void *out, const void *inp, const void *w, const void *b,
                                      const void *resid, int M, int K, int N)
{
    size_t n = (size_t)M * N;
    float *o = calloc(n + 1, sizeof(float)), *x = get(inp, (size_t)M * K);
    float *wf = get(w, (size_t)N * K), *bb = get(b, N), *r = get(resid, n);
    ref_matmul_forward(o, x, wf, bb, M, K, N);
    ref_add_forward(o, o, r, n);
    put(out, o, n), free(x), free(wf), free(bb), free(r);
}

static void b_layernorm_forward(void *out, float *mean, float *rstd, const void *inp,
                                const void *w, const void *b, int N, int C)
{
    size_t n = (size_t)N * C;
    float *o = get(out, n), *x = get(inp, n), *wf = get(w, C), *bb = get(b, C);
    ref_layernorm_forward(o, mean, rstd, x, wf, bb, N, C);
    put(out, o, n), free(x), free(wf), free(bb);
}

static void b_layernorm_backward(void *dinp, float *dw, float *db, float *dsum, const void *dout,
                                 const void *inp, const void *w, const float *mean,
                                 const float *rstd, int N, int C)
{
    size_t n = (size_t)N * C;
    float *di = get(dinp, n), *d = get(dout, n), *x = get(inp, n), *wf = get(w, C);
    ref_layernorm_backward(di, dw, db, d, x, wf, mean, rstd, N, C);
    put(dinp, di, n), free(d), free(x), free(wf);
    if (dsum) { // of dinp as stored (rounded), as a matmul reading it sums its bias gradient
        float *stored = get(dinp, n);
        ref_column_sum_accumulate(dsum, stored, N, C);
        free(stored);
    }
}

static void b_attention_forward(void *out, float *lse, const void *qkv, int B, int T, int NH,
                                int HD, int causal)
{
    size_t n = (size_t)B * T * NH * HD;
    float *o = get(out, n), *q = get(qkv, 3 * n);
    ref_attention_forward(o, lse, q, B, T, NH, HD, causal);
    put(out, o, n), free(q);
}

static void b_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                                 const float *lse, int B, int T, int NH, int HD, int causal)
{
    size_t n = (size_t)B * T * NH * HD;
    float *dq = get(dqkv, 3 * n), *d = get(dout, n), *q = get(qkv, 3 * n), *o = get(out, n);
    ref_attention_backward(dq, d, q, o, lse, B, T, NH, HD, causal);
    put(dqkv, dq, 3 * n), free(d), free(q), free(o);
}

static void b_gelu_forward(void *out, const void *inp, size_t n)
{
    float *o = get(out, n), *x = get(inp, n);
    ref_gelu_forward(o, x, n);
    put(out, o, n), free(x);
}

static void b_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n)
{
    float *di = get(dinp, n), *x = get(inp, n), *d = get(dout, n);
    ref_gelu_backward(di, x, d, n);
    put(dinp, di, n), free(x), free(d);
}

// As the GPU: pre and out each rounded to bf16 (the GPU's out is gelu of the
// unrounded pre, within bf16's reach of this).
static void b_matmul_forward_gelu(void *out, void *pre, const void *inp, const void *w,
                                  const void *b, int M, int K, int N)
{
    b_matmul_forward(pre, inp, w, b, M, K, N);
    b_gelu_forward(out, pre, (size_t)M * N);
}

static void b_matmul_backward_dgelu(void *dinp, float *dw, float *db, const void *dout,
                                    const void *inp, const void *w, const void *pre, int M, int K,
                                    int N)
{
    b_matmul_backward(dinp, dw, db, dout, inp, w, M, K, N);
    b_gelu_backward(dinp, pre, dinp, (size_t)M * K);
}

static void b_add(void *out, const void *a, const void *b, size_t n)
{
    float *o = get(out, n), *x = get(a, n), *y = get(b, n);
    ref_add_forward(o, x, y, n);
    put(out, o, n), free(x), free(y);
}

static void b_pos_forward(void *out, const void *inp, const void *wpe, int B, int T, int C)
{
    size_t n = (size_t)B * T * C;
    float *o = get(out, n), *x = get(inp, n), *p = get(wpe, (size_t)T * C);
    ref_position_embedding_forward(o, x, p, B, T, C);
    put(out, o, n), free(x), free(p);
}

static void b_pos_backward(float *dwpe, const void *dout, int B, int T, int C)
{
    float *d = get(dout, (size_t)B * T * C);
    ref_position_embedding_backward(dwpe, d, B, T, C);
    free(d);
}

static void b_embedding_forward(void *out, const int *tokens, const void *wte, const void *wpe,
                                int B, int T, int C, int V)
{
    size_t n = (size_t)B * T * C;
    float *o = calloc(n + 1, sizeof(float)), *w = get(wte, (size_t)V * C);
    float *p = get(wpe, (size_t)T * C);
    ref_embedding_forward(o, tokens, w, p, B, T, C, V);
    put(out, o, n), free(w), free(p);
}

static void b_embedding_backward(float *dwte, float *dwpe, const void *dout, const int *tokens,
                                 int B, int T, int C, int V)
{
    float *d = get(dout, (size_t)B * T * C);
    ref_embedding_backward(dwte, dwpe, d, tokens, B, T, C, V);
    free(d);
}

static void b_crossentropy(void *logits, float *losses, const int *targets, const float *mask,
                           float dloss, int N, int V)
{
    float *l = get(logits, (size_t)N * V);
    ref_crossentropy_forward_backward(l, losses, targets, mask, dloss, N, V, V, 1);
    put(logits, l, (size_t)N * V);
}

static void b_vp_embedding_forward(void *out, const int *tokens, const void *wte, int N, int C,
                                   int v0, int Vl)
{
    float *o = get(out, (size_t)N * C), *w = get(wte, (size_t)Vl * C);
    ref_vp_embedding_forward(o, tokens, w, N, C, v0, Vl);
    put(out, o, (size_t)N * C), free(w);
}

static void b_embedding_backward_rows(float *dwte, const void *dout, const int *rows,
                                      const int *starts, const int *positions, int R, int C)
{
    int n = 0;
    for (int k = 0; k < starts[R]; k++)
        n = positions[k] + 1 > n ? positions[k] + 1 : n;
    float *d = get(dout, (size_t)n * C);
    ref_embedding_backward_rows(dwte, d, rows, starts, positions, R, C);
    free(d);
}

static void b_ce_max(float *mx, const void *logits, int N, int Vl)
{
    float *l = get(logits, (size_t)N * Vl);
    ref_vp_crossentropy_max(mx, l, N, Vl);
    free(l);
}

static void b_ce_sums(float *mx, float *sums, const float *gathered, int tp, const void *logits,
                      const int *targets, int N, int v0, int Vl)
{
    float *l = get(logits, (size_t)N * Vl);
    ref_vp_crossentropy_sums(mx, sums, gathered, tp, l, targets, N, v0, Vl);
    free(l);
}

static void b_ce_finish(void *logits, float *losses, const float *sums, const float *mx,
                        const int *targets, const float *mask, float dloss, int N, int v0, int Vl)
{
    float *l = get(logits, (size_t)N * Vl);
    ref_vp_crossentropy_finish(l, losses, sums, mx, targets, mask, dloss, N, v0, Vl);
    put(logits, l, (size_t)N * Vl);
}

static void b_adamw(float *master, void *work, const float *grads, float *m, float *v, size_t n,
                    float lr, float b1, float b2, float eps, float wd, float scale, int t)
{
    float *p = calloc(n + 1, sizeof(float));
    ref_adamw_step(master, p, grads, m, v, n, lr, b1, b2, eps, wd, scale, t);
    put(work, p, n);
}

static tr_ops bf16_ops;

static void make_bf16_ops(void)
{
    bf16_ops = tr_cpu_ops; // host memory: alloc, copies, uploads are byte copies
    bf16_ops.name = "cpu-bf16";
    bf16_ops.act = TR_BF16;
    bf16_ops.to_act = b_to_act;
    bf16_ops.matmul_forward = b_matmul_forward;
    bf16_ops.matmul_backward = b_matmul_backward;
    bf16_ops.matmul_forward_gelu = b_matmul_forward_gelu;
    bf16_ops.matmul_backward_dgelu = b_matmul_backward_dgelu;
    bf16_ops.matmul_forward_residual = b_matmul_forward_residual;
    bf16_ops.layernorm_forward = b_layernorm_forward;
    bf16_ops.layernorm_backward = b_layernorm_backward;
    bf16_ops.attention_forward = b_attention_forward;
    bf16_ops.attention_backward = b_attention_backward;
    bf16_ops.gelu_forward = b_gelu_forward;
    bf16_ops.gelu_backward = b_gelu_backward;
    bf16_ops.add = b_add;
    bf16_ops.position_embedding_forward = b_pos_forward;
    bf16_ops.position_embedding_backward = b_pos_backward;
    bf16_ops.embedding_forward = b_embedding_forward;
    bf16_ops.embedding_backward = b_embedding_backward;
    bf16_ops.crossentropy = b_crossentropy;
    bf16_ops.vp_embedding_forward = b_vp_embedding_forward;
    bf16_ops.embedding_backward_rows = b_embedding_backward_rows;
    bf16_ops.vp_crossentropy_max = b_ce_max;
    bf16_ops.vp_crossentropy_sums = b_ce_sums;
    bf16_ops.vp_crossentropy_finish = b_ce_finish;
    bf16_ops.adamw = b_adamw;
}

typedef struct {
    const hg_plan *plan;
    const tr_ops *ops;
    tr_threads_world *world;
    int rank;
    const char *ckdir; // set: after step 0, save; a fresh worker loads it
    float loss[STEPS], resumed; // resumed: the loaded worker's step-1 loss
    char err[256];
} rank_run;

// The loaded worker's loss of step 1 (after w took steps 0 and 1).
static float resume(rank_run *r, const tr_rank_groups *groups, const hg_optim_config *o)
{
    int step, gen;
    float loss = -1;
    tr_worker *w2 = tr_worker_create_with(r->ops, r->plan, r->rank, groups, 99, r->err,
                                          sizeof r->err);
    if (w2 && tr_checkpoint_load(w2, r->ckdir, &step, &gen, r->err, sizeof r->err) == 0) {
        loss = tr_worker_forward_backward(w2, 77, step);
        tr_worker_optimizer_step(w2, o);
    }
    tr_worker_free(w2);
    return loss;
}

static void *run_rank(void *arg)
{
    rank_run *r = arg;
    tr_rank_groups groups;
    hg_optim_config o;
    hg_optim_defaults(&o);
    o.lr = 3e-3f;
    if (tr_threads_layout_groups(r->world, r->plan, r->rank, &groups) != 0) {
        snprintf(r->err, sizeof r->err, "rank %d: no memory for groups", r->rank);
        return NULL;
    }
    tr_worker *w = tr_worker_create_with(r->ops, r->plan, r->rank, &groups, 1234, r->err,
                                         sizeof r->err);
    for (int step = 0; w && step < STEPS; step++) {
        r->loss[step] = tr_worker_forward_backward(w, 77, step);
        tr_worker_optimizer_step(w, &o);
        if (step == 0 && r->ckdir &&
            tr_checkpoint_save(w, r->ckdir, 1, 1, r->err, sizeof r->err) != 0)
            break;
    }
    if (w && r->ckdir && !r->err[0])
        r->resumed = resume(r, &groups, &o);
    tr_worker_free(w);
    tr_layout_groups_free(&groups);
    return NULL;
}

// Losses of the LLM's last rank over STEPS steps with the given ops (and
// with ckdir, its resumed worker's step-1 loss in *resumed).
static void run(const hg_plan *plan, const tr_ops *ops, const char *ckdir, float *loss,
                float *resumed)
{
    tr_threads_world *world = tr_threads_world_create(plan->world_size);
    static rank_run runs[MAX_WORLD];
    pthread_t th[MAX_WORLD];
    for (int r = 0; r < plan->world_size; r++) {
        runs[r] = (rank_run){.plan = plan, .ops = ops, .world = world, .rank = r, .ckdir = ckdir};
        pthread_create(&th[r], NULL, run_rank, &runs[r]);
    }
    for (int r = 0; r < plan->world_size; r++) {
        pthread_join(th[r], NULL);
        CHECK(runs[r].err[0] == 0, "%s: %s", ops->name, runs[r].err);
    }
    memcpy(loss, runs[plan->world_size - 1].loss, sizeof(float) * STEPS);
    if (resumed)
        *resumed = runs[plan->world_size - 1].resumed;
    tr_threads_world_free(world);
}

int main(void)
{
    static const struct {
        const char *name;
        int etp, edp, tp, pp, dp, mbs, gbs;
        int colocated, encoders; // encoders: 2 lists vision (etp, edp) and audio (1, 1)
    } cases[] = {
        {"encoder | llm", 1, 1, 1, 1, 1, 2, 4, 0, 0},
        {"encoder tp1 dp2 + llm tp2 (fan-in)", 1, 2, 2, 1, 1, 2, 4, 0, 0},
        {"encoder tp2 + llm pp2 dp2 (fan-out)", 2, 1, 1, 2, 2, 1, 4, 0, 0},
        {"colocated encoder tp2 / llm dp2", 2, 1, 1, 1, 2, 1, 4, 1, 0},
        {"vision dp2 + audio | llm tp2", 1, 2, 2, 1, 1, 2, 4, 0, 2},
    };
    make_bf16_ops();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hg_layout_spec spec;
        hg_plan plan;
        char err[HG_ERR_LEN];
        hg_layout_spec_defaults(&spec);
        spec.model = hg_config_find("tiny")->model;
        spec.model.seq_length = 32 + 16 * (cases[i].encoders > 1); // 16 patches an encoder
        spec.encoder_tp = cases[i].etp, spec.encoder_dp = cases[i].edp;
        spec.colocated = cases[i].colocated;
        spec.num_encoders = cases[i].encoders;
        if (cases[i].encoders) {
            spec.encoders[0] = (hg_encoder_spec){"vision", cases[i].etp, cases[i].edp};
            spec.encoders[1] = (hg_encoder_spec){"audio", 1, 1};
        }
        spec.llm_tp = cases[i].tp, spec.llm_pp = cases[i].pp, spec.llm_dp = cases[i].dp;
        spec.micro_batch_size = cases[i].mbs, spec.global_batch_size = cases[i].gbs;
        if (hg_plan_build(&spec, &plan, err, sizeof err) != 0) {
            CHECK(0, "%s: %s", cases[i].name, err);
            continue;
        }
        float f32[STEPS], b16[STEPS], resumed = -1;
        char ckdir[] = "/tmp/hgrid-bf16-ck.XXXXXX";
        int with_ck = i == 1 && mkdtemp(ckdir) != NULL;
        run(&plan, &tr_cpu_ops, NULL, f32, NULL);
        run(&plan, &bf16_ops, with_ck ? ckdir : NULL, b16, &resumed);
        if (with_ck) {
            CHECK(resumed == b16[1], "%s: resumed from the bf16 checkpoint: loss %.7f, "
                  "uninterrupted %.7f", cases[i].name, resumed, b16[1]);
            CHECK(temp_dir_remove(ckdir) == 0, "could not remove %s", ckdir);
        }
        double worst = 0;
        for (int s = 0; s < STEPS; s++)
            worst = fmax(worst, fabs(b16[s] - f32[s]) / fabs(f32[s]));
        CHECK(worst <= 2e-2 && b16[0] > 1, "%s: bf16 losses %g %g vs fp32 %g %g", cases[i].name,
              b16[0], b16[1], f32[0], f32[1]);
        printf("%-40s fp32 %.5f %.5f  bf16 %.5f %.5f  rel %.2e\n", cases[i].name, f32[0], f32[1],
               b16[0], b16[1], worst);
    }
    return check_summary("test_train_bf16");
}
