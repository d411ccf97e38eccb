// A rank's process groups from the layout engine on the threads backend:
// the same member lists an Assignment lets a worker derive.
#ifndef HGRID_TRAIN_LAYOUT_GROUPS_H
#define HGRID_TRAIN_LAYOUT_GROUPS_H

#include "layout/layout.h"
#include "train/comm.h"

// groups[kind] for every kind (NULL where the rank is in none), *bridge
// (NULL unless a leader). Returns 0, or -1 if memory is short.
int tr_threads_layout_groups(tr_threads_world *w, const hg_plan *plan, int rank,
                             tr_group *groups[HG_NUM_GROUP_KINDS], tr_group **bridge);
void tr_layout_groups_free(tr_group *groups[HG_NUM_GROUP_KINDS], tr_group *bridge);

#endif
