// hgrid-worker: options and the assignment printers.
#ifndef HGRID_WORKER_H
#define HGRID_WORKER_H

#include <stdbool.h>
#include <stdio.h>

#include "libhgrid/hgrid.h"
#include "libhgrid/hgrid_comms.h"
#include "libhgrid/hgrid_layout.h"
#include "worker/run_args.h"

typedef struct {
    const char *coordinator, *job, *token;
    char host[256];
    int device;
    int requested_rank; // -1: gridd chooses
    bool dry_run, json;
    bool self_test;             // GPU: exit after the self-test instead of training
    hgrid_comms_strategy comm_init;
    double comm_timeout_s;      // communicators formed (and each self-test collective) within
    double bw_bytes;            // self-test all-reduce size; 0: no bandwidth
    double heartbeat_timeout_s; // gridd's --heartbeat-timeout; beats every third of it
    double assign_timeout_s;    // 0: wait for the assignment as long as it takes
    double reconnect_timeout_s; // give up this long after losing gridd; 0: at once
    double connect_timeout_s;   // wait this long for gridd at start (and, by default, after a loss)
    double step_ms;             // dry run: one step this often; 0: one per heartbeat interval
    double fail_at_step;        // dry run: report a failure at this step (0: never)
    train_options train;        // GPU: train after the self-test (train.config set)
} worker_options;

// Parses argv; returns 0, or the exit status (0 after --help, 2 usage).
int worker_parse_args(int argc, char **argv, worker_options *opt, bool *exit_now);
// One assignment, as text for people or as one JSON line.
void worker_print_assignment(const hgrid_worker *w, const worker_options *opt, FILE *out);

// The protocol loop shared by dry-run and GPU workers (worker_main.c):
// the next assignment (HGRID_OK, HGRID_RELEASED or negative), and
// heartbeats until gridd sends something to act on. Without training, a
// step passes every --step-ms (default: every heartbeat), counted on from
// *step across generations; at --steps the worker reports Done and beats on
// until gridd ends the job. WORKER_FAILED: --fail-at-step reported a
// failure (said on stderr).
#define WORKER_FAILED (-100)
int worker_await_assignment(hgrid_worker *w, const worker_options *opt);
int worker_run_generation(hgrid_worker *w, const worker_options *opt, uint64_t *step);
// Connects to gridd, waiting --connect-timeout for it; NULL after one line.
hgrid_worker *worker_connect(const worker_options *opt);
// The exit status for how the worker's last call ended: 0 when the job
// finished or was cancelled, 1 when it failed (gridd's reason on stderr),
// refused, lost, or WORKER_FAILED.
int worker_exit(hgrid_worker *w, const worker_options *opt, int status);
// One event line on stderr in gridd's form: "hgrid-worker: LEVEL job=J
// [rank=R] [gen=G] host=H device=D what happened" (rank < 0, gen 0: none).
void worker_log(const worker_options *opt, const char *level, int rank, uint64_t gen,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
// Exit status for a failed libhgrid call, after one line saying why.
int worker_failed(const hgrid_worker *w, int status);
// A GPU worker (worker_gpu.c): communicators, self-test, then heartbeats
// (or exit after the self-test with --self-test). Returns the exit status.
int worker_run_gpu(const worker_options *opt);
// hgrid-worker --single-gpu: both modules on one GPU through train/'s step,
// without gridd (worker/single_gpu.c). Returns the exit status (0 done, 1
// failed: CUDA, memory, files).
int worker_single_gpu(const train_options *o);

#endif
