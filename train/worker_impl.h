// The worker's state, shared by its parts (worker.c: setup, schedule,
// gradient reduction, optimizer; llm_stage.c and encoder_stage.c: one
// micro-batch's forward and backward of each module). Internal to train/.
#ifndef HGRID_TRAIN_WORKER_IMPL_H
#define HGRID_TRAIN_WORKER_IMPL_H

#include "train/schedule.h"
#include "train/tp_stack.h"
#include "train/train.h"
#include "train/vocab.h"

// A leader's bridge edges (fan-in/out k), and a batch: one op's sends
// and the next op's receives, each at most the edges or one neighbour;
// the first step's connecting exchange holds both directions of each.
// (An LLM leader has edges in every encoder's bridge.)
enum { TR_MAX_EDGES = 64, TR_MAX_P2P = 2 * HG_MAX_ENCODERS * TR_MAX_EDGES + 4 };

// A micro-batch's samples on the host, made ahead of their use (train/
// local.c makes the next one while the GPU works); the stages take them
// when they are the ones asked for, else make their own.
typedef struct {
    uint64_t seed, first; // data seed and first sample
    int B, valid;
    float *images;  // (B, S, S, 3)
    float *patches; // (B, P, D)
    int *tokens;    // (B, Tt)
} tr_samples;

// Per micro-batch in flight, module-specific. In the ops' memory unless
// marked host; char * buffers hold activations (the ops' type).
typedef struct {
    char *patches;                    // encoder: (B, P, D)
    char *lnf;                        // encoder (B, P, Ce); LLM last stage (B, Tt, C), captions
    float *lnf_mean, *lnf_rstd;       // (B, P|T)
    char *img;                        // encoder: (B, P, C) image embeddings for the LLM
    int *tokens, *h_tokens;           // LLM: (B, Tt), and on the host
    int *targets;                     // LLM: (B, Tt) next token, 0 where masked
    float *mask;                      // LLM: (B, Tt)
    float count;                      // LLM: caption targets in the micro-batch
    char *logits;                     // LLM last stage: (B, Tt, V/tp), captions only
} tr_slot;

struct tr_worker {
    const tr_ops *ops;
    int dp_overlap; // reduce the blocks' large gradients during the last backward
    int peers_connected; // the first step's connecting exchange is done
    size_t es; // bytes per activation
    hg_plan plan;
    int rank, llm; // llm: this part is the rank's LLM
    int encoder;   // which encoder (plan order) an encoder part is
    hg_coords co;  // in this part's module
    const hg_module_grid *grid;
    tr_group *g[HG_NUM_GROUP_KINDS];
    tr_group *bridge[HG_MAX_ENCODERS];
    struct tr_worker *colo; // a colocated rank's LLM part (this part is its encoder)
    tr_shard shard;
    float *params, *grads, *m, *v; // (shard.local.total) fp32, the ops' memory
    void *work;                    // (shard.local.total) act: the weights the ops read
    float *scalar;                 // (1) a loss or norm on its way through a collective
    int adam_steps;

    uint64_t data_seed;
    int step, nmb, B;                 // B: this module's samples per micro-batch
    int P, E, T, Tt, C, Ce, D, S, V, Vl, v0; // P: patches per image; E: image streams (LLM)
    int pp, stage, first, last;
    int in_flight;
    tr_samples *ahead; // samples made ahead (NULL: none)
    tr_sched_op *sched; // (2 nmb) this rank's schedule (the encoder runs stage 0's)
    tp_stack stack;
    tr_slot *slots;   // (in_flight)
    float loss_scale; // d(step loss) / d(one micro-batch's loss)
    double loss_sum;  // caption losses of the step's micro-batches (last stage)

    // Bridge edges of this leader per bridge, in edge order: peers' bridge
    // indices; piece: samples per edge of each bridge.
    int num_edges[HG_MAX_ENCODERS], edge_peer[HG_MAX_ENCODERS][TR_MAX_EDGES];
    int piece[HG_MAX_ENCODERS];

