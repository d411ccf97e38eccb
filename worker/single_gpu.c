// hgrid-worker --single-gpu: every module (--encoders of them, then the
// LLM) on one GPU through train/'s step with every group of one rank
// (train/local.h), without gridd; --dump writes the model state the
// PyTorch comparison reads.
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda_check.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/cpu_model.h"
#include "model/data.h"
#include "model/dump.h"
#include "train/local.h"
#include "train/ops_gpu.h"
#include "worker/worker.h"
#include "util/clock.h"

// The config as "name value" lines, for scripts that build the same model,
// and each module's parameter count (model/params.c's tables).
static void describe(const hg_model_config *c, int batch)
{
    hg_param_table enc, llm;
    hg_param_table_build(&enc, HG_MODULE_ENCODER, c);
    hg_param_table_build(&llm, HG_MODULE_LLM, c);
    printf("num_layers %d\nhidden_size %d\nnum_attention_heads %d\nffn_hidden_size %d\n"
           "vocab_size %d\nseq_length %d\nnum_experts %d\nmoe_router_topk %d\n"
           "encoder_num_layers %d\nencoder_hidden_size %d\nencoder_num_attention_heads %d\n"
           "image_size %d\npatch_size %d\nencoders %d\nbatch %d\n",
           c->num_layers, c->hidden_size, c->num_attention_heads, hg_ffn_size(c), c->vocab_size,
           c->seq_length, c->num_experts, c->num_experts ? c->moe_router_topk : 0,
           c->encoder_num_layers, c->encoder_hidden_size, c->encoder_num_attention_heads,
           c->image_size, c->patch_size, hg_image_streams(c), batch);
    printf("encoder_params %zu\nllm_params %zu\n", enc.total, llm.total);
}

// What a dump holds beyond the batch: weights before any step, the first
// step's gradients, load-balancing loss and routing, every step's loss and norm.
typedef struct {
    hg_param_table enc, llm;
    float *ep, *lp, *eg, *lg, *losses, *norms, aux;
    int *routing;
} dump_state;

static void dump_free(dump_state *d)
{
    free(d->ep), free(d->lp), free(d->eg), free(d->lg), free(d->losses), free(d->norms);
    free(d->routing);
}

static int dump_alloc(dump_state *d, const hg_model_config *c, int B, int steps)
{
    memset(d, 0, sizeof *d);
    hg_param_table_build(&d->enc, HG_MODULE_ENCODER, c);
    hg_param_table_build(&d->llm, HG_MODULE_LLM, c);
    size_t ne = d->enc.total * 4, nl = d->llm.total * 4;
    size_t nr = c->num_experts ? (size_t)c->num_layers * B * c->seq_length * c->moe_router_topk : 1;
    d->ep = malloc(ne), d->lp = malloc(nl), d->eg = malloc(ne), d->lg = malloc(nl);
    d->losses = malloc(steps * 4), d->norms = malloc(steps * 4);
    d->routing = malloc(sizeof(int) * nr);
    if (d->ep && d->lp && d->eg && d->lg && d->losses && d->norms && d->routing)
        return 0;
    fprintf(stderr, "hgrid-worker: out of memory for the dump\n");
    dump_free(d);
    return -1;
}

// The steps of the CPU reference model on one batch.
static int cpu_steps(const train_options *o, const hg_model_config *c, int B,
                     const hg_optim_config *opt, const float *patches, const int *tokens,
                     dump_state *d)
{
    hg_cpu_model *cm = hg_cpu_model_create(c, B, o->seed);
    if (!cm)
        return -1;
    memcpy(d->ep, cm->enc_params, d->enc.total * 4);
    memcpy(d->lp, cm->llm_params, d->llm.total * 4);
    for (int s = 0; s < o->steps; s++) {
        d->losses[s] = hg_cpu_model_forward(cm, patches, tokens);
        hg_cpu_model_backward(cm);
        if (s == 0) {
            d->aux = cm->aux_loss;
            if (c->num_experts)
                hg_cpu_model_routing(cm, d->routing);
            memcpy(d->eg, cm->enc_grads, d->enc.total * 4);
            memcpy(d->lg, cm->llm_grads, d->llm.total * 4);
        }
        d->norms[s] = hg_cpu_model_step(cm, opt);
        printf("dump step %d: loss %.6f norm %.6f\n", s, d->losses[s], d->norms[s]);
    }
    hg_cpu_model_free(cm);
    return 0;
}

