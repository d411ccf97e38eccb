// An Assignment against the layout engine's answer for the same rank.
#include "libhgrid/assignment_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "wire/wire.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int assign_ref_build(assign_ref *ref, const Hgrid__Layout *layout, char *err, size_t errlen)
{
    hg_layout_spec spec;
    char why[HG_ERR_LEN];
    if (wire_layout_to_spec(layout, &spec, why, sizeof why) ||
        hg_plan_build(&spec, &ref->plan, why, sizeof why))
        return fail(err, errlen, "the assignment's layout is invalid here: %s", why);
    for (int i = 0; i < ref->plan.num_modules; i++) {
        const hg_module_grid *m = &ref->plan.modules[i];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
            ref->canonical[m->id][k] = hg_group_applies(m, (hg_group_kind)k)
                                           ? hg_group_canonical(m, (hg_group_kind)k)
                                           : (hg_group_kind)k;
    }
    return 0;
}

int assign_expected_groups(const assign_ref *ref, int rank, assign_group *out)
{
    const hg_module_grid *m = hg_plan_module_of_rank(&ref->plan, rank);
    int n = 0;
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
        int g, j;
        if (!hg_group_applies(m, (hg_group_kind)k) ||
            !hg_group_of_rank(m, (hg_group_kind)k, rank, &g, &j))
            continue;
        out[n++] = (assign_group){k, (int)ref->canonical[m->id][k],
                                  hg_group_size(m, (hg_group_kind)k), j, g};
    }
    int b = hg_bridge_index_of_rank(&ref->plan, rank);
    if (b >= 0)
        out[n++] = (assign_group){ASSIGN_BRIDGE, ASSIGN_BRIDGE, hg_bridge_size(&ref->plan), b, 0};
    return n;
}

int assign_mint_plan(const assign_ref *ref, int rank, int *which)
{
    assign_group groups[ASSIGN_MAX_GROUPS];
    int n = assign_expected_groups(ref, rank, groups), count = 0;
    for (int i = 0; i < n; i++) {
        const assign_group *g = &groups[i];
        if (g->kind == g->canonical && g->size > 1 && g->rank_in_group == 0) {
            if (which)
                which[count] = i;
            count++;
        }
    }
    return count;
}

static const char *group_name(int kind)
{
    return kind == ASSIGN_BRIDGE ? "bridge" : hg_group_name((hg_group_kind)kind);
}

static int check_coords(const assign_ref *ref, const Hgrid__Assignment *a, char *err,
                        size_t errlen)
{
    hg_coords c;
    hg_rank_coords(&ref->plan, (int)a->rank, &c);
    const Hgrid__Coordinates *x = a->coordinates;
    if (!x)
        return fail(err, errlen, "rank %u: no coordinates", a->rank);
    const char *names[] = {"tp", "cp", "dp", "pp", "ep", "expt_tp", "expt_dp"};
    const int want[] = {c.tp, c.cp, c.dp, c.pp, c.ep, c.expt_tp, c.expt_dp};
    const uint32_t got[] = {x->tp, x->cp, x->dp, x->pp, x->ep, x->expt_tp, x->expt_dp};
    for (int i = 0; i < 7; i++)
        if (got[i] != (uint32_t)want[i])
            return fail(err, errlen, "rank %u: coordinate %s is %u, the engine says %d", a->rank,
                        names[i], got[i], want[i]);
    return 0;
}

static int check_groups(const assign_ref *ref, const Hgrid__Assignment *a, char *err,
                        size_t errlen)
{
    assign_group want[ASSIGN_MAX_GROUPS];
    int n = assign_expected_groups(ref, (int)a->rank, want);
    if (a->n_groups != (size_t)n)
        return fail(err, errlen, "rank %u: %zu groups, the engine says %d", a->rank, a->n_groups, n);
    for (int i = 0; i < n; i++) {
        const Hgrid__Group *g = a->groups[i];
        const assign_group *w = &want[i];
        const char *name = group_name(w->kind);
        if (strcmp(g->name, name) != 0)
            return fail(err, errlen, "rank %u: group %d is '%.32s', the engine says '%s'", a->rank,
                        i, g->name, name);
        if (g->size != (uint32_t)w->size || g->rank_in_group != (uint32_t)w->rank_in_group ||
            g->index != (uint32_t)w->index)
            return fail(err, errlen,
                        "rank %u: group %s has size %u, rank_in_group %u, index %u; the engine "
                        "says %d, %d, %d",
                        a->rank, name, g->size, g->rank_in_group, g->index, w->size,
                        w->rank_in_group, w->index);
        // Each communicator's id comes once, with its canonical kind's group;
        // kinds sharing it and one-rank groups carry none.
        // An assignment-only generation carries none at all.
        size_t id_len = !a->assignment_only && w->size > 1 && w->canonical == w->kind
                            ? ASSIGN_ID_BYTES : 0;
        if (g->nccl_id.len != id_len)
            return fail(err, errlen, "rank %u: group %s carries a %zu-byte id, expected %zu",
                        a->rank, name, g->nccl_id.len, id_len);
    }
    return 0;
}

