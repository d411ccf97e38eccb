// A GPU worker's training: after libhgrid formed the communicators and the
// self-test passed, train_run builds the worker's groups on them (looked
// up by name), runs the steps and reports each one to gridd.
#ifndef HGRID_TRAIN_RUN_H
#define HGRID_TRAIN_RUN_H

#include "libhgrid/hgrid_comms.h"
#include "libhgrid/hgrid_layout.h"
#include "worker/run_args.h"

// Trains o->steps steps (from --load's checkpoint, or from the --save
// directory's when a later generation resumes) on the current CUDA device,
// with the job's layout and o->config's model. One line per step (on the
// LLM's last stage with the loss); a thread (worker/run_watch.h) reports
// the loss, tokens/s of the global batch and the step time to gridd and
// keeps heartbeating (at most beat_s apart) through long steps and, after
// "trained N steps", until gridd ends the job. An Abort (or Release)
// during training aborts the communicators, ends the step at once and
// sets *comms to NULL. Returns what gridd said (HGRID_RELEASED,
// HGRID_ABORTED) or a negative status, or HGRID_ERR_STATE after one line
// saying what failed.
int train_run(hgrid_worker *w, hgrid_comms **comms, const train_options *o, double beat_s);

#endif
