// A rank's shard of one module's parameters: the module's global table, a
// local table of the same tensors with this rank's shapes (hg_block_view_at
// and hg_tensor_at work on it unchanged), and how each local dimension maps
// into the global one. Megatron's splits: qkv (per q, k, v) and fc rows
// over tp (column-parallel), attn_proj and fc_proj columns over tp
// (row-parallel), the LM head / token embedding's vocab rows over tp,
// layers over pp, experts over ep; everything else is replicated.
#ifndef HGRID_TRAIN_SHARD_H
#define HGRID_TRAIN_SHARD_H

#include <stdint.h>

#include "model/params.h"

// A dimension of global size S seen as `parts` equal parts, each cut into
// `nshards` pieces; this rank holds piece `shard` of every part.
typedef struct {
    int parts, nshards, shard;
} tr_dim_split;

typedef struct {
    hg_param_table global, local; // local counts are 0 for tensors absent on this rank
    tr_dim_split split[HG_MAX_TENSORS][4];
    unsigned char tp_split[HG_MAX_TENSORS]; // some dimension is split over tp
    unsigned char expert[HG_MAX_TENSORS];   // per-expert weights (reduced over expt_dp)
    // This rank's copy counts toward the global gradient norm (one copy of
    // each element over the module's ranks).
    unsigned char owner[HG_MAX_TENSORS];
} tr_shard;

// The shard of `rank` in module (one of plan's modules holding it).
// Returns 0, or -1 with a one-line reason in err when the model does not
// split over the layout.
int tr_shard_build(tr_shard *s, const hg_plan *plan, const hg_module_grid *module, int rank,
                   char *err, size_t errlen);
// Element local_index (row-major in the local shape) of tensor id, as a
// row-major index into the global tensor.
size_t tr_shard_global_index(const tr_shard *s, int id, size_t local_index);
// Initialises every local element to its global element's seeded value.
void tr_shard_init(const tr_shard *s, uint64_t seed, float *params);

#endif