// A module's fp32 weights or gradients (whole tensors on the one rank) to the host.
static void module_out(const tr_ops *ops, tr_local *l, hg_module_id id, int grads, float *host)
{
    tr_worker *w = tr_local_worker(l, id);
    ops->download(host, grads ? tr_worker_grads(w) : tr_worker_params(w),
                  tr_worker_shard(w)->local.total * sizeof(float));
}

// The steps of the one training step on the GPU on batch 0 (step index 0
// every time: the same samples).
static int gpu_steps(const train_options *o, const tr_ops *ops, tr_local *l,
                     const hg_optim_config *opt, dump_state *d)
{
    module_out(ops, l, HG_MODULE_ENCODER, 0, d->ep);
    module_out(ops, l, HG_MODULE_LLM, 0, d->lp);
    for (int s = 0; s < o->steps; s++) {
        d->losses[s] = tr_local_forward_backward(l, o->seed, 0);
        if (s == 0) {
            d->aux = tr_local_aux_loss(l);
            tr_local_routing(l, d->routing);
            module_out(ops, l, HG_MODULE_ENCODER, 1, d->eg);
            module_out(ops, l, HG_MODULE_LLM, 1, d->lg);
        }
        d->norms[s] = tr_local_optimizer_step(l, opt);
        printf("dump step %d: loss %.6f norm %.6f\n", s, d->losses[s], d->norms[s]);
    }
    return 0;
}

static int run_dump(const train_options *o, const hg_model_config *c, int B, const tr_ops *ops,
                    tr_local *l, const hg_optim_config *opt)
{
    size_t pixels = (size_t)B * c->image_size * c->image_size * 3;
    float *images = malloc(pixels * 4), *patches = malloc(pixels * 4);
    int *tokens = malloc(sizeof(int) * B * hg_text_len(c));
    dump_state d;
    int rc = 1;
    if (!images || !patches || !tokens)
        fprintf(stderr, "hgrid-worker: out of memory for a batch of %d\n", B);
    else if (dump_alloc(&d, c, B, o->steps) == 0) {
        hg_batch(o->seed, 0, B, c->image_size, hg_text_len(c), images, tokens);
        hg_patchify(images, B, c->image_size, c->patch_size, patches);
        int ran = o->cpu ? cpu_steps(o, c, B, opt, patches, tokens, &d) : gpu_steps(o, ops, l, opt, &d);
        hg_dump dump = {.mode = o->cpu ? "cpu" : o->fp32 ? "gpu-fp32" : "gpu-bf16", .cfg = c,
                        .opt = opt, .B = B, .enc = &d.enc, .llm = &d.llm, .enc_params = d.ep,
                        .llm_params = d.lp, .patches = patches, .tokens = tokens,
                        .loss = d.losses[0], .aux_loss = d.aux, .enc_grads = d.eg,
                        .llm_grads = d.lg, .routing = d.routing, .steps = o->steps,
                        .step_losses = d.losses, .step_norms = d.norms};
        rc = ran == 0 && hg_dump_write(o->dump, &dump) == 0 ? 0 : 1;
        dump_free(&d);
    }
    free(images), free(patches), free(tokens);
    return rc;
}

