// hgridctl show's picture of a job: hosts down, GPUs across; each cell is a
// worker's rank and module and its tp/dp/pp coordinates (cp, ep when > 1).
// Columns wrap into panels that fit the width; past max_hosts hosts the rest
// is counted, not drawn.
#ifndef HGRID_CTL_GRID_H
#define HGRID_CTL_GRID_H

#include <stdio.h>

#include "layout/layout.h"
#include "proto/hgrid.pb-c.h"

// Hosts drawn unless --max-hosts says otherwise: 64 hosts of 8 GPUs fill
// about 130 lines per panel; beyond that a picture stops being read.
#define GRID_DEFAULT_MAX_HOSTS 64

typedef struct {
    int width;     // columns of text to fit (at least 40)
    int max_hosts; // hosts drawn, in rank order; 0: all
} grid_options;

// Writes the job's heading, module lines, the grid and the workers' states.
// Returns 0, or -1 with a reason in err when memory is short.
int grid_write(const Hgrid__JobInfo *info, const hg_plan *plan, const grid_options *o, FILE *out,
               char *err, size_t errlen);

#endif
