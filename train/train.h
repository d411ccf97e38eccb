// Distributed training of the encoder(s) + LLM model over a layout: one
// tr_worker per rank, driven only by the rank's view of the layout (its
// coordinates and its groups, as an Assignment gives them). The worker
// initialises only its shard, runs the 1F1B schedule over the step's
// micro-batches (each encoder follows the LLM's first stage, across its
// bridge), reduces the gradients over dp / expt_dp / the tied-embedding
// group, and takes a clipped AdamW step on its shard. A colocated rank
// runs both modules micro-batch by micro-batch, the hand-off a
// re-sharding between the encoder's dp and the LLM's (train/colocated.c).
#ifndef HGRID_TRAIN_TRAIN_H
#define HGRID_TRAIN_TRAIN_H

#include <stdint.h>

#include "layout/layout.h"
#include "model/optim.h"
#include "train/comm.h"
#include "train/ops.h"
#include "train/shard.h"

typedef struct tr_worker tr_worker;

// A rank's groups: g[i][kind] in the i-th module holding it (plan order: a
// colocated rank's encoder, then its LLM; NULL where it is in none, e.g.
// embd on a middle stage), and bridge[b] of bridge b (NULL unless the rank
// is one of its leaders).
typedef struct {
    tr_group *g[2][HG_NUM_GROUP_KINDS];
    tr_group *bridge[HG_MAX_ENCODERS];
} tr_rank_groups;

// The worker uses the groups, the caller frees them after tr_worker_free.
// Returns NULL with a one-line reason in err. The worker runs its ops
// through `ops` (its buffers live in the ops' memory; the groups' backend
// must move that memory); tr_worker_create uses the CPU reference ops.
// The plan as the trainer trains it: the job's model with Megatron's padded
// vocabulary (plan->padded_vocab_size: a multiple of
// make_vocab_size_divisible_by x llm_tp; the padding rows are never a
// target but take part in the softmax, as in Megatron).
void tr_plan_as_trained(hg_plan *plan);
tr_worker *tr_worker_create_with(const tr_ops *ops, const hg_plan *plan, int rank,
                                 const tr_rank_groups *groups, uint64_t seed, char *err,
                                 size_t errlen);
tr_worker *tr_worker_create(const hg_plan *plan, int rank, const tr_rank_groups *groups,
                            uint64_t seed, char *err, size_t errlen);
void tr_worker_free(tr_worker *w);

// Forward and backward of global batch `step` (samples step *
// global_batch_size onward of the synthetic data under data_seed); leaves
// the reduced gradients of the step's loss (the mean over micro-batches of
// each micro-batch's mean caption cross-entropy plus its load-balancing
// loss) in the worker's gradient buffer. Returns the step's mean caption
// cross-entropy on the LLM's last pipeline stage, 0 on other ranks.
float tr_worker_forward_backward(tr_worker *w, uint64_t data_seed, int step);
// Whether ok holds on every rank of both modules (every rank calls it):
// e.g. all loaded their checkpoint shard, so none waits on a failed one.
int tr_worker_all_ok(tr_worker *w, int ok);
// Whether forward_backward returns the step's loss here (the LLM's last stage).
int tr_worker_has_loss(const tr_worker *w);
// Whether the data-parallel reduction of the blocks' large gradients
// (weight matrices) runs layer by layer during the step's last backward,
// beside it where the backend allows (default: after the backward).
void tr_worker_set_dp_overlap(tr_worker *w, int on);
// Clips by the global gradient norm over both modules and takes one AdamW
// step on the shard; returns the norm before clipping (on every rank).
float tr_worker_optimizer_step(tr_worker *w, const hg_optim_config *opt);

// The shard's tables and its parameter and gradient buffers
// (local_table.total elements each, fp32, in the ops' memory) of the
// rank's first module (its encoder on a colocated rank).
const tr_shard *tr_worker_shard(const tr_worker *w);
float *tr_worker_params(tr_worker *w);
float *tr_worker_grads(tr_worker *w);
// A colocated rank's LLM part (its shard, parameters and gradients through
// the calls above); NULL on other ranks.
tr_worker *tr_worker_colocated_llm(tr_worker *w);

#endif
