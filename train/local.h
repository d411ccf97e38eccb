// Every module on one rank: the training step of train.h on the layout
// whose every group has one rank (each encoder tp = dp = 1; LLM tp = cp =
// pp = dp = ep = 1), as one GPU (hgrid-worker --single-gpu) or a CPU test
// runs it. The encoders' (model->image_streams of them) and the LLM's
// workers run through the same ops; each bridge is a hand-off of the
// image embeddings (and back, their gradient), and there are no
// collectives.
#ifndef HGRID_TRAIN_LOCAL_H
#define HGRID_TRAIN_LOCAL_H

#include "train/train.h"

typedef struct tr_local tr_local;

// The model trained in micro-batches of micro_batch samples, global_batch
// samples a step (a multiple of it), parameters from seed. The vocabulary
// is trained as given: a caller that wants Megatron's padding passes
// hg_padded_vocab's size (as a job's plan does, tr_plan_as_trained). Returns NULL
// with a one-line reason in err.
tr_local *tr_local_create(const tr_ops *ops, const hg_model_config *model, int micro_batch,
                          int global_batch, uint64_t seed, char *err, size_t errlen);
void tr_local_free(tr_local *l);

// As tr_worker_forward_backward over both modules: returns the step's
// mean caption cross-entropy; the gradients stay in each module's worker.
float tr_local_forward_backward(tr_local *l, uint64_t data_seed, int step);
// As tr_worker_optimizer_step: clips by the norm over both modules and
// steps both; returns the norm before clipping.
float tr_local_optimizer_step(tr_local *l, const hg_optim_config *opt);
// The last forward's MoE load-balancing loss, summed over the layers of
// its last micro-batch (0 if dense), and its expert choices, (num_layers,
// micro_batch * seq_length, top-k) into topk on the host.
float tr_local_aux_loss(tr_local *l);
void tr_local_routing(tr_local *l, int *topk);
// Checkpoints of every module: the workers' files (train/checkpoint.h) of
// the layout above, so a checkpoint taken here loads into a job of that
// layout on two GPUs and back. Save after `step` completed steps; load
// sets *step. 0, or -1 with a one-line reason in err.
int tr_local_save(tr_local *l, const char *dir, int step, char *err, size_t errlen);
int tr_local_load(tr_local *l, const char *dir, int *step, char *err, size_t errlen);
// A module's worker (the first encoder's for the encoder): its shard
// (whole tensors), parameters and gradients.
tr_worker *tr_local_worker(tr_local *l, hg_module_id module);
// The worker of the plan's module `index` (each encoder in order, then the LLM).
tr_worker *tr_local_module(tr_local *l, int index);

#endif