    tr_p2p_op pending[TR_MAX_P2P], batch[TR_MAX_P2P];
    int npending, nbatch;

    // scratch (host where marked)
    float *images;      // host (B, S, S, 3)
    float *h_patches;   // host (B, P, D) encoder
    float *patches_f32; // (B, P, D) encoder: uploaded patches before the cast
    int *tokens;        // host (B, Tt) encoder's unused captions; LLM targets scratch
    int *h_targets;     // host (B, Tt)
    float *h_mask;      // host (B, Tt)
    float *h_losses;    // host (B, Tt)
    char *img;          // (E, B, P, C) LLM first stage: received image embeddings, by encoder
    char *img_pos;      // (B, P, C) LLM first stage: one encoder's img + positions
    char *dimg;         // LLM (E, B, P, C), encoder (B, P, C): bridge gradients
    char *emb;          // (B, Tt, C) LLM caption embeddings
    char *dsend;        // (B, T, C) gradient sent to the previous stage
    char *dlnf;         // LLM last stage (B, T, C), image rows zero; encoder (B, P, Ce)
    char *lnf_all;      // LLM last stage (B, T, C): the final layernorm before the caption rows
    char *dhead;        // LLM last stage (B, Tt, C): the head's input gradient
    float *losses;      // (B, T)
    float *ce_scratch;  // ((tp + 3) B T)
    vp_rows rows;       // LLM first stage: the embedding gradient's lists
};

// Frees what the ops allocated (NULL is fine).
void tr_release(const tr_worker *w, void *p);
// The working copy of the weights from the fp32 master (after loading it).
void tr_refresh_work(tr_worker *w);

void tr_add_op(tr_worker *w, tr_p2p_op *list, int *n, tr_group *g, int peer, int is_send,
               void *buf, size_t count);
// One op per bridge edge of this leader: buf holds each bridge's part
// (stride bytes apart; 0 on an encoder, whose one bridge it is), each
// edge's piece after the last.
void tr_add_bridge_ops(tr_worker *w, tr_p2p_op *list, int *n, int is_send, char *buf,
                       size_t stride);

// Step parts the colocated schedule shares: zeroes the gradients and
// notes the step; the gradients' reduction and the step's loss (on the
// LLM's last stage, else 0); layer_done hooks for dp_overlap.
void tr_step_begin(tr_worker *w, uint64_t data_seed, int step);
float tr_step_finish(tr_worker *w);
void tr_overlap_hook(tr_worker *w, int on);
// x (n of type t, alike on every rank of this part's module) summed over
// the modules the bridges join, onto every rank of each (nothing to do
// without bridges); scratch holds n more.
void tr_across_modules(tr_worker *w, void *x, void *scratch, size_t n, tr_dtype t);
// A colocated rank's step (colocated.c); w is its encoder part.
float tr_colocated_forward_backward(tr_worker *w, uint64_t data_seed, int step);

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

// out (1, the ops' memory) += the squared norm of the gradients this rank
// owns; and one AdamW step on the shard with clip factor scale.
void tr_add_norm_squared(const tr_worker *w, float *out);
void tr_adamw_shard(tr_worker *w, const hg_optim_config *o, float scale);

// First global sample index of micro-batch mb for this part's dp lane.
uint64_t tr_first_sample(const tr_worker *w, int mb);
// Micro-batch mb's patches (B, P, D) on the host; its captions into
// tokens (B, Tt). Taken from w->ahead when it holds them, else made.
const float *tr_patches(tr_worker *w, int mb);
void tr_tokens(tr_worker *w, int mb, int *tokens);
// x: B samples of the model from seed's sample first onward; 0, or -1 if
// memory is short.
int tr_samples_alloc(tr_samples *x, const hg_model_config *m, int B);
void tr_samples_make(tr_samples *x, const hg_model_config *m, uint64_t seed, uint64_t first);
void tr_samples_free(tr_samples *x);

#endif
