// What a GPU worker or --single-gpu trains (hgrid-worker's one set of
// training flags and bounds) and the pure decisions of the workers' loop:
// when to save, what a step's throughput is.
#ifndef HGRID_TRAIN_RUN_ARGS_H
#define HGRID_TRAIN_RUN_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout/layout.h"

// --config job: train the model the job's layout names (hgridctl submit's
// model flags, e.g. --num-layers 20 --num-experts 128); any other name is
// a config of model/config.h that must be the job's model (a check, never
// an override).
#define TRAIN_CONFIG_JOB "job"

typedef struct {
    const char *config; // TRAIN_CONFIG_JOB or a model config name; NULL: no training
    int steps;          // steps to have completed at the end (a resumed run counts its own)
    bool fp32;          // fp32 activations instead of bf16
    uint64_t seed;      // parameters and data
    float lr;           // 0: hg_optim_defaults' rate
    const char *save_dir, *load_dir;
    int save_interval;  // save every K steps (and after the last); 0: only after the last
    bool profile_comm;  // time each collective alone (waits before and after it)
    bool dp_overlap;    // reduce the blocks' large gradients during the last backward
    // --single-gpu: both modules on this GPU, without gridd
    bool single_gpu;
    int batch;          // samples per step; 0: the config's
    int encoders;       // encoders, each its own weights and images (their outputs the
                        // LLM's prefix, in order); 0: the config's one
    const char *dump;   // N steps on one batch, then the model state to this file
    bool cpu;           // the dump from the CPU reference model
    bool describe;      // print the config's shapes and exit
} train_options;

#define TRAIN_FLAGS_USAGE                                                                 \
    "       training (GPU workers): --config NAME|job --steps N [--fp32] [--seed S] [--lr X]\n" \
    "                    [--save DIR [--save-interval K]] [--load DIR] [--profile-comm]\n" \
    "                    [--dp-overlap]\n"                                                    \
    "       hgrid-worker --single-gpu --config NAME --steps N [--fp32] [--seed S] [--lr X]\n" \
    "                    [--batch B] [--encoders N] [--save DIR [--save-interval K]]\n"   \
    "                    [--load DIR]\n"                                                  \
    "                    [--dump PATH [--cpu]] [--describe]\n"

#define TRAIN_FLAGS_HELP                                                                  \
    "Training:\n"                                                                         \
    "  --config NAME|job        model config: tiny, tiny-moe, small, small-moe, 1b;\n"    \
    "                           job: the model the job was submitted with (workers only)\n" \
    "  --steps N                training steps\n"                                          \
    "  --seed S                 data and initialisation seed (default 1)\n"                \
    "  --fp32                   fp32 throughout (default: bf16 with fp32 master weights)\n" \
    "  --lr X                   AdamW learning rate (default 1e-3)\n"                      \
    "  --save DIR               save a checkpoint after the last step (and every K)\n"    \
    "  --save-interval K        save every K steps too\n"                                  \
    "  --load DIR               resume from a checkpoint (a worker's later generations\n"  \
    "                           resume from --save's by themselves)\n"                     \
    "  --profile-comm           time each collective alone (workers)\n"                   \
    "  --dp-overlap             reduce large gradients during the last backward (workers)\n" \
    "  --single-gpu             train both modules on this one GPU, without gridd: the\n"  \
    "                           workers' step with every group of one rank; prints the\n" \
    "                           loss and tokens/s of every step\n"                         \
    "  --batch B                samples per step (default: the config's; --single-gpu)\n"  \
    "  --encoders N             encoders (1-8), each its own weights and images, their\n" \
    "                           outputs the LLM's prefix in order, as a job's repeated\n" \
    "                           --encoder (default 1; --single-gpu)\n"                    \
    "  --dump PATH              train N steps on one batch and write the losses,\n"        \
    "                           gradients and weights to PATH (the PyTorch check reads it)\n" \
    "  --cpu                    with --dump: compute it on the CPU reference model\n"      \
    "  --describe               print the config's shapes and exit (--single-gpu)\n\n"

void train_options_defaults(train_options *o);
// Consumes argv[*i] (and its value, advancing *i) if it is a training
// flag: 1 consumed, 0 not a training flag, -1 bad value (reason in err).
int train_parse_flag(train_options *o, int argc, char **argv, int *i, char *err, size_t errlen);
// After parsing: 0, or -1 with a one-line reason (e.g. --save-interval
// without --save, training flags on a dry run or a self-test).
int train_options_check(const train_options *o, bool dry_run, bool self_test, char *err,
                        size_t errlen);

// At assignment: 0 when this worker can train the job as submitted as rank,
// or -1 with a one-line reason (a colocated or several-encoder layout, which
// the trainer cannot run yet; a model its shards cannot split, e.g. a
// vocabulary not divisible by llm_tp or expert tp > 1; a --config whose
// model differs from the job's).
int train_check_job(const train_options *o, const hg_plan *job, int rank, char *err,
                    size_t errlen);
// Whether to write a checkpoint after `done` completed steps of `steps`.
bool train_should_save(const train_options *o, int done);
// Tokens of one global batch: global_batch_size sequences of seq_length.
double train_tokens_per_step(const hg_plan *plan);

#endif
