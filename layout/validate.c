// Layout validation: DESIGN's rules, each with a one-line reason.
#include "layout/layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void hg_layout_spec_defaults(hg_layout_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    spec->encoder_tp = 2;
    spec->encoder_dp = 2;
    spec->llm_tp = 2;
    spec->llm_cp = 1;
    spec->llm_pp = 1;
    spec->llm_dp = 2;
    spec->llm_ep = 1;
    spec->llm_expt_tp = 1;
    spec->micro_batch_size = 1;
    hg_model_config *m = &spec->model;
    m->num_layers = 12;
    m->hidden_size = 768;
    m->num_attention_heads = 12;
    m->vocab_size = 32000;
    m->seq_length = 1024;
    m->moe_router_topk = 2;
    m->encoder_num_layers = 12;
    m->encoder_hidden_size = 384;
    m->encoder_num_attention_heads = 6;
    m->image_size = 224;
    m->patch_size = 16;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

typedef struct {
    const char *flag;
    int value;
} named_value;

// Rule 1: every size is a positive integer.
static int check_positive(const named_value *v, int n, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++)
        if (v[i].value <= 0)
            return fail(err, errlen, "%s %d must be a positive integer", v[i].flag, v[i].value);
    return 0;
}

// Product of sizes, or -1 if it passes HG_MAX_WORLD.
static long bounded_product(const int *v, int n)
{
    long p = 1;
    for (int i = 0; i < n; i++) {
        p *= v[i];
        if (p > HG_MAX_WORLD)
            return -1;
    }
    return p;
}

static int check_grids(const hg_layout_spec *s, char *err, size_t errlen)
{
    const named_value llm[] = {
        {"--llm-tp", s->llm_tp}, {"--llm-cp", s->llm_cp}, {"--llm-pp", s->llm_pp},
        {"--llm-dp", s->llm_dp}, {"--llm-ep", s->llm_ep}, {"--llm-expt-tp", s->llm_expt_tp},
        {"--micro-batch-size", s->micro_batch_size},
    };
    if (!s->llm_only) {
        const named_value enc[] = {{"--encoder-tp", s->encoder_tp}, {"--encoder-dp", s->encoder_dp}};
        if (check_positive(enc, 2, err, errlen))
            return -1;
    }
    if (check_positive(llm, 7, err, errlen))
        return -1;
    if (s->global_batch_size < 0)
        return fail(err, errlen, "--global-batch-size %d must be a positive integer",
                    s->global_batch_size);
    if (s->world_size < 0)
        return fail(err, errlen, "--world-size %d must be a positive integer", s->world_size);
    return 0;
}

