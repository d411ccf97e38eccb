// The model shape's own rules and bounds, with no grid (hg_config_check).
#include <stdio.h>

#include "layout/layout.h"
#include "layout/rules.h"

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
            return hg_rule_fail(err, errlen, "%s %d is above the limit of %d", b[i].flag, b[i].value,
                        b[i].bound);
    return 0;
}

// One weight matrix's elements, which the kernels index with an int.
static int check_tensor(const char *what, long rows, long cols, char *err, size_t errlen)
{
    if (rows * cols > HG_MAX_TENSOR)
        return hg_rule_fail(err, errlen, "%s of %ld x %ld exceeds the limit of %ld elements per tensor",
                    what, rows, cols, (long)HG_MAX_TENSOR);
    return 0;
}

int hg_config_check(const hg_model_config *m, char *err, size_t errlen)
{
    const hg_named_value sizes[] = {
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
    if (hg_rule_positive(sizes, sizeof sizes / sizeof sizes[0], err, errlen))
        return -1;
    if (m->ffn_hidden_size < 0)
        return hg_rule_fail(err, errlen, "--ffn-hidden-size %d must be a positive integer",
                    m->ffn_hidden_size);
    if (m->num_experts < 0)
        return hg_rule_fail(err, errlen, "--num-experts %d must be 0 (dense) or a positive integer",
                    m->num_experts);
    if (check_bounds(m, err, errlen))
        return -1;
    long ffn = m->ffn_hidden_size ? m->ffn_hidden_size : 4L * m->hidden_size;
    if (ffn > HG_MAX_FFN_HIDDEN)
        return hg_rule_fail(err, errlen, "--ffn-hidden-size %ld (4 x --hidden-size) is above the limit of %d",
                    ffn, HG_MAX_FFN_HIDDEN);
    if (m->num_experts > 0 && (m->moe_router_topk < 1 || m->moe_router_topk > m->num_experts))
        return hg_rule_fail(err, errlen, "--moe-router-topk %d must be between 1 and --num-experts %d",
                    m->moe_router_topk, m->num_experts);
    if (m->hidden_size % m->num_attention_heads)
        return hg_rule_fail(err, errlen, "--hidden-size %d is not divisible by --num-attention-heads %d",
                    m->hidden_size, m->num_attention_heads);
    if (m->encoder_hidden_size % m->encoder_num_attention_heads)
        return hg_rule_fail(err, errlen,
                    "--encoder-hidden-size %d is not divisible by --encoder-num-attention-heads %d",
                    m->encoder_hidden_size, m->encoder_num_attention_heads);
    if (m->patch_size > m->image_size || m->image_size % m->patch_size)
        return hg_rule_fail(err, errlen, "--image-size %d is not a multiple of --patch-size %d",
                    m->image_size, m->patch_size);
    long side = m->image_size / m->patch_size, patches = side * side;
    if (m->image_streams < 0 || m->image_streams > HG_MAX_ENCODERS)
        return hg_rule_fail(err, errlen, "%d image streams: at most %d encoders", m->image_streams,
                    HG_MAX_ENCODERS);
    int streams = m->image_streams > 1 ? m->image_streams : 1;
    long prefix = patches * streams;
    char each[32] = "";
    if (streams > 1)
        snprintf(each, sizeof each, " for each of %d encoders", streams);
    if (m->seq_length - prefix < HG_MIN_CAPTION_POSITIONS)
        return hg_rule_fail(err, errlen,
                    "--seq-length %d leaves %ld caption positions after %ld patches (--image-size "
                    "%d / --patch-size %d%s); need %d",
                    m->seq_length, m->seq_length - prefix, prefix, m->image_size, m->patch_size,
                    each, HG_MIN_CAPTION_POSITIONS);
    if (m->vocab_size < HG_MIN_VOCAB)
        return hg_rule_fail(err, errlen, "--vocab-size %d is below the %d caption tokens", m->vocab_size,
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
