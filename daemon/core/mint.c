// NCCL id planning: one id per canonical group of size > 1, plus the bridges.
#include "daemon/core/mint.h"

#include <stdlib.h>

void mint_plan_init(mint_plan *mp, const hg_plan *plan)
{
    mp->plan = plan;
    mp->num_ids = 0;
    hg_canonical_kinds_build(plan, &mp->canonical);
    for (int mi = 0; mi < HG_MAX_MODULES; mi++)
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
            mp->id_base[mi][k] = -1;
    for (int mi = 0; mi < plan->num_modules; mi++) {
        const hg_module_grid *m = &plan->modules[mi];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            if (!hg_group_applies(m, (hg_group_kind)k) ||
                mp->canonical.kind[mi][k] != (hg_group_kind)k ||
                hg_group_size(m, (hg_group_kind)k) < 2)
                continue;
            mp->id_base[mi][k] = mp->num_ids;
            mp->num_ids += hg_group_count(m, (hg_group_kind)k);
        }
    }
    for (int b = 0; b < HG_MAX_ENCODERS; b++)
        mp->bridge_id[b] = b < hg_plan_num_bridges(plan) && hg_bridge_size(plan, b) >= 2
                               ? mp->num_ids++
                               : -1;
}

int mint_rank_group_id(const mint_plan *mp, const hg_module_grid *m, int rank,
                       const hg_rank_group *g)
{
    if (g->kind == HG_GROUP_BRIDGE)
        return mp->bridge_id[g->bridge];
    hg_group_kind c = mp->canonical.kind[m->index][g->kind];
    int index, j;
    if (mp->id_base[m->index][c] < 0 || !hg_group_of_rank(m, c, rank, &index, &j))
        return -1;
    return mp->id_base[m->index][c] + index;
}

int mint_leader_ids(const mint_plan *mp, int rank, int ids[MINT_MAX_PER_RANK])
{
    const hg_module_grid *mods[2];
    int nm = hg_plan_modules_of_rank(mp->plan, rank, mods), n = 0;
    for (int i = 0; i < nm; i++) {
        hg_rank_group groups[HG_MAX_RANK_GROUPS];
        int ng = hg_rank_groups(mp->plan, &mp->canonical, mods[i], rank, groups);
        for (int k = 0; k < ng; k++) {
            const hg_rank_group *g = &groups[k];
            if (g->canonical == g->kind && g->size > 1 && g->rank_in_group == 0)
                ids[n++] = mint_rank_group_id(mp, mods[i], rank, g);
        }
    }
    return n;
}

int mint_group_id(const mint_plan *mp, int rank, hg_group_kind kind)
{
    const hg_module_grid *m = hg_plan_module_of_rank(mp->plan, rank);
    int index, j;
    if (!m || !hg_group_applies(m, kind) || !hg_group_of_rank(m, kind, rank, &index, &j))
        return -1;
    hg_rank_group g = {kind, -1, mp->canonical.kind[m->index][kind], index,
                       hg_group_size(m, kind), j};
    return mint_rank_group_id(mp, m, rank, &g);
}

void mint_id_group(const mint_plan *mp, int id, mint_group *out)
{
    for (int b = 0; b < HG_MAX_ENCODERS; b++)
        if (id >= 0 && id == mp->bridge_id[b]) {
            *out = (mint_group){b, MINT_BRIDGE, b};
            return;
        }
    for (int mi = 0; mi < mp->plan->num_modules; mi++) {
        const hg_module_grid *m = &mp->plan->modules[mi];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            int base = mp->id_base[mi][k];
            if (base >= 0 && id >= base && id < base + hg_group_count(m, (hg_group_kind)k)) {
                *out = (mint_group){mi, k, id - base};
                return;
            }
        }
    }
    *out = (mint_group){0, -1, -1};
}
