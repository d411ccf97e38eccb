// Member lists from the layout engine turned into threads-backend groups.
#include "train/layout_groups.h"

#include <stdlib.h>

int tr_threads_layout_groups(tr_threads_world *w, const hg_plan *plan, int rank,
                             tr_group *groups[HG_NUM_GROUP_KINDS], tr_group **bridge)
{
    const hg_module_grid *m = hg_plan_module_of_rank(plan, rank);
    int bad = 0;
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
        int g, r;
        groups[k] = NULL;
        if (!hg_group_applies(m, k) || !hg_group_of_rank(m, k, rank, &g, &r))
            continue;
        int size = hg_group_size(m, k), *members = malloc(sizeof(int) * size);
        if (members) {
            hg_group_members(m, k, g, members);
            groups[k] = tr_threads_group(w, members, size, rank);
        }
        bad |= !groups[k];
        free(members);
    }
    *bridge = NULL;
    if (hg_plan_has_bridge(plan) && hg_bridge_index_of_rank(plan, rank) >= 0) {
        int size = hg_bridge_size(plan), *members = malloc(sizeof(int) * size);
        for (int i = 0; members && i < size; i++)
            members[i] = hg_bridge_member(plan, i);
        *bridge = members ? tr_threads_group(w, members, size, rank) : NULL;
        bad |= !*bridge;
        free(members);
    }
    return bad ? -1 : 0;
}

void tr_layout_groups_free(tr_group *groups[HG_NUM_GROUP_KINDS], tr_group *bridge)
{
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
        tr_group_free(groups[k]);
    tr_group_free(bridge);
}
