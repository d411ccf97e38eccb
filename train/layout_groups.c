// Member lists from the layout engine turned into threads-backend groups.
#include "train/layout_groups.h"

#include <stdlib.h>

int tr_threads_layout_groups(tr_threads_world *w, const hg_plan *plan, int rank,
                             tr_group *groups[HG_NUM_GROUP_KINDS], tr_group **bridge)
{
    const hg_module_grid *m = hg_plan_module_of_rank(plan, rank);
    hg_rank_group mine[HG_MAX_RANK_GROUPS];
    int n = hg_rank_groups(plan, NULL, m, rank, mine), bad = 0;
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
        groups[k] = NULL;
    *bridge = NULL;
    for (int i = 0; i < n; i++) {
        int size = mine[i].size, *members = malloc(sizeof(int) * size);
        tr_group *g = NULL;
        if (members) {
            hg_rank_group_members(plan, m, &mine[i], members);
            g = tr_threads_group(w, members, size, rank);
        }
        if (mine[i].kind == HG_GROUP_BRIDGE)
            *bridge = g;
        else
            groups[mine[i].kind] = g;
        bad |= !g;
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
