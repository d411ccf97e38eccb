// hgrid-worker: options and the assignment printers.
#ifndef HGRID_WORKER_H
#define HGRID_WORKER_H

#include <stdbool.h>
#include <stdio.h>

#include "client/hgrid.h"

typedef struct {
    const char *coordinator, *job, *token;
    char host[256];
    int device;
    int requested_rank; // -1: gridd chooses
    bool dry_run, json;
    double heartbeat_timeout_s; // gridd's --heartbeat-timeout; beats every third of it
    double assign_timeout_s;    // 0: wait for the assignment as long as it takes
} worker_options;

// Parses argv; returns 0, or the exit status (0 after --help, 2 usage).
int worker_parse_args(int argc, char **argv, worker_options *opt, bool *exit_now);
// One assignment, as text for people or as one JSON line.
void worker_print_assignment(const hgrid_worker *w, const worker_options *opt, FILE *out);

#endif
