// The worker's state, shared by its parts (worker.c: setup, schedule,
// gradient reduction, optimizer; llm_stage.c and encoder_stage.c: one
// micro-batch's forward and backward of each module). Internal to train/.
#ifndef HGRID_TRAIN_WORKER_IMPL_H
#define HGRID_TRAIN_WORKER_IMPL_H

#include "train/schedule.h"
#include "train/tp_stack.h"
#include "train/train.h"

// A leader's bridge edges (fan-in/out k), and a batch: one op's sends
// and the next op's receives, each at most the edges or one neighbour.
enum { TR_MAX_EDGES = 64, TR_MAX_P2P = 2 * TR_MAX_EDGES };

// Per micro-batch in flight, module-specific.
typedef struct {
    float *patches;                   // encoder: (B, P, D)
    float *lnf, *lnf_mean, *lnf_rstd; // encoder (B, P, Ce); LLM last stage (B, T, C); (B, P|T)
    float *img;                       // encoder: (B, P, C) image embeddings for the LLM
    int *tokens;                      // LLM: (B, Tt)
    int *targets;                     // LLM: (B, T) next token, 0 where masked
    float *mask;                      // LLM: (B, T)
    float count;                      // LLM: caption targets in the micro-batch
    float *logits;                    // LLM last stage: (B, T, V/tp)
} tr_slot;

struct tr_worker {
    hg_plan plan;
    int rank, llm; // llm: this rank is in the LLM grid
    hg_coords co;
    const hg_module_grid *grid;
    tr_group *g[HG_NUM_GROUP_KINDS];
    tr_group *bridge;
    tr_shard shard;
    float *params, *grads, *m, *v; // (shard.local.total)
    int adam_steps;

    uint64_t data_seed;
    int step, nmb, B;                 // B: this module's samples per micro-batch
    int P, T, Tt, C, Ce, D, S, V, Vl, v0;
    int pp, stage, first, last;
    int in_flight;
    tr_sched_op *ops; // (2 nmb) this rank's schedule (the encoder runs stage 0's)
    tp_stack stack;
    tr_slot *slots;   // (in_flight)
    float loss_scale; // d(step loss) / d(one micro-batch's loss)
    double loss_sum;  // caption losses of the step's micro-batches (last stage)

    // Bridge edges of this leader, in edge order: peers' bridge indices.
    int num_edges, edge_peer[TR_MAX_EDGES], piece; // piece: samples per edge

    tr_p2p_op pending[TR_MAX_P2P], batch[TR_MAX_P2P];
    int npending, nbatch;

    // scratch
    float *images;      // (B, S, S, 3)
    int *tokens;        // (B, Tt) encoder's unused captions; LLM targets scratch
    float *img;         // (B, P, C) LLM first stage: received image embeddings
    float *dimg;        // (B, P, C) bridge gradients (sent by the LLM, received by the encoder)
    float *emb;         // (B, Tt, C) LLM caption embeddings
    float *dsend;       // (B, T, C) gradient sent to the previous stage
    float *dlnf;        // LLM last stage (B, T, C); encoder (B, P, Ce)
    float *losses;      // (B, T)
    float *ce_scratch;  // ((tp + 3) B T)
};

void tr_add_op(tr_worker *w, tr_p2p_op *list, int *n, tr_group *g, int peer, int is_send,
               void *buf, size_t count);

// Each module's micro-batch: receives it needs before the op, the op, and
// the sends it leaves pending for the next op's batch.
int llm_setup(tr_worker *w);
void llm_recvs(tr_worker *w, tr_sched_op op, int slot);
void llm_forward(tr_worker *w, int mb, int slot);
void llm_backward(tr_worker *w, int mb, int slot);
int encoder_setup(tr_worker *w);
void encoder_recvs(tr_worker *w, tr_sched_op op, int slot);
void encoder_forward(tr_worker *w, int mb, int slot);
void encoder_backward(tr_worker *w, int mb, int slot);

// First global sample index of micro-batch mb for this rank's dp lane.
uint64_t tr_first_sample(const tr_worker *w, int mb);

#endif
