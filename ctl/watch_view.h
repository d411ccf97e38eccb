// hgridctl watch's view of a job: per-module summaries and per-rank rows
// built from gridd's JobInfo (the heartbeats it keeps), written as a text
// block or as one JSON line.
#ifndef HGRID_WATCH_VIEW_H
#define HGRID_WATCH_VIEW_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "layout/layout.h"
#include "proto/hgrid.pb-c.h"

typedef struct {
    const Hgrid__WorkerInfo *info;
    long long rank;    // -1 before gridd assigned ranks
    int module;        // index of its (first) module in plan.modules, -1 without a rank
    int module2;       // a colocated rank's second module, else -1
    bool has_loss;     // on the LLM's last pipeline stage (the ranks computing the
                       // loss) and reporting one (a dry run reports none)
    bool reported;     // sent a heartbeat
} watch_rank;

// Over the module's ranks that reported and are not lost.
typedef struct {
    int index; // in plan.modules
    int first_rank, num_ranks;
    int reporting;
    uint64_t step;       // the latest
    int loss_ranks;      // last-stage ranks among the reporting ones
    double loss;         // their mean
    double tokens_per_s; // the lowest: each rank reports the global batch over its step time
    double step_time_s;  // the longest
} watch_module;

typedef struct {
    const Hgrid__JobInfo *info;
    hg_plan plan;
    watch_module modules[HG_MAX_MODULES]; // plan.num_modules of them, in plan order
    watch_rank *ranks;       // info->n_workers, in gridd's order
    bool sparklines;         // the text shows each module's recent losses (a terminal)
} watch_view;

// Builds the view (info must outlive it). Returns 0, or -1 with a one-line
// reason when gridd's layout cannot be planned or memory is short.
int watch_view_build(const Hgrid__JobInfo *info, watch_view *v, char *err, size_t errlen);
void watch_view_free(watch_view *v);

// The text block: a heading, the module summaries and at most max_rows
// rank rows (-1: all), each line ended by eol.
void watch_view_text(const watch_view *v, FILE *out, int max_rows, const char *eol);
// Lines the sparklines take in the text (when v->sparklines).
int watch_view_sparkline_lines(const watch_view *v);
// One JSON object on one line.
void watch_view_json(const watch_view *v, FILE *out);

#endif
