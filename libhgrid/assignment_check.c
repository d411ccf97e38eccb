// An Assignment against the layout engine's answer for the same rank.
#include "libhgrid/assignment_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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
    hg_canonical_kinds_build(&ref->plan, &ref->canonical);
    return 0;
}

int assign_expected_groups(const assign_ref *ref, int rank, assign_group *out)
{
    const hg_module_grid *mods[2];
    int nm = hg_plan_modules_of_rank(&ref->plan, rank, mods), n = 0;
    for (int mi = 0; mi < nm; mi++) {
        hg_rank_group groups[HG_MAX_RANK_GROUPS];
        int ng = hg_rank_groups(&ref->plan, &ref->canonical, mods[mi], rank, groups);
        for (int i = 0; i < ng; i++) {
            const hg_rank_group *g = &groups[i];
            out[n++] = (assign_group){g->kind, g->canonical, g->size, g->rank_in_group,
                                      g->index, g->bridge, mods[mi]->index};
        }
    }
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

static int check_coords(const hg_module_grid *m, uint32_t rank, const Hgrid__Coordinates *x,
                        char *err, size_t errlen)
{
    hg_coords c;
    hg_module_coords(m, (int)rank, &c);
    if (!x)
        return fail(err, errlen, "rank %u: no %s coordinates", rank, m->name);
    const char *names[] = {"tp", "cp", "dp", "pp", "ep", "expt_tp", "expt_dp"};
    const int want[] = {c.tp, c.cp, c.dp, c.pp, c.ep, c.expt_tp, c.expt_dp};
    const uint32_t got[] = {x->tp, x->cp, x->dp, x->pp, x->ep, x->expt_tp, x->expt_dp};
    for (int i = 0; i < 7; i++)
        if (got[i] != (uint32_t)want[i])
            return fail(err, errlen, "rank %u: %s coordinate %s is %u, the engine says %d", rank,
                        m->name, names[i], got[i], want[i]);
    return 0;
}

// The groups of module m against the engine's want[0..n); ids: the
// generation carries NCCL ids (not assignment-only).
static int check_groups(const assign_ref *ref, uint32_t rank, bool ids, Hgrid__Group *const *groups,
                        size_t n_groups, const assign_group *want, int n, char *err,
                        size_t errlen)
{
    if (n_groups != (size_t)n)
        return fail(err, errlen, "rank %u: %zu groups, the engine says %d", rank, n_groups, n);
    for (int i = 0; i < n; i++) {
        const Hgrid__Group *g = groups[i];
        const assign_group *w = &want[i];
        char buf[HG_GROUP_NAME_LEN];
        hg_rank_group rg = {w->kind, w->bridge, w->canonical, w->index, w->size, w->rank_in_group};
        const char *name = hg_rank_group_name(&ref->plan, &rg, buf, sizeof buf);
        if (!g->name || strcmp(g->name, name) != 0)
            return fail(err, errlen, "rank %u: group %d is '%.32s', the engine says '%s'", rank,
                        i, g->name ? g->name : "", name);
        if (g->size != (uint32_t)w->size || g->rank_in_group != (uint32_t)w->rank_in_group ||
            g->index != (uint32_t)w->index)
            return fail(err, errlen,
                        "rank %u: group %s has size %u, rank_in_group %u, index %u; the engine "
                        "says %d, %d, %d",
                        rank, name, g->size, g->rank_in_group, g->index, w->size,
                        w->rank_in_group, w->index);
        // Each communicator's id comes once, with its canonical kind's group;
        // kinds sharing it and one-rank groups carry none.
        // An assignment-only generation carries none at all.
        size_t id_len = ids && w->size > 1 && w->canonical == w->kind
                            ? ASSIGN_ID_BYTES : 0;
        if (g->nccl_id.len != id_len)
            return fail(err, errlen, "rank %u: group %s carries a %zu-byte id, expected %zu",
                        rank, name, g->nccl_id.len, id_len);
    }
    return 0;
}

// The peers of every bridge rank leads, in group order.
static int check_bridge_peers(const assign_ref *ref, const Hgrid__Assignment *a,
                              const assign_group *want, int n, char *err, size_t errlen)
{
    const hg_plan *p = &ref->plan;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (want[i].kind != ASSIGN_BRIDGE)
            continue;
        int b = want[i].bridge;
        int count = hg_bridge_peers(p, b, (int)a->rank, NULL, 0);
        hg_bridge_peer stack[64], *edges = stack;
        if (count > 64 && !(edges = malloc(sizeof *edges * (size_t)count)))
            return fail(err, errlen, "rank %u: out of memory for %d bridge peers", a->rank, count);
        hg_bridge_peers(p, b, (int)a->rank, edges, count);
        int bad = 0;
        for (int k = 0; k < count && !bad; k++) {
            const hg_bridge_peer *e = &edges[k];
            if (at >= a->n_bridge_peers) {
                bad = fail(err, errlen, "rank %u: bridge peer %d is missing", a->rank, e->rank);
                break;
            }
            const Hgrid__BridgePeer *got = a->bridge_peers[at++];
            if (got->rank != (uint32_t)e->rank ||
                got->rank_in_bridge != (uint32_t)e->rank_in_bridge || got->send != e->send ||
                got->bridge != (uint32_t)b)
                bad = fail(err, errlen,
                           "rank %u: bridge peer %zu is rank %u (bridge %u index %u, send %d); "
                           "the engine says rank %d (bridge %d index %d, send %d)",
                           a->rank, at - 1, got->rank, got->bridge, got->rank_in_bridge,
                           (int)got->send, e->rank, b, e->rank_in_bridge, e->send);
        }
        if (edges != stack)
            free(edges);
        if (bad)
            return -1;
    }
    if (at != a->n_bridge_peers)
        return fail(err, errlen, "rank %u: %zu bridge peers, the engine says %zu", a->rank,
                    a->n_bridge_peers, at);
    return 0;
}

