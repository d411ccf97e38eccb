// Parameter layout: each module (encoder, LLM) keeps all its weights in one
// contiguous buffer of named tensors at fixed offsets, so checkpoints,
// optimizer state, gradients and tp shards are plain ranges of it. Block
// tensors are stacked over layers: (L, ...). Linear weights are (out, in).
#ifndef HGRID_MODEL_PARAMS_H
#define HGRID_MODEL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "layout/layout.h"

// The twelve tensors of a pre-LN transformer block, in table order.
enum {
    HG_LN1_W, HG_LN1_B,             // (L, C)
    HG_QKV_W, HG_QKV_B,             // (L, 3C, C), (L, 3C)
    HG_ATTN_PROJ_W, HG_ATTN_PROJ_B, // (L, C, C), (L, C)
    HG_LN2_W, HG_LN2_B,             // (L, C)
    HG_FC_W, HG_FC_B,               // (L, F, C), (L, F)
    HG_FC_PROJ_W, HG_FC_PROJ_B,     // (L, C, F), (L, C)
    HG_ROUTER_W,                    // (L, E, C); empty without experts
    HG_BLOCK_TENSORS
};

// Encoder tensors: patch embedding, position embedding, blocks, final
// LayerNorm, projection to the LLM's hidden size.
enum {
    HG_ENC_PATCH_W, HG_ENC_PATCH_B, // (Ce, patch_dim), (Ce)
    HG_ENC_POS,                     // (patches, Ce)
    HG_ENC_BLOCK,                   // first of HG_BLOCK_TENSORS
    HG_ENC_LNF_W = HG_ENC_BLOCK + HG_BLOCK_TENSORS, HG_ENC_LNF_B, // (Ce)
    HG_ENC_PROJ_W, HG_ENC_PROJ_B,   // (C, Ce), (C)
    HG_ENC_TENSORS
};

// With E experts (LLM only) the MLP tensors gain an expert dimension after
// the layer one: fc_w (L, E, F, C), fc_b (L, E, F), fc_proj_w (L, E, C, F),
// fc_proj_b (L, E, C); each expert's weights are contiguous.

// LLM tensors; the LM head is tied to the token embedding.
enum {
    HG_LLM_WTE,   // (V, C)
    HG_LLM_WPE,   // (seq_length, C)
    HG_LLM_BLOCK, // first of HG_BLOCK_TENSORS
    HG_LLM_LNF_W = HG_LLM_BLOCK + HG_BLOCK_TENSORS, HG_LLM_LNF_B, // (C)
    HG_LLM_TENSORS
};

typedef enum { HG_INIT_ZERO, HG_INIT_ONE, HG_INIT_NORMAL } hg_init_kind;

typedef struct {
    const char *name; // "blocks.qkv_w"
    int ndim;
    int shape[4];
    size_t offset, count; // in elements, inside the module's buffer
    hg_init_kind init;
    float std;  // HG_INIT_NORMAL only
    int decay;  // weight decay applies: matrices and embeddings, not biases or gains
} hg_tensor_info;

#define HG_MAX_TENSORS 24

typedef struct {
    hg_module_id module;
    int num_layers, first_block; // first_block: HG_ENC_BLOCK or HG_LLM_BLOCK
    int num_tensors;
    hg_tensor_info tensors[HG_MAX_TENSORS];
    size_t total; // elements of the whole buffer
} hg_param_table;

// The module's tensors for model m, in the enum's order.
void hg_param_table_build(hg_param_table *t, hg_module_id module, const hg_model_config *m);

// GPT-2 init: normal(0, 0.02) weights and embeddings, residual projections
// 0.02 / sqrt(2 L), zero biases, unit LayerNorm gains. Each element is a
// function of (seed, module, tensor, element index) alone.
void hg_params_init(const hg_param_table *t, uint64_t seed, float *params);
// fill(ctx, lo, hi) over [0, total) in ranges, on as many threads as this
// process may run on (its CPU affinity, at most 32; one below 2^20
// elements). For inits whose values do not depend on the split: a 1b
// model's 1.4G values take two minutes on one core.
void hg_params_parallel(size_t total, void (*fill)(void *ctx, size_t lo, size_t hi), void *ctx);
// out[offset + i] = value(ctx, id, i) for every element i of every tensor
// id of t, through hg_params_parallel.
void hg_params_fill(const hg_param_table *t, float (*value)(void *ctx, int id, size_t index),
                    void *ctx, float *out);
// The value hg_params_init gives element `index` (row-major in the tensor's
// shape) of tensor `id`: what lets a shard initialise only itself.
float hg_param_init_value(const hg_param_table *t, uint64_t seed, int id, size_t index);

// One layer's block tensors inside a buffer of elements of elem_size bytes
// (fp32 master, bf16 working copy or fp32 gradients, on host or device).
typedef struct {
    void *ln1_w, *ln1_b, *qkv_w, *qkv_b, *attn_proj_w, *attn_proj_b;
    void *ln2_w, *ln2_b, *fc_w, *fc_b, *fc_proj_w, *fc_proj_b; // expert 0's with experts
    void *router_w;
} hg_block_view;

void hg_block_view_at(const hg_param_table *t, void *base, size_t elem_size, int layer,
                      hg_block_view *v);
// Tensor `id` (an enum value of the table's module) inside such a buffer.
void *hg_tensor_at(const hg_param_table *t, void *base, size_t elem_size, int id);

#endif