static int check_bridge_peers(const assign_ref *ref, const Hgrid__Assignment *a, char *err,
                              size_t errlen)
{
    const hg_plan *p = &ref->plan;
    size_t n = 0;
    // Only bridge leaders have edges; skipping the others keeps a 16K-worker
    // check linear.
    bool leader = hg_plan_has_bridge(p) && hg_bridge_index_of_rank(p, (int)a->rank) >= 0;
    int edges = leader ? hg_bridge_num_edges(p) : 0;
    for (int e = 0; e < edges; e++) {
        int enc, llm;
        hg_bridge_edge(p, e, &enc, &llm);
        if (enc != (int)a->rank && llm != (int)a->rank)
            continue;
        int peer = enc == (int)a->rank ? llm : enc;
        if (n >= a->n_bridge_peers)
            return fail(err, errlen, "rank %u: bridge peer %d is missing", a->rank, peer);
        const Hgrid__BridgePeer *b = a->bridge_peers[n++];
        if (b->rank != (uint32_t)peer ||
            b->rank_in_bridge != (uint32_t)hg_bridge_index_of_rank(p, peer) ||
            b->send != (enc == (int)a->rank))
            return fail(err, errlen,
                        "rank %u: bridge peer %zu is rank %u (bridge index %u, send %d); the "
                        "engine says rank %d (bridge index %d, send %d)",
                        a->rank, n - 1, b->rank, b->rank_in_bridge, (int)b->send, peer,
                        hg_bridge_index_of_rank(p, peer), enc == (int)a->rank);
    }
    if (n != a->n_bridge_peers)
        return fail(err, errlen, "rank %u: %zu bridge peers, the engine says %zu", a->rank,
                    a->n_bridge_peers, n);
    return 0;
}

int assign_check(const assign_ref *ref, const Hgrid__Assignment *a, char *err, size_t errlen)
{
    const hg_plan *p = &ref->plan;
    if (a->world_size != (uint32_t)p->world_size)
        return fail(err, errlen, "world size %u, the layout says %d", a->world_size, p->world_size);
    if (a->rank >= (uint32_t)p->world_size)
        return fail(err, errlen, "rank %u is outside a world of %d", a->rank, p->world_size);
    hg_module_id module = hg_plan_module_of_rank(p, (int)a->rank)->id;
    if ((int)a->module != (int)module)
        return fail(err, errlen, "rank %u: module %d, the engine says %s", a->rank, (int)a->module,
                    hg_module_name(module));
    if (check_coords(ref, a, err, errlen) || check_groups(ref, a, err, errlen))
        return -1;
    return check_bridge_peers(ref, a, err, errlen);
}

int assign_check_minted(const assign_ref *ref, const Hgrid__Assignment *a, const uint8_t *ids,
                        int count, char *err, size_t errlen)
{
    int which[ASSIGN_MAX_GROUPS];
    int want = a->assignment_only ? 0 : assign_mint_plan(ref, (int)a->rank, which);
    if (count != want)
        return fail(err, errlen, "rank %u minted %d ids, its groups need %d", a->rank, count, want);
    for (int i = 0; i < count; i++) {
        const Hgrid__Group *g = a->groups[which[i]];
        if (memcmp(g->nccl_id.data, ids + (size_t)i * ASSIGN_ID_BYTES, ASSIGN_ID_BYTES) != 0)
            return fail(err, errlen, "rank %u leads group %s but its id is not the one it minted",
                        a->rank, g->name);
    }
    return 0;
}
