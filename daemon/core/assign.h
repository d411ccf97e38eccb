// Rank assignment: which joined worker gets which rank (PROTOCOL.md, "Rank
// assignment"). Pure code over the layout engine.
#ifndef HGRID_DAEMON_ASSIGN_H
#define HGRID_DAEMON_ASSIGN_H

#include "layout/layout.h"

typedef struct {
    int host;      // host number, in order of first join
    int device;    // local GPU index
    int requested; // requested rank (valid and distinct, checked at join), or -1
} gridd_assign_worker;

// Gives each of the plan->world_size workers a rank: requested ranks as
// asked, the others host by host, GPU by GPU, packing each module's tp
// groups whole onto one host whenever the hosts' free GPUs allow. rank[i]
// is worker i's rank. Returns 0, or -1 if out of memory.
int gridd_assign_ranks(const hg_plan *plan, const gridd_assign_worker *w, int *rank);

// How many tp groups span more than one host under rank (worker i has
// rank[i]); -1 if out of memory.
int gridd_assign_split_tp_groups(const hg_plan *plan, const gridd_assign_worker *w, const int *rank);

#endif
