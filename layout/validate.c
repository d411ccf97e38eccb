// Layout validation: DESIGN's rules, each with a one-line reason, and the
// plan derived from a valid layout.
#include "layout/layout.h"
#include "layout/rules.h"

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
    spec->make_vocab_size_divisible_by = HG_DEFAULT_VOCAB_DIVISOR;
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

int hg_rule_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int hg_rule_positive(const hg_named_value *v, int n, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++)
        if (v[i].value <= 0)
            return hg_rule_fail(err, errlen, "%s %d must be a positive integer", v[i].flag, v[i].value);
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

// The encoders as a list, whichever form gave them: the user's flags for
// each, for messages.
typedef struct {
    int count;
    hg_encoder_spec e[HG_MAX_ENCODERS];
    bool named; // --encoder NAME:tp=T,dp=D
} encoder_list;

// "--encoder-dp 4", or "--encoder audio dp 4".
static const char *dim_text(const encoder_list *l, int i, const char *dim, char *buf, size_t len)
{
    int v = strcmp(dim, "tp") == 0 ? l->e[i].tp : l->e[i].dp;
    if (l->named)
        snprintf(buf, len, "--encoder %s %s %d", l->e[i].name, dim, v);
    else
        snprintf(buf, len, "--encoder-%s %d", dim, v);
    return buf;
}

