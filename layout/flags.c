// Layout flags with Megatron-LM's names.
#include "layout/layout.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char hg_layout_flags_help[] =
    "layout flags (Megatron-LM names):\n"
    "  --encoder-tp N --encoder-dp N        encoder grid (default 2, 2)\n"
    "  --encoder NAME:tp=T,dp=D             one of several encoders (repeat, in rank order;\n"
    "                                       instead of --encoder-tp/--encoder-dp)\n"
    "  --llm-tp N --llm-cp N --llm-pp N --llm-dp N\n"
    "                                       LLM grid (default 2, 1, 1, 2)\n"
    "  --llm-ep N --llm-expt-tp N           expert parallel and expert tp sizes (default 1, 1)\n"
    "  --llm-offset N                       the LLM's first rank (default: right after the\n"
    "                                       encoders; 0 with --llm-only or colocated)\n"
    "  --mimo-layout non-colocated|colocated\n"
    "                                       colocated: encoder and LLM both span every rank\n"
    "                                       (default non-colocated)\n"
    "  --llm-only                           no encoder: the LLM grid is the whole world\n"
    "  --world-size N                       must equal the grids' total if given\n"
    "  --micro-batch-size N                 default 1\n"
    "  --global-batch-size N                default micro-batch-size x llm-dp\n"
    "  --num-layers N --hidden-size N --num-attention-heads N --ffn-hidden-size N\n"
    "  --vocab-size N --seq-length N        LLM shape (default 12, 768, 12, 4 x hidden,\n"
    "                                       32000, 1024)\n"
    "  --make-vocab-size-divisible-by N     pad the vocabulary to a multiple of N x llm-tp\n"
    "                                       (default 128)\n"
    "  --num-experts N --moe-router-topk N  MoE (default 0 = dense, top-2)\n"
    "  --encoder-num-layers N --encoder-hidden-size N --encoder-num-attention-heads N\n"
    "  --image-size N --patch-size N        encoder shape (default 12, 384, 6, 224, 16)\n";

typedef struct {
    const char *name;
    size_t offset;
    bool zero_means_default; // an explicit 0 would be silently replaced
} int_flag;

#define SPEC(field) offsetof(hg_layout_spec, field)
#define MODEL(field) (offsetof(hg_layout_spec, model) + offsetof(hg_model_config, field))

static const int_flag int_flags[] = {
    {"encoder-tp", SPEC(encoder_tp), false},
    {"encoder-dp", SPEC(encoder_dp), false},
    {"llm-tp", SPEC(llm_tp), false},
    {"llm-cp", SPEC(llm_cp), false},
    {"llm-pp", SPEC(llm_pp), false},
    {"llm-dp", SPEC(llm_dp), false},
    {"llm-ep", SPEC(llm_ep), false},
    {"llm-expt-tp", SPEC(llm_expt_tp), false},
    {"llm-offset", SPEC(llm_offset), false},
    {"world-size", SPEC(world_size), true},
    {"micro-batch-size", SPEC(micro_batch_size), false},
    {"global-batch-size", SPEC(global_batch_size), true},
    {"num-layers", MODEL(num_layers), false},
    {"hidden-size", MODEL(hidden_size), false},
    {"num-attention-heads", MODEL(num_attention_heads), false},
    {"ffn-hidden-size", MODEL(ffn_hidden_size), true},
    {"vocab-size", MODEL(vocab_size), false},
    {"seq-length", MODEL(seq_length), false},
    {"make-vocab-size-divisible-by", SPEC(make_vocab_size_divisible_by), true},
    {"num-experts", MODEL(num_experts), false},
    {"moe-router-topk", MODEL(moe_router_topk), false},
    {"encoder-num-layers", MODEL(encoder_num_layers), false},
    {"encoder-hidden-size", MODEL(encoder_hidden_size), false},
    {"encoder-num-attention-heads", MODEL(encoder_num_attention_heads), false},
    {"image-size", MODEL(image_size), false},
    {"patch-size", MODEL(patch_size), false},
};

// Strict decimal integer: optional sign, digits, nothing else, fits an int.
static bool parse_int(const char *text, int *out)
{
    if (!*text || isspace((unsigned char)text[0]))
        return false;
    errno = 0;
    char *end;
    long v = strtol(text, &end, 10);
    if (*end || errno || v < INT_MIN || v > INT_MAX)
        return false;
    *out = (int)v;
    return true;
}

// --encoder NAME:tp=T,dp=D (tp and dp default to 1).
static hg_flag_status parse_encoder(hg_layout_spec *spec, const char *value, char *err,
                                    size_t errlen)
{
    if (spec->num_encoders == HG_MAX_ENCODERS) {
        snprintf(err, errlen, "--encoder: at most %d encoders", HG_MAX_ENCODERS);
        return HG_FLAG_INVALID;
    }
    hg_encoder_spec e = {.tp = 1, .dp = 1};
    const char *colon = strchr(value, ':');
    size_t name_len = colon ? (size_t)(colon - value) : strlen(value);
    if (name_len == 0 || name_len >= sizeof e.name) {
        snprintf(err, errlen, "--encoder '%.40s' needs NAME:tp=T,dp=D with a name of 1 to %zu "
                 "characters", value, sizeof e.name - 1);
        return HG_FLAG_USAGE;
    }
    memcpy(e.name, value, name_len);
    for (const char *at = colon ? colon + 1 : NULL; at && *at;) {
        const char *end = strchr(at, ',');
        size_t len = end ? (size_t)(end - at) : strlen(at);
        char item[32];
        int *dst = strncmp(at, "tp=", 3) == 0 ? &e.tp : strncmp(at, "dp=", 3) == 0 ? &e.dp : NULL;
        snprintf(item, sizeof item, "%.*s", (int)(len > 3 ? len - 3 : 0), at + 3);
        if (!dst || len <= 3 || len >= sizeof item || !parse_int(item, dst)) {
            snprintf(err, errlen, "--encoder '%.40s': '%.*s' is not tp=N or dp=N", value,
                     (int)(len < 32 ? len : 32), at);
            return HG_FLAG_USAGE;
        }
        at = end ? end + 1 : NULL;
    }
    spec->encoders[spec->num_encoders++] = e;
    return HG_FLAG_OK;
}

