// The 1F1B pipeline schedule: pure functions, no communication.
#ifndef HGRID_TRAIN_SCHEDULE_H
#define HGRID_TRAIN_SCHEDULE_H

typedef enum { TR_FORWARD, TR_BACKWARD } tr_pass;

typedef struct {
    tr_pass pass;
    int microbatch;
} tr_sched_op;

// Stage `stage` of `pp`'s ops over num_microbatches: warm-up forwards
// (pp - stage - 1, at most all), then one forward one backward, then the
// remaining backwards. Writes 2 * num_microbatches ops.
void tr_schedule_1f1b(int pp, int stage, int num_microbatches, tr_sched_op *ops);

// Micro-batches a stage holds activations for at once under 1F1B: its
// activation slot of micro-batch m is m % tr_schedule_in_flight(...).
int tr_schedule_in_flight(int pp, int stage, int num_microbatches);

#endif
