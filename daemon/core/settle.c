// After an Abort: the survivors' operation counts, and which groups they
// broke (daemon/core/settle.h).
#include "daemon/core/settle.h"
#include "daemon/core/rebuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int settle_init(settle_state *s, const mint_plan *mp)
{
    memset(s, 0, sizeof *s);
    s->world_size = mp->plan->world_size;
    s->num_ids = mp->num_ids;
    size_t w = (size_t)s->world_size, ids = (size_t)s->num_ids + 1;
    s->expected = calloc(w, 1);
    s->reported = calloc(w, 1);
    s->collectives = calloc(ids, sizeof *s->collectives);
    s->counted = calloc(ids, 1);
    s->mismatch = calloc(ids, 1);
    s->broken = calloc(ids, 1);
    if (!s->expected || !s->reported || !s->collectives || !s->counted || !s->mismatch ||
        !s->broken) {
        settle_free(s);
        return -1;
    }
    return 0;
}

void settle_free(settle_state *s)
{
    free(s->expected), free(s->reported), free(s->collectives), free(s->counted);
    free(s->mismatch), free(s->broken), free(s->pairs);
    memset(s, 0, sizeof *s);
}

void settle_begin(settle_state *s)
{
    size_t w = (size_t)s->world_size, ids = (size_t)s->num_ids + 1;
    memset(s->expected, 0, w);
    memset(s->reported, 0, w);
    memset(s->collectives, 0, ids * sizeof *s->collectives);
    memset(s->counted, 0, ids);
    memset(s->mismatch, 0, ids);
    memset(s->broken, 0, ids);
    s->num_pairs = 0;
    s->awaited = 0;
}

void settle_expect(settle_state *s, int rank)
{
    if (rank < 0 || rank >= s->world_size || s->expected[rank])
        return;
    s->expected[rank] = 1;
    s->awaited++;
}

void settle_forget(settle_state *s, int rank)
{
    if (rank < 0 || rank >= s->world_size || !s->expected[rank])
        return;
    if (!s->reported[rank])
        s->awaited--;
    s->expected[rank] = 0;
}

int settle_positions(const mint_plan *mp, int rank, settle_position out[SETTLE_MAX_POSITIONS])
{
    const hg_module_grid *mods[2];
    int nm = hg_plan_modules_of_rank(mp->plan, rank, mods), n = 0;
    for (int mi = 0; mi < nm; mi++) {
        hg_rank_group groups[HG_MAX_RANK_GROUPS];
        int ng = hg_rank_groups(mp->plan, &mp->canonical, mods[mi], rank, groups);
        for (int k = 0; k < ng && n < SETTLE_MAX_POSITIONS; k++)
            out[n++] = (settle_position){mint_rank_group_id(mp, mods[mi], rank, &groups[k]),
                                         groups[k].size, groups[k].rank_in_group};
    }
    return n;
}

static int add_pair(settle_state *s, int id, int src, int dst, uint64_t balance)
{
    if (s->num_pairs == s->cap_pairs) {
        size_t cap = s->cap_pairs ? 2 * s->cap_pairs : 64;
        settle_pair *p = realloc(s->pairs, cap * sizeof *p);
        if (!p)
            return -1;
        s->pairs = p;
        s->cap_pairs = cap;
    }
    s->pairs[s->num_pairs++] = (settle_pair){id, src, dst, balance};
    return 0;
}

