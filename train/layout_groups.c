// Member lists from the layout engine turned into threads-backend groups.
#include "train/layout_groups.h"

#include <stdlib.h>
#include <string.h>

int tr_threads_layout_groups(tr_threads_world *w, const hg_plan *plan, int rank,
                             tr_rank_groups *out)
{
    const hg_module_grid *mods[2];
    int nmod = hg_plan_modules_of_rank(plan, rank, mods), bad = 0;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < nmod; i++) {
        hg_rank_group mine[HG_MAX_RANK_GROUPS];
        int n = hg_rank_groups(plan, NULL, mods[i], rank, mine);
        for (int j = 0; j < n; j++) {
            int size = mine[j].size, *members = malloc(sizeof(int) * size);
            tr_group *g = NULL;
            if (members) {
                hg_rank_group_members(plan, mods[i], &mine[j], members);
                g = tr_threads_group(w, members, size, rank);
            }
            if (mine[j].kind == HG_GROUP_BRIDGE)
                out->bridge[mine[j].bridge] = g;
            else
                out->g[i][mine[j].kind] = g;
            bad |= !g;
            free(members);
        }
    }
    return bad ? -1 : 0;
}

void tr_layout_groups_free(tr_rank_groups *groups)
{
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
            tr_group_free(groups->g[i][k]);
    for (int b = 0; b < HG_MAX_ENCODERS; b++)
        tr_group_free(groups->bridge[b]);
}