// Every shape size against its stated bound (layout.h, "Model shape bounds").
static int check_bounds(const hg_model_config *m, char *err, size_t errlen)
{
    const struct {
        const char *flag;
        int value, bound;
    } b[] = {
        {"--num-layers", m->num_layers, HG_MAX_LAYERS},
        {"--hidden-size", m->hidden_size, HG_MAX_HIDDEN},
        {"--ffn-hidden-size", m->ffn_hidden_size, HG_MAX_FFN_HIDDEN},
        {"--vocab-size", m->vocab_size, HG_MAX_VOCAB},
        {"--seq-length", m->seq_length, HG_MAX_SEQ_LENGTH},
        {"--num-experts", m->num_experts, HG_MAX_EXPERTS},
        {"--encoder-num-layers", m->encoder_num_layers, HG_MAX_LAYERS},
        {"--encoder-hidden-size", m->encoder_hidden_size, HG_MAX_HIDDEN},
        {"--image-size", m->image_size, HG_MAX_IMAGE_SIZE},
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (b[i].value > b[i].bound)
            return fail(err, errlen, "%s %d is above the limit of %d", b[i].flag, b[i].value,
                        b[i].bound);
    return 0;
}

// One weight matrix's elements, which the kernels index with an int.
static int check_tensor(const char *what, long rows, long cols, char *err, size_t errlen)
{
    if (rows * cols > HG_MAX_TENSOR)
        return fail(err, errlen, "%s of %ld x %ld exceeds the limit of %ld elements per tensor",
                    what, rows, cols, (long)HG_MAX_TENSOR);
    return 0;
}

int hg_config_check(const hg_model_config *m, char *err, size_t errlen)
{
    const named_value sizes[] = {
        {"--num-layers", m->num_layers},
        {"--hidden-size", m->hidden_size},
        {"--num-attention-heads", m->num_attention_heads},
        {"--vocab-size", m->vocab_size},
        {"--seq-length", m->seq_length},
        {"--encoder-num-layers", m->encoder_num_layers},
        {"--encoder-hidden-size", m->encoder_hidden_size},
        {"--encoder-num-attention-heads", m->encoder_num_attention_heads},
        {"--image-size", m->image_size},
        {"--patch-size", m->patch_size},
    };
    if (check_positive(sizes, sizeof sizes / sizeof sizes[0], err, errlen))
        return -1;
    if (m->ffn_hidden_size < 0)
        return fail(err, errlen, "--ffn-hidden-size %d must be a positive integer",
                    m->ffn_hidden_size);
    if (m->num_experts < 0)
        return fail(err, errlen, "--num-experts %d must be 0 (dense) or a positive integer",
                    m->num_experts);
    if (check_bounds(m, err, errlen))
        return -1;
    long ffn = m->ffn_hidden_size ? m->ffn_hidden_size : 4L * m->hidden_size;
    if (ffn > HG_MAX_FFN_HIDDEN)
        return fail(err, errlen, "--ffn-hidden-size %ld (4 x --hidden-size) is above the limit of %d",
                    ffn, HG_MAX_FFN_HIDDEN);
    if (m->num_experts > 0 && (m->moe_router_topk < 1 || m->moe_router_topk > m->num_experts))
        return fail(err, errlen, "--moe-router-topk %d must be between 1 and --num-experts %d",
                    m->moe_router_topk, m->num_experts);
    if (m->hidden_size % m->num_attention_heads)
        return fail(err, errlen, "--hidden-size %d is not divisible by --num-attention-heads %d",
                    m->hidden_size, m->num_attention_heads);
    if (m->encoder_hidden_size % m->encoder_num_attention_heads)
        return fail(err, errlen,
                    "--encoder-hidden-size %d is not divisible by --encoder-num-attention-heads %d",
                    m->encoder_hidden_size, m->encoder_num_attention_heads);
    if (m->patch_size > m->image_size || m->image_size % m->patch_size)
        return fail(err, errlen, "--image-size %d is not a multiple of --patch-size %d",
                    m->image_size, m->patch_size);
    long side = m->image_size / m->patch_size, patches = side * side;
    if (m->seq_length - patches < HG_MIN_CAPTION_POSITIONS)
        return fail(err, errlen,
                    "--seq-length %d leaves %ld caption positions after %ld patches (--image-size "
                    "%d / --patch-size %d); need %d",
                    m->seq_length, m->seq_length - patches, patches, m->image_size, m->patch_size,
                    HG_MIN_CAPTION_POSITIONS);
    if (m->vocab_size < HG_MIN_VOCAB)
        return fail(err, errlen, "--vocab-size %d is below the %d caption tokens", m->vocab_size,
                    HG_MIN_VOCAB);
    long C = m->hidden_size, Ce = m->encoder_hidden_size, patch = m->patch_size;
    return check_tensor("the token embedding", m->vocab_size, C, err, errlen) ||
                   check_tensor("the position embedding", m->seq_length, C, err, errlen) ||
                   check_tensor("an MLP weight", C, ffn, err, errlen) ||
                   check_tensor("the patch embedding", patch * patch * 3, Ce, err, errlen) ||
                   check_tensor("the encoder's position embedding", patches, Ce, err, errlen)
               ? -1
               : 0;
}

// Rule 8: model shapes split evenly over tensor and pipeline parallelism.
static int check_model_split(const hg_layout_spec *s, char *err, size_t errlen)
{
    const hg_model_config *m = &s->model;
    const named_value llm[] = {
        {"--num-attention-heads", m->num_attention_heads},
        {"--hidden-size", m->hidden_size},
        {"--ffn-hidden-size", m->ffn_hidden_size},
    };
    for (int i = 0; i < 3; i++)
        if (llm[i].value % s->llm_tp)
            return fail(err, errlen, "%s %d is not divisible by --llm-tp %d", llm[i].flag,
                        llm[i].value, s->llm_tp);
    if (m->num_layers % s->llm_pp)
        return fail(err, errlen, "--num-layers %d is not divisible by --llm-pp %d",
                    m->num_layers, s->llm_pp);
    if (s->llm_only)
        return 0;
    const named_value enc[] = {
        {"--encoder-num-attention-heads", m->encoder_num_attention_heads},
        {"--encoder-hidden-size", m->encoder_hidden_size},
    };
    for (int i = 0; i < 2; i++)
        if (enc[i].value % s->encoder_tp)
            return fail(err, errlen, "%s %d is not divisible by --encoder-tp %d", enc[i].flag,
                        enc[i].value, s->encoder_tp);
    return 0;
}

static void fill_module(hg_module_grid *g, hg_module_id id, int offset, int tp, int cp, int dp,
                        int pp, int ep, int expt_tp)
{
    g->id = id;
    g->rank_offset = offset;
    g->num_ranks = tp * cp * dp * pp;
    g->dense[HG_DIM_TP] = tp;
    g->dense[HG_DIM_CP] = cp;
    g->dense[HG_DIM_DP] = dp;
    g->dense[HG_DIM_PP] = pp;
    g->expert[HG_XDIM_TP] = expt_tp;
    g->expert[HG_XDIM_EP] = ep;
    g->expert[HG_XDIM_DP] = g->num_ranks / (expt_tp * ep * pp);
    g->expert[HG_XDIM_PP] = pp;
}

// Rule 9: module spans are disjoint and cover [0, world_size) once.
static int check_spans(const hg_plan *p, char *err, size_t errlen)
{
    int next = 0;
    for (int i = 0; i < p->num_modules; i++) {
        const hg_module_grid *g = &p->modules[i];
        if (g->rank_offset != next)
            return fail(err, errlen, "%s ranks start at %d, expected %d",
                        hg_module_name(g->id), g->rank_offset, next);
        next += g->num_ranks;
    }
    if (next != p->world_size)
        return fail(err, errlen, "modules cover %d ranks, world size is %d", next, p->world_size);
    return 0;
}

static int check_world(const hg_layout_spec *s, long enc, long llm, hg_plan *p, char *err,
                       size_t errlen)
{
    if (llm < 0 || enc < 0 || enc + llm > HG_MAX_WORLD)
        return fail(err, errlen, "the grids need more than %d ranks; use smaller sizes",
                    HG_MAX_WORLD);
    p->world_size = (int)(enc + llm);
    if (s->world_size == 0 || s->world_size == p->world_size)
        return 0;
    if (s->llm_only)
        return fail(err, errlen,
                    "--world-size %d does not match the llm grid: --llm-tp %d x --llm-cp %d x "
                    "--llm-pp %d x --llm-dp %d = %ld",
                    s->world_size, s->llm_tp, s->llm_cp, s->llm_pp, s->llm_dp, llm);
    return fail(err, errlen,
                "--world-size %d does not match encoder (--encoder-tp %d x --encoder-dp %d = %ld) "
                "+ llm (--llm-tp %d x --llm-cp %d x --llm-pp %d x --llm-dp %d = %ld) = %ld",
                s->world_size, s->encoder_tp, s->encoder_dp, enc, s->llm_tp, s->llm_cp,
                s->llm_pp, s->llm_dp, llm, enc + llm);
}

static int check_experts(const hg_layout_spec *s, int llm_size, char *err, size_t errlen)
{
    int experts = s->model.num_experts;
    if (experts > 0 && experts % s->llm_ep)
        return fail(err, errlen, "--num-experts %d is not divisible by --llm-ep %d", experts,
                    s->llm_ep);
    if (experts == 0 && s->llm_ep > 1)
        return fail(err, errlen, "--llm-ep %d needs experts; set --num-experts to a multiple of %d",
                    s->llm_ep, s->llm_ep);
    const int view_dims[] = {s->llm_expt_tp, s->llm_ep, s->llm_pp};
    long view = bounded_product(view_dims, 3); // -1 past HG_MAX_WORLD: cannot divide
    if (view < 0)
        return fail(err, errlen,
                    "--llm-expt-tp %d x --llm-ep %d x --llm-pp %d exceeds llm size %d "
                    "(tp x cp x pp x dp)",
                    s->llm_expt_tp, s->llm_ep, s->llm_pp, llm_size);
    if (view > llm_size || llm_size % view)
        return fail(err, errlen,
                    "llm size %d (tp x cp x pp x dp) is not divisible by --llm-expt-tp %d x "
                    "--llm-ep %d x --llm-pp %d = %ld",
                    llm_size, s->llm_expt_tp, s->llm_ep, s->llm_pp, view);
    return 0;
}

static int check_bridge(const hg_layout_spec *s, char *err, size_t errlen)
{
    long samples = (long)s->micro_batch_size * s->llm_dp;
    if (samples % s->encoder_dp)
        return fail(err, errlen,
                    "--micro-batch-size %d x --llm-dp %d = %ld is not divisible by --encoder-dp %d "
                    "(each encoder rank needs a whole number of samples)",
                    s->micro_batch_size, s->llm_dp, samples, s->encoder_dp);
    if (s->encoder_dp % s->llm_dp && s->llm_dp % s->encoder_dp)
        return fail(err, errlen,
                    "--encoder-dp %d and --llm-dp %d: one must divide the other for the bridge's "
                    "fan-in/fan-out",
                    s->encoder_dp, s->llm_dp);
    return 0;
}

static int check_batch(hg_layout_spec *s, hg_plan *p, char *err, size_t errlen)
{
    long per_step = (long)s->micro_batch_size * s->llm_dp;
    if (s->global_batch_size == 0) {
        if (per_step > 1L << 30)
            return fail(err, errlen, "--micro-batch-size %d x --llm-dp %d is too large",
                        s->micro_batch_size, s->llm_dp);
        s->global_batch_size = (int)per_step;
    }
    if (s->global_batch_size % per_step)
        return fail(err, errlen,
                    "--global-batch-size %d is not divisible by --micro-batch-size %d x --llm-dp "
                    "%d = %ld",
                    s->global_batch_size, s->micro_batch_size, s->llm_dp, per_step);
    p->num_microbatches = (int)(s->global_batch_size / per_step);
    return 0;
}

int hg_plan_build(const hg_layout_spec *spec, hg_plan *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    hg_layout_spec *s = &p->spec;
    *s = *spec;
    if (s->model.ffn_hidden_size == 0 && s->model.hidden_size > 0 &&
        s->model.hidden_size <= (1 << 28))
        s->model.ffn_hidden_size = 4 * s->model.hidden_size;
    if (check_grids(s, err, errlen) || hg_config_check(&s->model, err, errlen))
        return -1;

    const int enc_dims[] = {s->encoder_tp, s->encoder_dp};
    const int llm_dims[] = {s->llm_tp, s->llm_cp, s->llm_pp, s->llm_dp};
    long enc = s->llm_only ? 0 : bounded_product(enc_dims, 2);
    long llm = bounded_product(llm_dims, 4);
    if (check_world(s, enc, llm, p, err, errlen))
        return -1;
    if (s->llm_cp != 1)
        return fail(err, errlen,
                    "--llm-cp %d is not supported: context parallelism cannot cross the bridge "
                    "yet; use --llm-cp 1",
                    s->llm_cp);
    if (check_experts(s, (int)llm, err, errlen))
        return -1;
    if (!s->llm_only && check_bridge(s, err, errlen))
        return -1;
    if (check_batch(s, p, err, errlen) || check_model_split(s, err, errlen))
        return -1;

    int vocab = s->model.vocab_size, tp = s->llm_tp;
    p->padded_vocab_size = (int)(((long)vocab + tp - 1) / tp * tp);
    if (!s->llm_only)
        fill_module(&p->modules[p->num_modules++], HG_MODULE_ENCODER, 0, s->encoder_tp, 1,
                    s->encoder_dp, 1, 1, 1);
    fill_module(&p->modules[p->num_modules++], HG_MODULE_LLM, (int)enc, s->llm_tp, s->llm_cp,
                s->llm_dp, s->llm_pp, s->llm_ep, s->llm_expt_tp);
    return check_spans(p, err, errlen);
}
