// A rank's process groups from the layout engine on the threads backend:
// the same member lists an Assignment lets a worker derive.
#ifndef HGRID_TRAIN_LAYOUT_GROUPS_H
#define HGRID_TRAIN_LAYOUT_GROUPS_H

#include "layout/layout.h"
#include "train/comm.h"
#include "train/train.h"

// The rank's groups in every module holding it, and its bridges (train.h).
// Returns 0, or -1 if memory is short.
int tr_threads_layout_groups(tr_threads_world *w, const hg_plan *plan, int rank,
                             tr_rank_groups *out);
void tr_layout_groups_free(tr_rank_groups *groups);

#endif