int settle_report(settle_state *s, const mint_plan *mp, int rank, const settle_group *groups,
                  int n, char *err, size_t errlen)
{
    if (rank < 0 || rank >= s->world_size || !s->expected[rank] || s->reported[rank])
        return 1;
    settle_position pos[SETTLE_MAX_POSITIONS];
    int np = settle_positions(mp, rank, pos);
    uint64_t sum[SETTLE_MAX_POSITIONS] = {0}; // per position: its id's collectives
    bool seen[SETTLE_MAX_POSITIONS] = {false};
    for (int i = 0; i < n; i++) {
        const settle_group *g = &groups[i];
        if (g->position < 0 || g->position >= np) {
            snprintf(err, errlen, "group position %d is not one of rank %d's %d groups",
                     g->position, rank, np);
            return -1;
        }
        if (seen[g->position]) {
            snprintf(err, errlen, "group position %d reported twice", g->position);
            return -1;
        }
        seen[g->position] = true;
        for (int k = 0; k < g->num_peers; k++)
            if (g->peers[k].peer < 0 || g->peers[k].peer >= pos[g->position].size) {
                snprintf(err, errlen, "group position %d names peer %d of a group of %d",
                         g->position, g->peers[k].peer, pos[g->position].size);
                return -1;
            }
    }
    size_t pairs_before = s->num_pairs;
    for (int i = 0; i < n; i++) {
        const settle_group *g = &groups[i];
        const settle_position *p = &pos[g->position];
        if (p->id < 0)
            continue; // one rank: nothing waits on another
        for (int q = 0; q < np; q++) // groups sharing a communicator add up
            if (pos[q].id == p->id) {
                sum[q] += g->collectives;
                break;
            }
        for (int k = 0; k < g->num_peers; k++) {
            const settle_peer *e = &g->peers[k];
            if ((e->sent && add_pair(s, p->id, p->rank_in_group, e->peer, e->sent)) ||
                (e->received && add_pair(s, p->id, e->peer, p->rank_in_group, -e->received))) {
                s->num_pairs = pairs_before;
                snprintf(err, errlen, "out of memory for the operation counts");
                return -1;
            }
        }
    }
    for (int q = 0; q < np; q++) {
        int id = pos[q].id;
        bool first = true; // the first position of its id holds the sum
        for (int r = 0; r < q; r++)
            first &= pos[r].id != id;
        if (id < 0 || !first)
            continue;
        if (!s->counted[id]) {
            s->counted[id] = 1;
            s->collectives[id] = sum[q];
        } else if (s->collectives[id] != sum[q]) {
            s->mismatch[id] = 1;
        }
    }
    s->reported[rank] = 1;
    s->awaited--;
    return 0;
}

static int pair_order(const void *a, const void *b)
{
    const settle_pair *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->src != y->src)
        return x->src < y->src ? -1 : 1;
    return x->dst < y->dst ? -1 : x->dst > y->dst;
}

int settle_judge(settle_state *s, const mint_plan *mp, const uint8_t *replaced, int *members)
{
    // Unmatched sends or receives, per id.
    uint8_t *unmatched = calloc((size_t)s->num_ids + 1, 1);
    if (!unmatched) { // cannot tell: keep only what holds no replaced rank
        memset(s->broken, 0, (size_t)s->num_ids + 1);
    } else {
        if (s->num_pairs)
            qsort(s->pairs, s->num_pairs, sizeof *s->pairs, pair_order);
        for (size_t i = 0; i < s->num_pairs;) {
            size_t j = i;
            uint64_t balance = 0;
            for (; j < s->num_pairs && !pair_order(&s->pairs[i], &s->pairs[j]); j++)
                balance += s->pairs[j].balance;
            if (balance)
                unmatched[s->pairs[i].id] = 1;
            i = j;
        }
    }
    int num_broken = 0;
    for (int id = 0; id < s->num_ids; id++) {
        int n = rebuild_id_members(mp, id, members);
        bool lost = false, silent = false, all_count = true;
        for (int m = 0; m < n; m++) {
            int r = members[m];
            lost |= replaced[r] != 0;
            silent |= s->expected[r] && !s->reported[r];
            all_count &= s->expected[r] != 0;
        }
        bool broken = lost || silent ||
                      (all_count && (s->mismatch[id] || (unmatched && unmatched[id])));
        s->broken[id] = broken;
        num_broken += broken;
    }
    free(unmatched);
    return num_broken;
}
