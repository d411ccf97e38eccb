// The training worker's link to gridd while it trains: a thread that
// heartbeats the latest step's progress and reads gridd's messages, so
// that a step blocked on a lost peer still hears an Abort. On Abort, or a
// Release before the last step, it aborts every communicator; the
// training thread's next NCCL call then escapes (train/comm_nccl.h) and
// train_run returns what gridd said.
#ifndef HGRID_TRAIN_RUN_WATCH_H
#define HGRID_TRAIN_RUN_WATCH_H

#include <stdint.h>

#include "libhgrid/hgrid_comms.h"

typedef struct train_watch train_watch;

// Starts the thread; from now on only it calls libhgrid on w. beat_s: the
// longest gap between heartbeats. NULL (after one line on stderr) if no
// thread could start.
train_watch *train_watch_start(hgrid_worker *w, hgrid_comms *comms, double beat_s);

// The training thread's progress after a step.
void train_watch_progress(train_watch *t, uint64_t step, float loss, float tokens_per_s);

// Training is over (done = 1: every step ran; 0: it failed or escaped).
// Once done, the thread reports Done (hgrid_done) and keeps reporting the
// final progress until gridd ends the job; otherwise it stops at once. Joins the thread and frees t.
// Returns gridd's word (HGRID_RELEASED, HGRID_ABORTED) or a negative
// status; *aborted says whether the thread aborted the communicators
// (they are freed then and must not be used).
int train_watch_finish(train_watch *t, int done, int *aborted);

#endif