static int module_enum(hg_module_id id)
{
    return id == HG_MODULE_ENCODER ? HGRID__MODULE__MODULE_ENCODER : HGRID__MODULE__MODULE_LLM;
}

int assign_check(const assign_ref *ref, const Hgrid__Assignment *a, char *err, size_t errlen)
{
    const hg_plan *p = &ref->plan;
    if (a->world_size != (uint32_t)p->world_size)
        return fail(err, errlen, "world size %u, the layout says %d", a->world_size, p->world_size);
    if (a->rank >= (uint32_t)p->world_size)
        return fail(err, errlen, "rank %u is outside a world of %d", a->rank, p->world_size);
    const hg_module_grid *mods[2];
    int nm = hg_plan_modules_of_rank(p, (int)a->rank, mods);
    // One encoder: the module names it (older gridds send no module_index).
    bool index_ok = a->module_index == (uint32_t)mods[0]->index ||
                    (p->num_encoders <= 1 && a->module_index == 0);
    if ((int)a->module != module_enum(mods[0]->id) || !index_ok)
        return fail(err, errlen, "rank %u: module %d (index %u), the engine says %s (index %d)",
                    a->rank, (int)a->module, a->module_index, mods[0]->name, mods[0]->index);
    if (a->n_colocated_modules != (size_t)(nm - 1))
        return fail(err, errlen, "rank %u: %zu colocated modules, the engine says %d", a->rank,
                    a->n_colocated_modules, nm - 1);
    assign_group want[ASSIGN_MAX_GROUPS];
    int n = assign_expected_groups(ref, (int)a->rank, want), first = 0;
    while (first < n && want[first].module_index == mods[0]->index)
        first++;
    if (check_coords(mods[0], a->rank, a->coordinates, err, errlen) ||
        check_groups(ref, a->rank, !a->assignment_only, a->groups, a->n_groups, want, first, err, errlen))
        return -1;
    if (nm == 2) {
        const Hgrid__ModuleAssignment *c = a->colocated_modules[0];
        if (c->module_index != (uint32_t)mods[1]->index || (int)c->module != module_enum(mods[1]->id))
            return fail(err, errlen, "rank %u: colocated module %u, the engine says %s (index %d)",
                        a->rank, c->module_index, mods[1]->name, mods[1]->index);
        if (check_coords(mods[1], a->rank, c->coordinates, err, errlen) ||
            check_groups(ref, a->rank, !a->assignment_only, c->groups, c->n_groups, want + first, n - first, err,
                         errlen))
            return -1;
    }
    return check_bridge_peers(ref, a, want, first, err, errlen);
}

// Group at of the Assignment's groups followed by its colocated module's.
static const Hgrid__Group *group_at(const Hgrid__Assignment *a, int at)
{
    size_t i = (size_t)at;
    return i < a->n_groups ? a->groups[i] : a->colocated_modules[0]->groups[i - a->n_groups];
}

int assign_check_minted(const assign_ref *ref, const Hgrid__Assignment *a, const uint8_t *ids,
                        int count, char *err, size_t errlen)
{
    int which[ASSIGN_MAX_GROUPS], minted[ASSIGN_MAX_GROUPS], want = 0;
    int led = a->assignment_only ? 0 : assign_mint_plan(ref, (int)a->rank, which);
    for (int i = 0; i < led; i++)
        if (!group_at(a, which[i])->kept) // a kept group's id is the last generation's
            minted[want++] = which[i];
    if (count != want)
        return fail(err, errlen, "rank %u minted %d ids, its groups need %d", a->rank, count, want);
    for (int i = 0; i < count; i++) {
        const Hgrid__Group *g = group_at(a, minted[i]);
        if (memcmp(g->nccl_id.data, ids + (size_t)i * ASSIGN_ID_BYTES, ASSIGN_ID_BYTES) != 0)
            return fail(err, errlen, "rank %u leads group %s but its id is not the one it minted",
                        a->rank, g->name);
    }
    return 0;
}
