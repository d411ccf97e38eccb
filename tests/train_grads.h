// The train tests' gradient comparison: a rank's shard of gradients against
// the single rank's whole tensors of its module.
#ifndef HGRID_TESTS_TRAIN_GRADS_H
#define HGRID_TESTS_TRAIN_GRADS_H

#include <math.h>

#include "train/train.h"

// Worst per-tensor max|diff| / max|ref| of w's gradients against ref (the
// module's whole gradients, laid out as the shard's global table).
static inline double shard_grads_rel(tr_worker *w, const float *ref)
{
    const tr_shard *s = tr_worker_shard(w);
    const float *g = tr_worker_grads(w);
    double worst = 0;
    for (int id = 0; id < s->local.num_tensors; id++) {
        const hg_tensor_info *lt = &s->local.tensors[id];
        const float *r = ref + s->global.tensors[id].offset;
        double diff = 0, mag = 1e-30;
        for (size_t i = 0; i < lt->count; i++) {
            double b = r[tr_shard_global_index(s, id, i)];
            diff = fmax(diff, fabs(g[lt->offset + i] - b));
            mag = fmax(mag, fabs(b));
        }
        if (lt->count && mag > 1e-20)
            worst = fmax(worst, diff / mag);
    }
    return worst;
}

#endif