static bool valid_name(const char *name)
{
    size_t n = strnlen(name, HG_NAME_LEN);
    if (n == 0 || n == HG_NAME_LEN || strcmp(name, "llm") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int list_encoders(const hg_layout_spec *s, encoder_list *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    if (s->llm_only) {
        if (s->num_encoders > 0)
            return hg_rule_fail(err, errlen, "--llm-only has no encoder; drop the %d --encoder flag(s)",
                        s->num_encoders);
        return 0;
    }
    if (s->num_encoders == 0) {
        l->count = 1;
        l->e[0] = (hg_encoder_spec){"encoder", s->encoder_tp, s->encoder_dp};
        const hg_named_value v[] = {{"--encoder-tp", s->encoder_tp}, {"--encoder-dp", s->encoder_dp}};
        return hg_rule_positive(v, 2, err, errlen);
    }
    if (s->encoder_shorthand)
        return hg_rule_fail(err, errlen,
                    "--encoder-tp/--encoder-dp and --encoder both describe encoders; use "
                    "--encoder NAME:tp=T,dp=D for each");
    if (s->num_encoders > HG_MAX_ENCODERS)
        return hg_rule_fail(err, errlen, "%d encoders: at most %d", s->num_encoders, HG_MAX_ENCODERS);
    l->count = s->num_encoders;
    l->named = true;
    for (int i = 0; i < l->count; i++) {
        const hg_encoder_spec *e = &s->encoders[i];
        if (!valid_name(e->name))
            return hg_rule_fail(err, errlen,
                        "--encoder name '%.*s' must be 1 to %d of a-z 0-9 _ - and not 'llm'",
                        HG_NAME_LEN, e->name, HG_NAME_LEN - 1);
        for (int j = 0; j < i; j++)
            if (strcmp(s->encoders[j].name, e->name) == 0)
                return hg_rule_fail(err, errlen, "--encoder %s is given twice; names must be unique",
                            e->name);
        if (e->tp <= 0 || e->dp <= 0)
            return hg_rule_fail(err, errlen, "--encoder %s: tp %d and dp %d must be positive integers",
                        e->name, e->tp, e->dp);
        l->e[i] = *e;
    }
    return 0;
}

static int check_grids(const hg_layout_spec *s, char *err, size_t errlen)
{
    const hg_named_value llm[] = {
        {"--llm-tp", s->llm_tp}, {"--llm-cp", s->llm_cp}, {"--llm-pp", s->llm_pp},
        {"--llm-dp", s->llm_dp}, {"--llm-ep", s->llm_ep}, {"--llm-expt-tp", s->llm_expt_tp},
        {"--micro-batch-size", s->micro_batch_size},
    };
    if (hg_rule_positive(llm, 7, err, errlen))
        return -1;
    if (s->make_vocab_size_divisible_by < 0)
        return hg_rule_fail(err, errlen, "--make-vocab-size-divisible-by %d must be a positive integer",
                            s->make_vocab_size_divisible_by);
    if (s->global_batch_size < 0)
        return hg_rule_fail(err, errlen, "--global-batch-size %d must be a positive integer",
                    s->global_batch_size);
    if (s->world_size < 0)
        return hg_rule_fail(err, errlen, "--world-size %d must be a positive integer", s->world_size);
    if (s->llm_offset_given && s->llm_offset < 0)
        return hg_rule_fail(err, errlen, "--llm-offset %d must be 0 or a positive integer", s->llm_offset);
    return 0;
}

// Rule 8: model shapes split evenly over tensor and pipeline parallelism.
static int check_model_split(const hg_layout_spec *s, const encoder_list *l, char *err,
                             size_t errlen)
{
    const hg_model_config *m = &s->model;
    const hg_named_value llm[] = {
        {"--num-attention-heads", m->num_attention_heads},
        {"--hidden-size", m->hidden_size},
        {"--ffn-hidden-size", m->ffn_hidden_size},
    };
    for (int i = 0; i < 3; i++)
        if (llm[i].value % s->llm_tp)
            return hg_rule_fail(err, errlen, "%s %d is not divisible by --llm-tp %d", llm[i].flag,
                        llm[i].value, s->llm_tp);
    if (m->num_layers % s->llm_pp)
        return hg_rule_fail(err, errlen, "--num-layers %d is not divisible by --llm-pp %d",
                    m->num_layers, s->llm_pp);
    const hg_named_value enc[] = {
        {"--encoder-num-attention-heads", m->encoder_num_attention_heads},
        {"--encoder-hidden-size", m->encoder_hidden_size},
    };
    for (int e = 0; e < l->count; e++)
        for (int i = 0; i < 2; i++)
            if (enc[i].value % l->e[e].tp) {
                char tp[HG_GROUP_NAME_LEN + 32];
                return hg_rule_fail(err, errlen, "%s %d is not divisible by %s", enc[i].flag,
                            enc[i].value, dim_text(l, e, "tp", tp, sizeof tp));
            }
    return 0;
}

static void fill_module(hg_module_grid *g, hg_module_id id, int index, const char *name,
                        int offset, int tp, int cp, int dp, int pp, int ep, int expt_tp)
{
    g->id = id;
    g->index = index;
    snprintf(g->name, sizeof g->name, "%s", name);
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

// Rule 9: module spans are disjoint and cover [0, world_size) once; in a
// colocated layout each covers it whole.
static int check_spans(const hg_plan *p, char *err, size_t errlen)
{
    int next = 0;
    for (int i = 0; i < p->num_modules; i++) {
        const hg_module_grid *g = &p->modules[i];
        int want = p->colocated ? 0 : next;
        if (g->rank_offset != want)
            return hg_rule_fail(err, errlen, "%s ranks start at %d, expected %d", g->name,
                        g->rank_offset, want);
        next = p->colocated ? g->num_ranks : next + g->num_ranks;
        if (next != p->world_size && (p->colocated || i == p->num_modules - 1))
            return hg_rule_fail(err, errlen, "modules cover %d ranks, world size is %d", next,
                        p->world_size);
    }
    return 0;
}

// "--encoder-tp 2 x --encoder-dp 2 = 4", or "vision 4 + audio 2 = 6".
static void encoders_text(const encoder_list *l, const long *sizes, long total, char *buf,
                          size_t len)
{
    if (!l->named) {
        snprintf(buf, len, "--encoder-tp %d x --encoder-dp %d = %ld", l->e[0].tp, l->e[0].dp,
                 total);
        return;
    }
    size_t at = 0;
    for (int i = 0; i < l->count && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s %ld", i ? " + " : "", l->e[i].name,
                               sizes[i]);
    if (at < len)
        snprintf(buf + at, len - at, " = %ld", total);
}

// Rule 2 (and the colocated form: both grids are the whole world).
static int check_world(const hg_layout_spec *s, const encoder_list *l, const long *enc_sizes,
                       long enc, long llm, hg_plan *p, char *err, size_t errlen)
{
    if (llm < 0 || enc < 0 || (s->colocated ? llm : enc + llm) > HG_MAX_WORLD)
        return hg_rule_fail(err, errlen, "the grids need more than %d ranks; use smaller sizes",
                    HG_MAX_WORLD);
    char encoders[256];
    encoders_text(l, enc_sizes, enc, encoders, sizeof encoders);
    if (s->colocated && enc != llm)
        return hg_rule_fail(err, errlen,
                    "--mimo-layout colocated: the encoder (%s) and the llm (--llm-tp %d x "
                    "--llm-cp %d x --llm-pp %d x --llm-dp %d = %ld) must each cover the world",
                    encoders, s->llm_tp, s->llm_cp, s->llm_pp, s->llm_dp, llm);
    p->world_size = (int)(s->colocated ? llm : enc + llm);
    if (s->world_size == 0 || s->world_size == p->world_size)
        return 0;
    if (s->llm_only || s->colocated)
        return hg_rule_fail(err, errlen,
                    "--world-size %d does not match the llm grid: --llm-tp %d x --llm-cp %d x "
                    "--llm-pp %d x --llm-dp %d = %ld",
                    s->world_size, s->llm_tp, s->llm_cp, s->llm_pp, s->llm_dp, llm);
    return hg_rule_fail(err, errlen,
                "--world-size %d does not match encoder (%s) + llm (--llm-tp %d x --llm-cp %d x "
                "--llm-pp %d x --llm-dp %d = %ld) = %ld",
                s->world_size, encoders, s->llm_tp, s->llm_cp, s->llm_pp, s->llm_dp, llm,
                enc + llm);
}

// --llm-offset (upstream's rules): the llm starts right after the encoders,
// at 0 with --llm-only or colocated. Returns the offset, or -1.
static int llm_offset(const hg_layout_spec *s, long enc, char *err, size_t errlen)
{
    int want = s->llm_only || s->colocated ? 0 : (int)enc;
    if (!s->llm_offset_given || s->llm_offset == want)
        return want;
    if (s->llm_only)
        return hg_rule_fail(err, errlen, "--llm-offset %d: with --llm-only the llm starts at rank 0",
                    s->llm_offset);
    if (s->colocated)
        return hg_rule_fail(err, errlen,
                    "--llm-offset %d: with --mimo-layout colocated both modules start at rank 0; "
                    "use --llm-offset 0",
                    s->llm_offset);
    if (s->llm_offset < want)
        return hg_rule_fail(err, errlen,
                    "--llm-offset %d overlaps the encoders, which take ranks 0-%ld: use "
                    "--llm-offset %d",
                    s->llm_offset, enc - 1, want);
    char gap[48];
    if (s->llm_offset - 1 == want)
        snprintf(gap, sizeof gap, "rank %d", want);
    else
        snprintf(gap, sizeof gap, "ranks %d-%d", want, s->llm_offset - 1);
    return hg_rule_fail(err, errlen,
                "--llm-offset %d leaves %s to no module (the encoders take ranks 0-%ld): use "
                "--llm-offset %d",
                s->llm_offset, gap, enc - 1, want);
}

// Upstream's colocated rules beyond the world: one encoder, llm pp 1,
// expert tp 1.
static int check_colocated(const hg_layout_spec *s, const encoder_list *l, char *err,
                           size_t errlen)
{
    if (s->llm_only)
        return hg_rule_fail(err, errlen, "--mimo-layout colocated needs an encoder; drop --llm-only");
    if (l->count != 1)
        return hg_rule_fail(err, errlen, "--mimo-layout colocated takes one encoder, not %d", l->count);
    if (s->llm_pp != 1)
        return hg_rule_fail(err, errlen, "--mimo-layout colocated needs --llm-pp 1, not %d", s->llm_pp);
    if (s->llm_expt_tp != 1)
        return hg_rule_fail(err, errlen, "--mimo-layout colocated needs --llm-expt-tp 1, not %d",
                    s->llm_expt_tp);
    return 0;
}

static int check_experts(const hg_layout_spec *s, int llm_size, char *err, size_t errlen)
{
    int experts = s->model.num_experts;
    if (experts > 0 && experts % s->llm_ep)
        return hg_rule_fail(err, errlen, "--num-experts %d is not divisible by --llm-ep %d", experts,
                    s->llm_ep);
    if (experts == 0 && s->llm_ep > 1)
        return hg_rule_fail(err, errlen, "--llm-ep %d needs experts; set --num-experts to a multiple of %d",
                    s->llm_ep, s->llm_ep);
    const int view_dims[] = {s->llm_expt_tp, s->llm_ep, s->llm_pp};
    long view = bounded_product(view_dims, 3); // -1 past HG_MAX_WORLD: cannot divide
    if (view < 0)
        return hg_rule_fail(err, errlen,
                    "--llm-expt-tp %d x --llm-ep %d x --llm-pp %d exceeds llm size %d "
                    "(tp x cp x pp x dp)",
                    s->llm_expt_tp, s->llm_ep, s->llm_pp, llm_size);
    if (view > llm_size || llm_size % view)
        return hg_rule_fail(err, errlen,
                    "llm size %d (tp x cp x pp x dp) is not divisible by --llm-expt-tp %d x "
                    "--llm-ep %d x --llm-pp %d = %ld",
                    llm_size, s->llm_expt_tp, s->llm_ep, s->llm_pp, view);
    return 0;
}

// Rule 6, per encoder: each encoder rank gets whole samples, and one dp
// divides the other (the bridge's fan-in/out, or the colocated re-sharding).
static int check_dp_match(const hg_layout_spec *s, const encoder_list *l, int i, char *err,
                          size_t errlen)
{
    long samples = (long)s->micro_batch_size * s->llm_dp;
    int dp = l->e[i].dp;
    char text[HG_GROUP_NAME_LEN + 32];
    if (samples % dp)
        return hg_rule_fail(err, errlen,
                    "--micro-batch-size %d x --llm-dp %d = %ld is not divisible by %s "
                    "(each encoder rank needs a whole number of samples)",
                    s->micro_batch_size, s->llm_dp, samples, dim_text(l, i, "dp", text, sizeof text));
    if (dp % s->llm_dp && s->llm_dp % dp)
        return hg_rule_fail(err, errlen, "%s and --llm-dp %d: one must divide the other for the %s",
                    dim_text(l, i, "dp", text, sizeof text), s->llm_dp,
                    s->colocated ? "re-sharding between them" : "bridge's fan-in/fan-out");
    return 0;
}

static int check_batch(hg_layout_spec *s, hg_plan *p, char *err, size_t errlen)
{
    long per_step = (long)s->micro_batch_size * s->llm_dp;
    if (s->global_batch_size == 0) {
        if (per_step > 1L << 30)
            return hg_rule_fail(err, errlen, "--micro-batch-size %d x --llm-dp %d is too large",
                        s->micro_batch_size, s->llm_dp);
        s->global_batch_size = (int)per_step;
    }
    if (s->global_batch_size % per_step)
        return hg_rule_fail(err, errlen,
                    "--global-batch-size %d is not divisible by --micro-batch-size %d x --llm-dp "
                    "%d = %ld",
                    s->global_batch_size, s->micro_batch_size, s->llm_dp, per_step);
    p->num_microbatches = (int)(s->global_batch_size / per_step);
    return 0;
}

int hg_padded_vocab(int vocab_size, int divisible_by, int tp)
{
    long multiple = (long)(divisible_by ? divisible_by : 1) * tp;
    return (int)((vocab_size + multiple - 1) / multiple * multiple);
}

// Megatron's padding: the vocabulary rounded up to a multiple of
// make_vocab_size_divisible_by x llm_tp.
static int pad_vocab(const hg_layout_spec *s, hg_plan *p, char *err, size_t errlen)
{
    int divisor = s->make_vocab_size_divisible_by ? s->make_vocab_size_divisible_by : 1;
    long multiple = (long)divisor * s->llm_tp;
    if (multiple > HG_MAX_VOCAB)
        return hg_rule_fail(err, errlen,
                    "--make-vocab-size-divisible-by %d x --llm-tp %d = %ld is above the "
                    "vocabulary limit of %d",
                    divisor, s->llm_tp, multiple, HG_MAX_VOCAB);
    p->padded_vocab_size = hg_padded_vocab(s->model.vocab_size, divisor, s->llm_tp);
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
    encoder_list l;
    if (check_grids(s, err, errlen) || list_encoders(s, &l, err, errlen))
        return -1;
    s->model.image_streams = l.count > 1 ? l.count : 0;
    if (hg_config_check(&s->model, err, errlen))
        return -1;
    s->encoder_shorthand = false; // the parser's note, checked; not part of the layout

    long enc_sizes[HG_MAX_ENCODERS], enc = 0;
    for (int i = 0; i < l.count; i++) {
        const int dims[] = {l.e[i].tp, l.e[i].dp};
        enc_sizes[i] = bounded_product(dims, 2);
        enc = enc < 0 || enc_sizes[i] < 0 ? -1 : enc + enc_sizes[i];
    }
    const int llm_dims[] = {s->llm_tp, s->llm_cp, s->llm_pp, s->llm_dp};
    long llm = bounded_product(llm_dims, 4);
    if (s->colocated && check_colocated(s, &l, err, errlen))
        return -1;
    if (check_world(s, &l, enc_sizes, enc, llm, p, err, errlen))
        return -1;
    if (s->llm_cp != 1)
        return hg_rule_fail(err, errlen,
                    "--llm-cp %d is not supported: context parallelism cannot cross the bridge "
                    "yet; use --llm-cp 1",
                    s->llm_cp);
    int offset = llm_offset(s, enc, err, errlen);
    if (offset < 0 || check_experts(s, (int)llm, err, errlen))
        return -1;
    for (int i = 0; i < l.count; i++)
        if (check_dp_match(s, &l, i, err, errlen))
            return -1;
    if (check_batch(s, p, err, errlen) || check_model_split(s, &l, err, errlen) ||
        pad_vocab(s, p, err, errlen))
        return -1;

    p->colocated = s->colocated;
    p->num_encoders = l.count;
    int next = 0;
    for (int i = 0; i < l.count; i++) {
        fill_module(&p->modules[p->num_modules], HG_MODULE_ENCODER, p->num_modules, l.e[i].name,
                    s->colocated ? 0 : next, l.e[i].tp, 1, l.e[i].dp, 1, 1, 1);
        next += p->modules[p->num_modules++].num_ranks;
    }
    fill_module(&p->modules[p->num_modules], HG_MODULE_LLM, p->num_modules, "llm", offset,
                s->llm_tp, s->llm_cp, s->llm_dp, s->llm_pp, s->llm_ep, s->llm_expt_tp);
    p->num_modules++;
    return check_spans(p, err, errlen);
}
