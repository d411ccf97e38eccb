// Partial rebuild: the ids a generation re-mints, from the replaced ranks.
#include "daemon/core/rebuild.h"

#include <stdlib.h>
#include <string.h>

int rebuild_init(rebuild_state *rb, const mint_plan *mp)
{
    rb->world_size = mp->plan->world_size;
    rb->num_ids = mp->num_ids;
    rb->replaced = malloc((size_t)rb->world_size);
    rb->changed = malloc((size_t)rb->num_ids + 1);
    rb->leads = malloc(sizeof *rb->leads * (size_t)rb->world_size);
    rb->broken = calloc((size_t)rb->num_ids + 1, 1);
    if (!rb->replaced || !rb->changed || !rb->leads || !rb->broken) {
        rebuild_free(rb);
        return -1;
    }
    rebuild_lose_all(rb);
    memset(rb->changed, 1, (size_t)rb->num_ids + 1);
    rb->num_changed = rb->num_ids;
    return 0;
}

void rebuild_free(rebuild_state *rb)
{
    free(rb->replaced);
    free(rb->changed);
    free(rb->leads);
    free(rb->broken);
    rb->replaced = rb->changed = rb->broken = NULL;
    rb->leads = NULL;
}

void rebuild_lose(rebuild_state *rb, int rank)
{
    if (rank < 0 || rank >= rb->world_size || rb->replaced[rank])
        return;
    rb->replaced[rank] = 1;
    rb->num_replaced++;
}

void rebuild_break(rebuild_state *rb, int id)
{
    if (id >= 0 && id < rb->num_ids)
        rb->broken[id] = 1;
}

void rebuild_lose_all(rebuild_state *rb)
{
    memset(rb->replaced, 1, (size_t)rb->world_size);
    rb->num_replaced = rb->world_size;
}

static void mark(rebuild_state *rb, int id)
{
    if (id >= 0 && !rb->changed[id]) {
        rb->changed[id] = 1;
        rb->num_changed++;
    }
}

int rebuild_plan(rebuild_state *rb, const mint_plan *mp)
{
    if (rb->num_replaced == rb->world_size) {
        memset(rb->changed, 1, (size_t)rb->num_ids + 1);
        rb->num_changed = rb->num_ids;
        return rb->num_changed;
    }
    memset(rb->changed, 0, (size_t)rb->num_ids + 1);
    rb->num_changed = 0;
    for (int id = 0; id < rb->num_ids; id++)
        if (rb->broken[id])
            mark(rb, id);
    for (int r = 0; r < rb->world_size; r++) {
        if (!rb->replaced[r])
            continue;
        const hg_module_grid *mods[2];
        int nm = hg_plan_modules_of_rank(mp->plan, r, mods);
        for (int mi = 0; mi < nm; mi++) {
            hg_rank_group groups[HG_MAX_RANK_GROUPS];
            int ng = hg_rank_groups(mp->plan, &mp->canonical, mods[mi], r, groups);
            for (int k = 0; k < ng; k++)
                mark(rb, mint_rank_group_id(mp, mods[mi], r, &groups[k]));
        }
    }
    return rb->num_changed;
}

void rebuild_formed(rebuild_state *rb)
{
    memset(rb->broken, 0, (size_t)rb->num_ids + 1);
    memset(rb->replaced, 0, (size_t)rb->world_size);
    rb->num_replaced = 0;
}

int rebuild_leader_ids(const rebuild_state *rb, const mint_plan *mp, int rank,
                       int ids[MINT_MAX_PER_RANK])
{
    int all[MINT_MAX_PER_RANK], n = 0;
    int total = mint_leader_ids(mp, rank, all);
    for (int i = 0; i < total; i++)
        if (rb->changed[all[i]])
            ids[n++] = all[i];
    return n;
}

int rebuild_ids_needed(const rebuild_state *rb, const mint_plan *mp, int rank)
{
    int ids[MINT_MAX_PER_RANK], n = 0;
    const hg_module_grid *mods[2];
    int nm = hg_plan_modules_of_rank(mp->plan, rank, mods);
    for (int mi = 0; mi < nm; mi++) {
        hg_rank_group groups[HG_MAX_RANK_GROUPS];
        int ng = hg_rank_groups(mp->plan, &mp->canonical, mods[mi], rank, groups);
        for (int k = 0; k < ng; k++) {
            int id = mint_rank_group_id(mp, mods[mi], rank, &groups[k]), seen = 0;
            for (int i = 0; i < n; i++)
                seen |= ids[i] == id;
            if (rebuild_id_changed(rb, id) && !seen)
                ids[n++] = id;
        }
    }
    return n;
}

int rebuild_id_members(const mint_plan *mp, int id, int *members)
{
    mint_group mg;
    mint_id_group(mp, id, &mg);
    const hg_module_grid *m = &mp->plan->modules[mg.module_index];
    hg_rank_group g = {mg.kind, -1, mg.kind, mg.group, 0, 0};
    if (mg.kind == MINT_BRIDGE)
        g = (hg_rank_group){HG_GROUP_BRIDGE, mg.group, HG_GROUP_BRIDGE, 0,
                            hg_bridge_size(mp->plan, mg.group), 0};
    else
        g.size = hg_group_size(m, (hg_group_kind)mg.kind);
    hg_rank_group_members(mp->plan, m, &g, members);
    return g.size;
}

void rebuild_count(rebuild_state *rb, const mint_plan *mp, int *missing, int *members)
{
    int *leads = rb->leads;
    memset(missing, 0, sizeof *missing * (size_t)rb->world_size);
    memset(leads, 0, sizeof *leads * (size_t)rb->world_size);
    for (int id = 0; id < rb->num_ids; id++) {
        if (!rb->changed[id])
            continue;
        int n = rebuild_id_members(mp, id, members);
        for (int i = 0; i < n; i++)
            missing[members[i]]++;
        leads[members[0]]++; // member 0 mints (mint_leader_ids)
    }
}
