// The named configurations and the sizes derived from them.
#include "model/config.h"

#include <string.h>

static const hg_config configs[] = {
    // Tests: runs on the CPU in seconds. Head size 32, the GPU attention's smallest.
    {.name = "tiny",
     .model = {.num_layers = 2, .hidden_size = 128, .num_attention_heads = 4, .vocab_size = 256,
               .seq_length = 64, .encoder_num_layers = 2, .encoder_hidden_size = 64,
               .encoder_num_attention_heads = 2, .image_size = 16, .patch_size = 4},
     .batch_size = 16},
    // tiny with a top-2 MoE of 8 experts in every LLM block.
    {.name = "tiny-moe",
     .model = {.num_layers = 2, .hidden_size = 128, .num_attention_heads = 4, .vocab_size = 256,
               .seq_length = 64, .num_experts = 8, .moe_router_topk = 2, .encoder_num_layers = 2,
               .encoder_hidden_size = 64, .encoder_num_attention_heads = 2, .image_size = 16,
               .patch_size = 4},
     .batch_size = 16},
    // GPT-2 small LLM (~125M) and a ViT-S/16-sized encoder (~21M); layout defaults.
    {.name = "small",
     .model = {.num_layers = 12, .hidden_size = 768, .num_attention_heads = 12,
               .vocab_size = 32000, .seq_length = 1024, .encoder_num_layers = 12,
               .encoder_hidden_size = 384, .encoder_num_attention_heads = 6, .image_size = 224,
               .patch_size = 16},
     .batch_size = 16},
    // small with a top-2 MoE of 8 experts (GPT-2 small's MLP each) in every LLM
    // block: ~540M LLM parameters, ~180M active per token; the MoE benchmark.
    {.name = "small-moe",
     .model = {.num_layers = 12, .hidden_size = 768, .num_attention_heads = 12,
               .vocab_size = 32000, .seq_length = 1024, .num_experts = 8, .moe_router_topk = 2,
               .encoder_num_layers = 12, .encoder_hidden_size = 384,
               .encoder_num_attention_heads = 6, .image_size = 224, .patch_size = 16},
     .batch_size = 16},
    // ~1.3B LLM with a ViT-B/16-sized encoder (~86M).
    {.name = "1b",
     .model = {.num_layers = 24, .hidden_size = 2048, .num_attention_heads = 16,
               .vocab_size = 32000, .seq_length = 2048, .encoder_num_layers = 12,
               .encoder_hidden_size = 768, .encoder_num_attention_heads = 12, .image_size = 224,
               .patch_size = 16},
     .batch_size = 4},
};

const char hg_config_names[] = "tiny tiny-moe small small-moe 1b";

const hg_config *hg_config_find(const char *name)
{
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        if (strcmp(configs[i].name, name) == 0)
            return &configs[i];
    return NULL;
}

int hg_num_patches(const hg_model_config *m)
{
    int side = m->image_size / m->patch_size;
    return side * side;
}

int hg_patch_dim(const hg_model_config *m) { return m->patch_size * m->patch_size * 3; }

int hg_image_streams(const hg_model_config *m) { return m->image_streams > 1 ? m->image_streams : 1; }

int hg_text_len(const hg_model_config *m)
{
    return m->seq_length - hg_image_streams(m) * hg_num_patches(m);
}

int hg_ffn_size(const hg_model_config *m)
{
    return m->ffn_hidden_size ? m->ffn_hidden_size : 4 * m->hidden_size;
}

int hg_encoder_ffn_size(const hg_model_config *m) { return 4 * m->encoder_hidden_size; }
