// A model-state dump for comparing against PyTorch: config, optimizer
// settings, the parameter tables, initial weights, one batch, the loss and
// every gradient on it, and the losses of the AdamW steps that follow.
// tests/torch/model.py reads it; the format is documented there and below.
#ifndef HGRID_MODEL_DUMP_H
#define HGRID_MODEL_DUMP_H

#include "model/optim.h"
#include "model/params.h"

typedef struct {
    const char *mode; // "cpu", "gpu-fp32" or "gpu-bf16" (up to 15 chars)
    const hg_model_config *cfg;
    const hg_optim_config *opt;
    int B;
    const hg_param_table *enc, *llm;
    const float *enc_params, *llm_params; // before any step
    const float *patches;                 // (B, patches, patch_dim)
    const int *tokens;                    // (B, text_len)
    float loss;                           // caption loss on that batch, before any step
    float aux_loss;                       // MoE load-balancing loss with it (0 if dense)
    const float *enc_grads, *llm_grads;
    const int *routing;         // (num_layers, B * seq_length, top-k) experts of that
                                // forward; written only with experts
    int steps;                  // AdamW steps on the same batch
    const float *step_losses;   // (steps) caption loss before each step (the first is `loss`)
    const float *step_norms;    // (steps) gradient norm before clipping
} hg_dump;

// Layout (little-endian): "HGDUMP1\0", mode[16], 13 int32 of hg_model_config
// in declaration order, int32 B, 7 float32 (lr beta1 beta2 eps weight_decay
// max_grad_norm moe_aux_coeff), int32 steps, then per module (encoder, LLM):
// int32 num_tensors, per tensor {char name[48], int32 ndim, int32 shape[4],
// int64 offset, int64 count, int32 decay}, int64 total. Then float32 arrays:
// encoder params, LLM params, patches; int32 tokens; float32 loss, aux_loss,
// encoder grads, LLM grads; with experts int32 routing; float32
// step_losses, step_norms.
// Returns 0, or -1 with a one-line message on stderr.
int hg_dump_write(const char *path, const hg_dump *d);

#endif
