// The single-GPU trainer and the model-state dump behind --dump.
#include "model/single_gpu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/config.h"
#include "model/cpu_model.h"
#include "model/data.h"
#include "model/dump.h"
#include "model/gpu_model.h"

typedef struct {
    const hg_config *config;
    int steps, batch, fp32, cpu, describe;
    uint64_t seed;
    hg_optim_config opt;
    const char *dump;
} train_args;

static const char usage[] =
    "usage: hgrid-train --config NAME --steps N [--seed S] [--fp32] [--lr X] [--batch B]\n"
    "                   [--dump PATH [--cpu]] [--describe]\n";

static const char help[] =
    "Trains the encoder and the LLM together on one GPU (also: hgrid-worker --single-gpu),\n"
    "printing the loss and tokens/s of every step.\n\n"
    "  --config NAME   model config: tiny, tiny-moe, small, 1b\n"
    "  --steps N       training steps\n"
    "  --seed S        data and initialisation seed (default 1)\n"
    "  --fp32          fp32 throughout (default: bf16 with fp32 master weights)\n"
    "  --lr X          AdamW learning rate (default 1e-3)\n"
    "  --batch B       samples per step (default: the config's)\n"
    "  --dump PATH     train N steps on one batch and write the losses, gradients and\n"
    "                  weights to PATH (the PyTorch reference check reads it)\n"
    "  --cpu           with --dump: compute it on the CPU reference model\n"
    "  --describe      print the config's shapes and exit\n"
    "  --help          this text\n"
    "Exit status: 0 done, 1 failed (CUDA, memory, files), 2 usage error.\n";

static int parse_number(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "hgrid-train: %s '%s' is not a number in [%g, %g]\n", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, train_args *a)
{
    memset(a, 0, sizeof *a);
    a->seed = 1;
    hg_optim_defaults(&a->opt);
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        double v;
        if (strcmp(f, "--single-gpu") == 0 && i == 1)
            continue;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            printf("%s%s", usage, help);
            return 1;
        }
        if (strcmp(f, "--fp32") == 0) {
            a->fp32 = 1;
            continue;
        }
        if (strcmp(f, "--cpu") == 0) {
            a->cpu = 1;
            continue;
        }
        if (strcmp(f, "--describe") == 0) {
            a->describe = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "hgrid-train: %s needs a value (or is unknown)\n%s", f, usage);
            return -1;
        }
        const char *val = argv[++i];
        if (strcmp(f, "--config") == 0) {
            if (!(a->config = hg_config_find(val))) {
                fprintf(stderr, "hgrid-train: no config '%s'; use one of: %s\n", val,
                        hg_config_names);
                return -1;
            }
        } else if (strcmp(f, "--steps") == 0) {
            if (parse_number(f, val, 1, 1e9, &v))
                return -1;
            a->steps = (int)v;
        } else if (strcmp(f, "--batch") == 0) {
            if (parse_number(f, val, 1, 1e6, &v))
                return -1;
            a->batch = (int)v;
        } else if (strcmp(f, "--seed") == 0) {
            if (parse_number(f, val, 0, 9e15, &v))
                return -1;
            a->seed = (uint64_t)v;
        } else if (strcmp(f, "--lr") == 0) {
            if (parse_number(f, val, 0, 10, &v))
                return -1;
            a->opt.lr = (float)v;
        } else if (strcmp(f, "--dump") == 0) {
            a->dump = val;
        } else {
            fprintf(stderr, "hgrid-train: unknown flag '%s'\n%s", f, usage);
            return -1;
        }
    }
    if (!a->config || (!a->steps && !a->describe)) {
        fprintf(stderr, "hgrid-train: --config and --steps are required\n%s", usage);
        return -1;
    }
    if (a->cpu && !a->dump) {
        fprintf(stderr, "hgrid-train: --cpu only takes a --dump; training runs on the GPU\n");
        return -1;
    }
    if (!a->batch)
        a->batch = a->config->batch_size;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// One batch of fresh samples, as patches and caption tokens.
static void make_batch(const hg_model_config *c, uint64_t seed, uint64_t first, int B,
                       float *images, float *patches, int *tokens)
{
    hg_batch(seed, first, B, c->image_size, hg_text_len(c), images, tokens);
    hg_patchify(images, B, c->image_size, c->patch_size, patches);
}

