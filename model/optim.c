// Optimizer defaults and the clipping factor.
#include "model/optim.h"

void hg_optim_defaults(hg_optim_config *o)
{
    o->lr = 1e-3f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->weight_decay = 0.1f;
    o->max_grad_norm = 1.0f;
}

float hg_clip_scale(const hg_optim_config *o, float grad_norm)
{
    if (o->max_grad_norm <= 0 || grad_norm <= o->max_grad_norm)
        return 1.0f;
    return o->max_grad_norm / grad_norm;
}
