// The training worker's link to gridd while it trains: a thread that
// heartbeats the latest step's progress and reads gridd's messages, so
// that a step blocked on a lost peer still hears an Abort. On Abort
// (libhgrid's counter, worker/run.c, has raised the training thread's
// fence and reported the operation counts) it aborts the communicators of
// the groups holding a lost rank (hgrid_comms_abort_lost), and those gridd
// then names broken (AbortGroups: a peer left them mid-operation): the
// training thread escapes (train/comm.h) and has until
// train_watch_deadline for its other communicators' operations to finish,
// then they are all aborted. A Release before the last step aborts every
// communicator at once.
#ifndef HGRID_TRAIN_RUN_WATCH_H
#define HGRID_TRAIN_RUN_WATCH_H

#include <stdint.h>

#include "libhgrid/hgrid_comms.h"
#include "train/comm.h"

// How long after an Abort the communicators kept (no lost rank) may take
// to finish the operations in flight; then every one is aborted and the
// next generation re-creates this rank's groups.
#define TRAIN_QUIESCE_S 2.0

typedef struct train_watch train_watch;

// Starts the thread; from now on only it calls libhgrid on w. beat_s: the
// longest gap between heartbeats. NULL (after one line on stderr) if no
// thread could start.
// fence: the training thread's, raised on Abort or Release.
train_watch *train_watch_start(hgrid_worker *w, hgrid_comms *comms, double beat_s,
                               tr_fence *fence);
// After the fence went up: when the kept communicators must be quiet.
double train_watch_deadline(train_watch *t);

// The training thread's progress after a step.
void train_watch_progress(train_watch *t, uint64_t step, float loss, float tokens_per_s);

// Training is over (done = 1: every step ran; 0: it failed or escaped).
// Once done, the thread reports Done (hgrid_done) and keeps reporting the
// final progress until gridd ends the job; otherwise it stops at once. Joins the thread and frees t.
// Returns gridd's word (HGRID_RELEASED, HGRID_ABORTED) or a negative
// status; *aborted says whether the thread aborted every communicator
// (they are freed then and must not be used).
int train_watch_finish(train_watch *t, int done, int *aborted);

#endif