// N steps on one batch, then the dump; from the CPU model or the GPU one.
static int run_dump(const train_args *a, const float *patches, const int *tokens)
{
    const hg_model_config *c = &a->config->model;
    hg_param_table enc, llm;
    hg_param_table_build(&enc, HG_MODULE_ENCODER, c);
    hg_param_table_build(&llm, HG_MODULE_LLM, c);
    float *ep = malloc(enc.total * 4), *lp = malloc(llm.total * 4);
    float *eg = malloc(enc.total * 4), *lg = malloc(llm.total * 4);
    float *losses = malloc(a->steps * 4), *norms = malloc(a->steps * 4), aux = 0;
    size_t nr = (size_t)c->num_layers * a->batch * c->seq_length * c->moe_router_topk;
    int *routing = malloc(sizeof(int) * (c->num_experts ? nr : 1));
    if (!ep || !lp || !eg || !lg || !losses || !norms || !routing) {
        fprintf(stderr, "hgrid-train: out of memory for the dump\n");
        return 1;
    }
    hg_cpu_model *cm = NULL;
    hg_gpu_model *gm = NULL;
    if (a->cpu) {
        if (!(cm = hg_cpu_model_create(c, a->batch, a->seed)))
            return 1;
        memcpy(ep, cm->enc_params, enc.total * 4);
        memcpy(lp, cm->llm_params, llm.total * 4);
    } else {
        if (!(gm = hg_gpu_model_create(c, a->batch, a->seed, a->fp32 ? KD_F32 : KD_BF16)))
            return 1;
        hg_gpu_model_copy_out(gm, HG_MODULE_ENCODER, ep, NULL);
        hg_gpu_model_copy_out(gm, HG_MODULE_LLM, lp, NULL);
    }
    for (int s = 0; s < a->steps; s++) {
        if (cm) {
            losses[s] = hg_cpu_model_forward(cm, patches, tokens);
            hg_cpu_model_backward(cm);
            if (s == 0) {
                aux = cm->aux_loss;
                if (c->num_experts)
                    hg_cpu_model_routing(cm, routing);
                memcpy(eg, cm->enc_grads, enc.total * 4);
                memcpy(lg, cm->llm_grads, llm.total * 4);
            }
            norms[s] = hg_cpu_model_step(cm, &a->opt);
        } else {
            losses[s] = hg_gpu_model_forward_backward(gm, patches, tokens);
            if (s == 0) {
                aux = hg_gpu_model_aux_loss(gm);
                if (c->num_experts)
                    hg_gpu_model_routing(gm, routing);
                hg_gpu_model_copy_out(gm, HG_MODULE_ENCODER, NULL, eg);
                hg_gpu_model_copy_out(gm, HG_MODULE_LLM, NULL, lg);
            }
            norms[s] = hg_gpu_model_step(gm, &a->opt);
        }
        printf("dump step %d: loss %.6f norm %.6f\n", s, losses[s], norms[s]);
    }
    hg_dump d = {.mode = a->cpu ? "cpu" : a->fp32 ? "gpu-fp32" : "gpu-bf16",
                 .cfg = c, .opt = &a->opt, .B = a->batch, .enc = &enc, .llm = &llm,
                 .enc_params = ep, .llm_params = lp, .patches = patches, .tokens = tokens,
                 .loss = losses[0], .aux_loss = aux, .enc_grads = eg, .llm_grads = lg,
                 .routing = routing, .steps = a->steps,
                 .step_losses = losses, .step_norms = norms};
    int rc = hg_dump_write(a->dump, &d) ? 1 : 0;
    hg_cpu_model_free(cm);
    hg_gpu_model_free(gm);
    free(ep), free(lp), free(eg), free(lg), free(losses), free(norms), free(routing);
    return rc;
}

static int run_train(const train_args *a, float *images, float *patches, int *tokens)
{
    const hg_model_config *c = &a->config->model;
    int B = a->batch;
    hg_gpu_model *m = hg_gpu_model_create(c, B, a->seed, a->fp32 ? KD_F32 : KD_BF16);
    if (!m)
        return 1;
    size_t ne = hg_gpu_model_table(m, HG_MODULE_ENCODER)->total;
    size_t nl = hg_gpu_model_table(m, HG_MODULE_LLM)->total;
    printf("config %s: encoder %.2fM, llm %.2fM parameters; batch %d x %d tokens; %s; "
           "text-only floor %.4f\n",
           a->config->name, ne / 1e6, nl / 1e6, B, c->seq_length, a->fp32 ? "fp32" : "bf16",
           hg_text_only_floor());
    for (int s = 0; s < a->steps; s++) {
        make_batch(c, a->seed, (uint64_t)s * B, B, images, patches, tokens);
        double t0 = now();
        float loss = hg_gpu_model_forward_backward(m, patches, tokens);
        float norm = hg_gpu_model_step(m, &a->opt);
        double dt = now() - t0;
        printf("step %5d | loss %.4f | norm %.4f | %8.2f ms | %10.0f tok/s", s + 1, loss, norm,
               dt * 1e3, (double)B * c->seq_length / dt);
        if (c->num_experts)
            printf(" | aux %.5f", hg_gpu_model_aux_loss(m));
        putchar('\n');
        fflush(stdout);
    }
    hg_gpu_model_free(m);
    return 0;
}

// The config as "name value" lines, for scripts that build the same model.
static void describe(const train_args *a)
{
    const hg_model_config *c = &a->config->model;
    printf("num_layers %d\nhidden_size %d\nnum_attention_heads %d\nffn_hidden_size %d\n"
           "vocab_size %d\nseq_length %d\nencoder_num_layers %d\nencoder_hidden_size %d\n"
           "encoder_num_attention_heads %d\nimage_size %d\npatch_size %d\nbatch %d\n",
           c->num_layers, c->hidden_size, c->num_attention_heads, hg_ffn_size(c), c->vocab_size,
           c->seq_length, c->encoder_num_layers, c->encoder_hidden_size,
           c->encoder_num_attention_heads, c->image_size, c->patch_size, a->batch);
}

int single_gpu_main(int argc, char **argv)
{
    train_args a;
    int parsed = parse_args(argc, argv, &a);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2; // 1: --help
    const hg_model_config *c = &a.config->model;
    if (a.describe) {
        describe(&a);
        return 0;
    }
    char err[256];
    if (hg_config_check(c, err, sizeof err) != 0) {
        fprintf(stderr, "hgrid-train: config %s: %s\n", a.config->name, err);
        return 2;
    }
    int B = a.batch;
    size_t pixels = (size_t)B * c->image_size * c->image_size * 3;
    float *images = malloc(pixels * 4), *patches = malloc(pixels * 4);
    int *tokens = malloc(sizeof(int) * B * hg_text_len(c));
    if (!images || !patches || !tokens) {
        fprintf(stderr, "hgrid-train: out of memory for a batch of %d\n", B);
        return 1;
    }
    int rc;
    if (a.dump) {
        make_batch(c, a.seed, 0, B, images, patches, tokens);
        rc = run_dump(&a, patches, tokens);
    } else {
        rc = run_train(&a, images, patches, tokens);
    }
    free(images), free(patches), free(tokens);
    return rc;
}
