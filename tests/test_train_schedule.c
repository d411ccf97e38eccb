// The 1F1B schedule: each stage runs every micro-batch's forward once and
// its backward once after it, holds at most tr_schedule_in_flight
// activations (and the slot rule never reuses a live slot), the last stage
// alternates, and the stages together finish when each op waits for the
// neighbour's matching op (forward from the previous stage, backward from
// the next).
#include "tests/check.h"
#include "train/schedule.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_PP = 6, MAX_MB = 9 };

static void check_stage(int pp, int s, int nmb, const tr_sched_op *ops)
{
    int fwd[MAX_MB] = {0}, bwd[MAX_MB] = {0}, live = 0, peak = 0, bad = 0;
    int slot_owner[MAX_MB];
    int inflight = tr_schedule_in_flight(pp, s, nmb);
    memset(slot_owner, -1, sizeof slot_owner);
    for (int i = 0; i < 2 * nmb; i++) {
        int m = ops[i].microbatch, slot = m % inflight;
        if (ops[i].pass == TR_FORWARD) {
            bad += fwd[m]++ != 0 || slot_owner[slot] != -1;
            slot_owner[slot] = m;
            peak = ++live > peak ? live : peak;
        } else {
            bad += bwd[m]++ != 0 || !fwd[m] || slot_owner[slot] != m;
            slot_owner[slot] = -1;
            live--;
        }
    }
    CHECK(bad == 0, "pp %d stage %d nmb %d: %d ops out of order or in a live slot", pp, s, nmb,
          bad);
    CHECK(peak == inflight, "pp %d stage %d nmb %d: peak %d, in flight %d", pp, s, nmb, peak,
          inflight);
    if (s == pp - 1)
        for (int i = 0; i < 2 * nmb; i++)
            CHECK(ops[i].pass == (i % 2 ? TR_BACKWARD : TR_FORWARD) && ops[i].microbatch == i / 2,
                  "last stage op %d", i);
}

// Runs all stages: an op may go when its inputs exist. Returns rounds
// taken, or -1 if the pipeline stalls.
static int simulate(int pp, int nmb, tr_sched_op ops[MAX_PP][2 * MAX_MB])
{
    int next[MAX_PP] = {0}, fdone[MAX_PP][MAX_MB] = {{0}}, bdone[MAX_PP][MAX_MB] = {{0}};
    for (int round = 0;; round++) {
        int finished = 1, moved = 0;
        int ran[MAX_PP] = {0};
        for (int s = 0; s < pp; s++) {
            if (next[s] == 2 * nmb)
                continue;
            finished = 0;
            tr_sched_op op = ops[s][next[s]];
            int m = op.microbatch;
            int ready = op.pass == TR_FORWARD ? s == 0 || fdone[s - 1][m]
                                              : s == pp - 1 || bdone[s + 1][m];
            ran[s] = ready;
        }
        for (int s = 0; s < pp; s++)
            if (ran[s]) {
                tr_sched_op op = ops[s][next[s]++];
                (op.pass == TR_FORWARD ? fdone : bdone)[s][op.microbatch] = 1;
                moved = 1;
            }
        if (finished)
            return round;
        if (!moved)
            return -1;
    }
}

int main(void)
{
    tr_sched_op ops[MAX_PP][2 * MAX_MB];
    for (int pp = 1; pp <= MAX_PP; pp++)
        for (int nmb = 1; nmb <= MAX_MB; nmb++) {
            for (int s = 0; s < pp; s++) {
                tr_schedule_1f1b(pp, s, nmb, ops[s]);
                check_stage(pp, s, nmb, ops[s]);
            }
            int rounds = simulate(pp, nmb, ops);
            CHECK(rounds >= 0, "pp %d nmb %d stalls", pp, nmb);
            // One forward and one backward per micro-batch per stage plus the
            // fill and drain of 2 (pp - 1) rounds: 1F1B loses no more than GPipe.
            CHECK(rounds <= 2 * nmb + 2 * (pp - 1), "pp %d nmb %d: %d rounds", pp, nmb, rounds);
        }
    tr_sched_op two[4];
    tr_schedule_1f1b(2, 0, 2, two);
    CHECK(two[0].pass == TR_FORWARD && two[1].pass == TR_FORWARD && two[1].microbatch == 1 &&
              two[2].pass == TR_BACKWARD && two[2].microbatch == 0,
          "pp 2 stage 0: F0 F1 B0 B1");
    return check_summary("test_train_schedule");
}
