// NCCL id planning: one id per canonical group of size > 1, plus the bridge.
#include "daemon/core/mint.h"

#include <stdlib.h>

static int module_index(const hg_plan *plan, int rank)
{
    return plan->num_modules == 2 && rank >= plan->modules[1].rank_offset ? 1 : 0;
}

void mint_plan_init(mint_plan *mp, const hg_plan *plan)
{
    mp->plan = plan;
    mp->num_ids = 0;
    for (int mi = 0; mi < 2; mi++)
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            mp->canonical[mi][k] = (hg_group_kind)k;
            mp->id_base[mi][k] = -1;
        }
    for (int mi = 0; mi < plan->num_modules; mi++) {
        const hg_module_grid *m = &plan->modules[mi];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            // A group of one rank needs no id: no need to look for its twin
            // (an O(world size) scan per pair of kinds).
            if (!hg_group_applies(m, (hg_group_kind)k) || hg_group_size(m, (hg_group_kind)k) < 2)
                continue;
            mp->canonical[mi][k] = hg_group_canonical(m, (hg_group_kind)k);
            if (mp->canonical[mi][k] != (hg_group_kind)k)
                continue;
            mp->id_base[mi][k] = mp->num_ids;
            mp->num_ids += hg_group_count(m, (hg_group_kind)k);
        }
    }
    mp->bridge_id = -1;
    if (hg_plan_has_bridge(plan) && hg_bridge_size(plan) >= 2)
        mp->bridge_id = mp->num_ids++;
}

int mint_leader_ids(const mint_plan *mp, int rank, int ids[MINT_MAX_PER_RANK])
{
    int mi = module_index(mp->plan, rank), n = 0;
    const hg_module_grid *m = &mp->plan->modules[mi];
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
        int g, j;
        if (mp->id_base[mi][k] < 0 || !hg_group_of_rank(m, (hg_group_kind)k, rank, &g, &j))
            continue;
        if (j == 0)
            ids[n++] = mp->id_base[mi][k] + g;
    }
    if (mp->bridge_id >= 0 && hg_bridge_index_of_rank(mp->plan, rank) == 0)
        ids[n++] = mp->bridge_id;
    return n;
}

int mint_group_id(const mint_plan *mp, int rank, hg_group_kind kind)
{
    int mi = module_index(mp->plan, rank);
    const hg_module_grid *m = &mp->plan->modules[mi];
    hg_group_kind c = mp->canonical[mi][kind];
    int g, j;
    if (mp->id_base[mi][c] < 0 || !hg_group_of_rank(m, c, rank, &g, &j))
        return -1;
    return mp->id_base[mi][c] + g;
}

void mint_id_group(const mint_plan *mp, int id, mint_group *out)
{
    if (id == mp->bridge_id) {
        *out = (mint_group){mp->plan->modules[0].id, MINT_BRIDGE, 0};
        return;
    }
    for (int mi = 0; mi < mp->plan->num_modules; mi++) {
        const hg_module_grid *m = &mp->plan->modules[mi];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            int base = mp->id_base[mi][k];
            if (base >= 0 && id >= base && id < base + hg_group_count(m, (hg_group_kind)k)) {
                *out = (mint_group){m->id, k, id - base};
                return;
            }
        }
    }
    *out = (mint_group){HG_MODULE_ENCODER, -1, -1};
}

int mint_id_leader(const mint_plan *mp, int id)
{
    mint_group mg;
    mint_id_group(mp, id, &mg);
    if (mg.kind == MINT_BRIDGE)
        return hg_bridge_member(mp->plan, 0);
    if (mg.kind < 0)
        return -1;
    const hg_module_grid *m = hg_plan_module(mp->plan, mg.module);
    int *members = malloc(sizeof *members * (size_t)hg_group_size(m, (hg_group_kind)mg.kind));
    if (!members)
        return -1;
    hg_group_members(m, (hg_group_kind)mg.kind, mg.group, members);
    int leader = members[0];
    free(members);
    return leader;
}
