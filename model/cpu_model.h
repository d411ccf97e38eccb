// The whole model on the CPU in fp32, built from kernels/reference.h ops:
// encoder -> projection -> LLM over [image embeddings, caption tokens] ->
// mean cross-entropy on the caption's targets. The reference the GPU model
// and PyTorch are checked against.
#ifndef HGRID_MODEL_CPU_MODEL_H
#define HGRID_MODEL_CPU_MODEL_H

#include <stdint.h>

#include "model/optim.h"
#include "model/params.h"

typedef struct hg_cpu_acts hg_cpu_acts;

typedef struct {
    hg_model_config cfg;
    int B;
    int E; // encoders (hg_image_streams); encoder e's buffers at e * enc_table.total
    hg_param_table enc_table, llm_table;
    float *enc_params, *enc_grads; // (E * enc_table.total)
    float *llm_params, *llm_grads; // (llm_table.total)
    float *enc_m, *enc_v, *llm_m, *llm_v; // AdamW moments
    int step;                             // AdamW steps taken
    float aux_loss; // MoE load-balancing loss of the last forward (0 if dense), part of the loss
    uint64_t routing; // fingerprint of the last forward's expert choices (0 if dense)
    hg_cpu_acts *acts;
} hg_cpu_model;

// A model for micro-batches of B with parameters initialised from seed;
// NULL (and a message on stderr) if the config is invalid or memory short.
hg_cpu_model *hg_cpu_model_create(const hg_model_config *cfg, int B, uint64_t seed);
void hg_cpu_model_free(hg_cpu_model *model);

// patches (E, B, patches, patch_dim): each encoder's, in order (encoder
// e's images as hg_encoder_images draws them); tokens (B, text_len)
// captions as hg_batch writes them. Returns the mean loss over the caption targets; the
// loss the backward differentiates is that plus model->aux_loss.
float hg_cpu_model_forward(hg_cpu_model *model, const float *patches, const int *tokens);
// The last forward's expert choices, (num_layers, B * seq_length, top-k)
// into topk; nothing for a dense model.
void hg_cpu_model_routing(const hg_cpu_model *model, int *topk);
// Gradients of the last forward's loss, overwritten into *_grads.
void hg_cpu_model_backward(hg_cpu_model *model);
// Clips the gradients' global norm and takes one AdamW step; returns the
// norm before clipping.
float hg_cpu_model_step(hg_cpu_model *model, const hg_optim_config *opt);

#endif
