// The model on one GPU: the same forward and backward as the CPU model,
// with activations and working weights in bf16 (or fp32), fp32 master
// weights, gradients and AdamW moments, through the launchers of
// kernels/kernels.h.
#ifndef HGRID_MODEL_GPU_MODEL_H
#define HGRID_MODEL_GPU_MODEL_H

#include <stdint.h>

#include "kernels/kernels.h"
#include "model/optim.h"
#include "model/params.h"

typedef struct hg_gpu_model hg_gpu_model;

// Initialises the kernels library (one model per process) and a model for
// micro-batches of B with parameters initialised from seed. Exits with a
// message on a CUDA error; NULL with a message if the config is invalid.
hg_gpu_model *hg_gpu_model_create(const hg_model_config *cfg, int B, uint64_t seed, kdtype dt);
void hg_gpu_model_free(hg_gpu_model *model);

// patches (B, patches, patch_dim) and tokens (B, text_len) on the host.
// Runs forward and backward; the gradients (overwritten) stay on the GPU.
// Returns the mean loss over the caption targets.
float hg_gpu_model_forward_backward(hg_gpu_model *model, const float *patches,
                                    const int *tokens);
// The MoE load-balancing loss of the last forward (0 if dense); the
// gradients are those of the returned loss plus this.
float hg_gpu_model_aux_loss(const hg_gpu_model *model);
// The last forward's expert choices, (num_layers, B * seq_length, top-k)
// into topk on the host; nothing for a dense model.
void hg_gpu_model_routing(const hg_gpu_model *model, int *topk);
// Clips the global gradient norm and takes one AdamW step; returns the norm
// before clipping.
float hg_gpu_model_step(hg_gpu_model *model, const hg_optim_config *opt);

const hg_param_table *hg_gpu_model_table(const hg_gpu_model *model, hg_module_id module);
// Copies a module's fp32 master weights and gradients to the host (NULL: skipped).
void hg_gpu_model_copy_out(const hg_gpu_model *model, hg_module_id module, float *params,
                           float *grads);

#endif