// One line per step: the loss, the norm, the step's time (to the end of
// its optimizer step on the GPU) and tokens/s; from --load's checkpoint,
// saving to --save's as the workers do.
static int run_train(const train_options *o, const char *name, const hg_model_config *c, int B,
                     cudaStream_t st, tr_local *l, const hg_optim_config *opt)
{
    char err[512];
    int first = 0;
    if (o->load_dir && tr_local_load(l, o->load_dir, &first, err, sizeof err) != 0) {
        fprintf(stderr, "hgrid-worker: %s\n", err);
        return 1;
    }
    int E = hg_image_streams(c);
    size_t ne = tr_worker_shard(tr_local_worker(l, HG_MODULE_ENCODER))->local.total;
    size_t nl = tr_worker_shard(tr_local_worker(l, HG_MODULE_LLM))->local.total;
    char encoders[32] = "encoder";
    if (E > 1)
        snprintf(encoders, sizeof encoders, "%d encoders", E);
    printf("config %s: %s %.2fM, llm %.2fM parameters; batch %d x %d tokens; %s; "
           "text-only floor %.4f\n",
           name, encoders, E * ne / 1e6, nl / 1e6, B, c->seq_length,
           o->fp32 ? "fp32" : "bf16", hg_text_only_floor());
    for (int s = first; s < o->steps; s++) {
        double t0 = now_s();
        float loss = tr_local_forward_backward(l, o->seed, s);
        float norm = tr_local_optimizer_step(l, opt);
        cudaCheck(cudaStreamSynchronize(st));
        double dt = now_s() - t0;
        printf("step %5d | loss %.4f | norm %.4f | %8.2f ms | %10.0f tok/s", s + 1, loss, norm,
               dt * 1e3, (double)B * c->seq_length / dt);
        if (c->num_experts)
            printf(" | aux %.5f", tr_local_aux_loss(l));
        putchar('\n');
        fflush(stdout);
        if (train_should_save(o, s + 1) &&
            tr_local_save(l, o->save_dir, s + 1, err, sizeof err) != 0) {
            fprintf(stderr, "hgrid-worker: checkpoint after step %d: %s\n", s + 1, err);
            return 1;
        }
    }
    return 0;
}

int worker_single_gpu(const train_options *o)
{
    const hg_config *cfg = hg_config_find(o->config);
    hg_model_config model = cfg->model; // with --encoders, as a job's repeated --encoder
    model.image_streams = o->encoders > 1 ? o->encoders : 0;
    // Megatron's padding on one rank (the configs' vocabularies already are multiples)
    model.vocab_size = hg_padded_vocab(model.vocab_size, HG_DEFAULT_VOCAB_DIVISOR, 1);
    const hg_model_config *c = &model;
    int B = o->batch ? o->batch : cfg->batch_size;
    char err[HG_ERR_LEN];
    if (hg_config_check(c, err, sizeof err) != 0) {
        fprintf(stderr, "hgrid-worker: config %s%s: %s\n", cfg->name,
                o->encoders > 1 ? " with --encoders" : "", err);
        return 2;
    }
    if (o->describe) {
        describe(c, B);
        return 0;
    }
    hg_optim_config opt;
    hg_optim_defaults(&opt);
    if (o->lr > 0)
        opt.lr = o->lr;
    if (o->cpu)
        return run_dump(o, c, B, NULL, NULL, &opt);
    int gpus = 0;
    cudaError_t e = cudaGetDeviceCount(&gpus);
    if (e != cudaSuccess || gpus == 0) { // else cuBLAS's first call fails with a library error
        fprintf(stderr, "hgrid-worker: --single-gpu needs a CUDA GPU and finds none (CUDA: %s); run it "
                        "on a GPU machine, or --dump PATH --cpu for the CPU reference\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "no devices");
        return 1;
    }
    cudaStream_t st;
    kernels_init();
    cudaCheck(cudaStreamCreate(&st));
    const tr_ops *ops = tr_gpu_ops(!o->fp32, st);
    tr_local *l = tr_local_create(ops, c, B, B, o->seed, err, sizeof err);
    int rc = 1;
    if (!l)
        fprintf(stderr, "hgrid-worker: config %s, batch %d: %s\n", cfg->name, B, err);
    else
        rc = o->dump ? run_dump(o, c, B, ops, l, &opt) : run_train(o, cfg->name, c, B, st, l, &opt);
    tr_local_free(l);
    cudaCheck(cudaStreamSynchronize(st));
    cudaCheck(cudaStreamDestroy(st));
    kernels_free();
    return rc;
}