static hg_flag_status parse_mimo_layout(hg_layout_spec *spec, const char *value, char *err,
                                        size_t errlen)
{
    if (strcmp(value, "colocated") == 0 || strcmp(value, "non-colocated") == 0) {
        spec->colocated = strcmp(value, "colocated") == 0;
        return HG_FLAG_OK;
    }
    snprintf(err, errlen, "--mimo-layout '%.40s' must be colocated or non-colocated", value);
    return HG_FLAG_USAGE;
}

// Layout flags whose value is text.
static const struct {
    const char *name;
    hg_flag_status (*parse)(hg_layout_spec *, const char *, char *, size_t);
} text_flags[] = {
    {"encoder", parse_encoder},
    {"mimo-layout", parse_mimo_layout},
};

hg_flag_status hg_layout_parse_flag(hg_layout_spec *spec, int argc, char **argv, int *i,
                                    char *err, size_t errlen)
{
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) != 0)
        return HG_FLAG_UNKNOWN;
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
    if (name_len == strlen("llm-only") && strncmp(name, "llm-only", name_len) == 0) {
        if (eq) {
            snprintf(err, errlen, "--llm-only takes no value");
            return HG_FLAG_USAGE;
        }
        spec->llm_only = true;
        (*i)++;
        return HG_FLAG_OK;
    }
    for (size_t f = 0; f < sizeof text_flags / sizeof text_flags[0]; f++) {
        if (strlen(text_flags[f].name) != name_len ||
            strncmp(text_flags[f].name, name, name_len) != 0)
            continue;
        const char *value = eq ? eq + 1 : (*i + 1 < argc ? argv[*i + 1] : NULL);
        if (!value) {
            snprintf(err, errlen, "--%s needs a value", text_flags[f].name);
            return HG_FLAG_USAGE;
        }
        hg_flag_status st = text_flags[f].parse(spec, value, err, errlen);
        if (st == HG_FLAG_OK)
            *i += eq ? 1 : 2;
        return st;
    }
    for (size_t f = 0; f < sizeof int_flags / sizeof int_flags[0]; f++) {
        const int_flag *flag = &int_flags[f];
        if (strlen(flag->name) != name_len || strncmp(flag->name, name, name_len) != 0)
            continue;
        const char *value = eq ? eq + 1 : (*i + 1 < argc ? argv[*i + 1] : NULL);
        if (!value) {
            snprintf(err, errlen, "--%s needs an integer value", flag->name);
            return HG_FLAG_USAGE;
        }
        int v;
        if (!parse_int(value, &v)) {
            char *end;
            if (*value && (strtoll(value, &end, 10), !*end))
                snprintf(err, errlen, "--%s '%.40s' is out of range: a whole number from 1 to %d",
                         flag->name, value, INT_MAX);
            else
                snprintf(err, errlen, "--%s '%.40s' is not an integer", flag->name, value);
            return HG_FLAG_USAGE;
        }
        if (v <= 0 && flag->zero_means_default) {
            snprintf(err, errlen, "--%s %d must be a positive integer", flag->name, v);
            return HG_FLAG_INVALID;
        }
        if (v < 0 && flag->offset == SPEC(llm_offset)) {
            snprintf(err, errlen, "--llm-offset %d must be 0 or a positive integer", v);
            return HG_FLAG_INVALID;
        }
        *(int *)((char *)spec + flag->offset) = v;
        spec->encoder_shorthand |=
            flag->offset == SPEC(encoder_tp) || flag->offset == SPEC(encoder_dp);
        spec->llm_offset_given |= flag->offset == SPEC(llm_offset);
        *i += eq ? 1 : 2;
        return HG_FLAG_OK;
    }
    return HG_FLAG_UNKNOWN;
}

const char *hg_layout_flag_name(size_t k)
{
    size_t ntext = sizeof text_flags / sizeof text_flags[0];
    size_t nint = sizeof int_flags / sizeof int_flags[0];
    if (k == 0)
        return "llm-only";
    if (k <= ntext)
        return text_flags[k - 1].name;
    return k <= ntext + nint ? int_flags[k - 1 - ntext].name : NULL;
}

// Normalised for comparison: the ffn default spelled out, top-k only with experts.
static hg_model_config normalised(const hg_model_config *m)
{
    hg_model_config n = *m;
    if (n.ffn_hidden_size == 0)
        n.ffn_hidden_size = 4 * n.hidden_size;
    if (n.num_experts == 0)
        n.moe_router_topk = 0;
    return n;
}

const char *hg_model_config_differs(const hg_model_config *a, const hg_model_config *b,
                                    int *a_value, int *b_value)
{
    hg_model_config na = normalised(a), nb = normalised(b);
    size_t first = offsetof(hg_layout_spec, model);
    for (size_t f = 0; f < sizeof int_flags / sizeof int_flags[0]; f++) {
        size_t at = int_flags[f].offset;
        if (at < first || at >= first + sizeof(hg_model_config))
            continue;
        int va = *(const int *)((const char *)&na + at - first);
        int vb = *(const int *)((const char *)&nb + at - first);
        if (va != vb) {
            *a_value = va;
            *b_value = vb;
            return int_flags[f].name;
        }
    }
    return NULL;
}
