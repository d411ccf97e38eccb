// Named model configurations (tiny, tiny-moe, small, small-moe, 1b) for the
// model the workers train. The shape is the layout engine's hg_model_config;
// this adds only what training on one GPU needs beyond it.
#ifndef HGRID_MODEL_CONFIG_H
#define HGRID_MODEL_CONFIG_H

#include "layout/layout.h"

typedef struct {
    const char *name;
    hg_model_config model;
    int batch_size; // default micro-batch of the single-GPU trainer
} hg_config;

// Weight of the MoE load-balancing loss (Switch/Megatron form) in the loss.
#define HG_MOE_AUX_COEFF 0.01f

// The named configuration, or NULL if there is none of that name.
const hg_config *hg_config_find(const char *name);
// Names of every configuration, separated by spaces, for usage messages.
extern const char hg_config_names[];

// Derived sizes; one definition each.
int hg_num_patches(const hg_model_config *m);  // (image_size / patch_size)^2
int hg_patch_dim(const hg_model_config *m);    // patch_size^2 * 3 channels
int hg_image_streams(const hg_model_config *m); // encoders feeding the LLM's prefix (at least 1)
int hg_text_len(const hg_model_config *m);     // caption positions: seq_length - streams x patches
int hg_ffn_size(const hg_model_config *m);     // ffn_hidden_size, or 4 * hidden_size
int hg_encoder_ffn_size(const hg_model_config *m); // 4 * encoder_hidden_size

#endif
