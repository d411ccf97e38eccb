// Training hyperparameters shared by the CPU and GPU models: AdamW with
// decoupled weight decay on matrices and embeddings only, and clipping of
// the gradient norm over both modules together.
#ifndef HGRID_MODEL_OPTIM_H
#define HGRID_MODEL_OPTIM_H

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float max_grad_norm; // clip to this global L2 norm; 0: no clipping
} hg_optim_config;

// lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1, clip at 1.0.
void hg_optim_defaults(hg_optim_config *o);

// The factor grads are scaled by: min(1, max_norm / norm).
float hg_clip_scale(const hg_optim_config *o, float grad_norm);

#endif
