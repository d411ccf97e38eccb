// 1F1B (PipeDream-flush) ordering, as Megatron-LM runs it without
// interleaving.
#include "train/schedule.h"

// Warm-up is one short of the in-flight bound so the steady state's
// forward brings it to the bound before its backward frees one slot.
void tr_schedule_1f1b(int pp, int stage, int num_microbatches, tr_sched_op *ops)
{
    int warmup = tr_schedule_in_flight(pp, stage, num_microbatches) - 1;
    int steady = num_microbatches - warmup, n = 0, f = 0, b = 0;
    for (int i = 0; i < warmup; i++)
        ops[n++] = (tr_sched_op){TR_FORWARD, f++};
    for (int i = 0; i < steady; i++) {
        ops[n++] = (tr_sched_op){TR_FORWARD, f++};
        ops[n++] = (tr_sched_op){TR_BACKWARD, b++};
    }
    while (b < num_microbatches)
        ops[n++] = (tr_sched_op){TR_BACKWARD, b++};
}

int tr_schedule_in_flight(int pp, int stage, int num_microbatches)
{
    int k = pp - stage;
    return k < num_microbatches ? k : num_microbatches;
}
