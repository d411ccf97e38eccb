// libhgrid: taking in an Assignment (checked against the layout engine)
// and the accessors a training program reads it with.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libhgrid/libhgrid_impl.h"

void hgrid_drop_assignment(hgrid_worker *w)
{
    free(w->members);
    free(w->peers);
    w->members = NULL;
    w->peers = NULL;
    w->num_groups = w->num_peers = 0;
    w->assigned = false;
}

// Fills w->groups (with member lists) from the checked Assignment.
static int store_groups(hgrid_worker *w, const Hgrid__Assignment *a)
{
    assign_group want[ASSIGN_MAX_GROUPS];
    int n = assign_expected_groups(&w->ref, w->rank, want);
    memset(w->broken, 0, sizeof w->broken); // AbortGroups named the last assignment's
    w->broken_notices = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)want[i].size;
    w->members = malloc(total * sizeof(int));
    if (!w->members)
        return hgrid_fail(w, HGRID_ERR_IO, "out of memory for %zu group members", total);
    const hg_plan *p = &w->ref.plan;
    int first_module = want[0].module_index;
    int *at = w->members;
    for (int i = 0; i < n; i++) {
        group_slot *s = &w->groups[i];
        const assign_group *x = &want[i];
        const hg_module_grid *m = &p->modules[x->module_index];
        const Hgrid__Group *g = (size_t)i < a->n_groups
                                    ? a->groups[i]
                                    : a->colocated_modules[0]->groups[(size_t)i - a->n_groups];
        hg_rank_group rg = {x->kind, x->bridge, x->canonical, x->index, x->size, x->rank_in_group};
        char buf[HG_GROUP_NAME_LEN];
        const char *name = hg_rank_group_name(p, &rg, buf, sizeof buf);
        // A colocated rank's second module's groups: "llm.tp", ...
        if (x->module_index != first_module)
            snprintf(s->name, sizeof s->name, "%s.%s", m->name, name);
        else
            snprintf(s->name, sizeof s->name, "%s", name);
        s->pub.name = s->name;
        hg_rank_group_members(p, m, &rg, at);
        s->pub.size = want[i].size;
        s->pub.rank_in_group = want[i].rank_in_group;
        s->pub.index = want[i].index;
        s->pub.members = at;
        at += want[i].size;
        s->pub.shares_with = i;
        for (int c = 0; c < i; c++)
            if (want[c].kind == want[i].canonical && want[c].module_index == x->module_index)
                s->pub.shares_with = c;
        // The id comes once per communicator, with the canonical group
        // (earlier in the list); every group sharing it gets a copy.
        const group_slot *owner = &w->groups[s->pub.shares_with];
        if (g->nccl_id.len)
            memcpy(s->id, g->nccl_id.data, g->nccl_id.len);
        else if (owner != s && owner->pub.nccl_id)
            memcpy(s->id, owner->id, sizeof s->id);
        s->pub.nccl_id = g->nccl_id.len || (owner != s && owner->pub.nccl_id) ? s->id : NULL;
        s->pub.kept = s->pub.nccl_id && (owner != s ? owner->pub.kept : g->kept);
    }
    w->num_groups = n;
    return HGRID_OK;
}

static int store_peers(hgrid_worker *w, const Hgrid__Assignment *a)
{
    w->peers = calloc(a->n_bridge_peers ? a->n_bridge_peers : 1, sizeof *w->peers);
    if (!w->peers)
        return hgrid_fail(w, HGRID_ERR_IO, "out of memory for bridge peers");
    for (size_t i = 0; i < a->n_bridge_peers; i++)
        w->peers[i] = (hgrid_bridge_peer){(int)a->bridge_peers[i]->rank,
                                          (int)a->bridge_peers[i]->rank_in_bridge,
                                          a->bridge_peers[i]->send,
                                          (int)a->bridge_peers[i]->bridge};
    w->num_peers = (int)a->n_bridge_peers;
    return HGRID_OK;
}

int hgrid_take_assignment(hgrid_worker *w, const Hgrid__Assignment *a)
{
    hgrid_drop_assignment(w);
    if (a->job && *a->job && strcmp(a->job, w->hello.job) != 0)
        return hgrid_fail(w, HGRID_ERR_MISMATCH, "gridd sent an Assignment for job '%.64s'; "
                          "this worker joined job '%.64s'", a->job, w->hello.job);
    char err[HGRID_ERR_LEN - 64];
    if (assign_ref_build(&w->ref, a->layout, err, sizeof err) || assign_check(&w->ref, a, err, sizeof err))
        return hgrid_fail(w, HGRID_ERR_MISMATCH,
                          "gridd's assignment disagrees with this worker's layout engine: %s "
                          "(are gridd and hgrid-worker the same build?)", err);
    int minted = w->mint_generation == a->generation ? w->minted_count : 0;
    if (assign_check_minted(&w->ref, a, w->minted, minted, err, sizeof err))
        return hgrid_fail(w, HGRID_ERR_MISMATCH, "gridd relayed the wrong ids: %s", err);
    w->rank = (int)a->rank;
    w->generation = a->generation;
    w->unused_mints = 0;
    w->assignment_only = a->assignment_only;
    snprintf(w->job, sizeof w->job, "%s", a->job ? a->job : "");
    const hg_module_grid *mods[2];
    w->num_modules = hg_plan_modules_of_rank(&w->ref.plan, w->rank, mods);
    hg_module_coords(mods[0], w->rank, &w->coords);
    if (w->num_modules == 2)
        hg_module_coords(mods[1], w->rank, &w->colocated);
    int rc = store_groups(w, a);
    if (rc == HGRID_OK)
        rc = store_peers(w, a);
    if (rc != HGRID_OK) {
        hgrid_drop_assignment(w);
        return rc;
    }
    w->assigned = true;
    w->ready_sent = false;
    w->last_step = 0;
    w->last_step_time_s = 0;
    return HGRID_OK;
}

int hgrid_rank(const hgrid_worker *w) { return w->rank; }
int hgrid_world_size(const hgrid_worker *w) { return w->ref.plan.world_size; }
uint64_t hgrid_generation(const hgrid_worker *w) { return w->generation; }
hg_module_id hgrid_module(const hgrid_worker *w) { return w->coords.module; }
const hg_coords *hgrid_coords(const hgrid_worker *w) { return &w->coords; }
int hgrid_num_modules(const hgrid_worker *w) { return w->num_modules; }

const hg_coords *hgrid_coords_at(const hgrid_worker *w, int i)
{
    return i == 0 ? &w->coords : i == 1 && w->num_modules == 2 ? &w->colocated : NULL;
}
const hg_plan *hgrid_plan(const hgrid_worker *w) { return &w->ref.plan; }
const char *hgrid_job(const hgrid_worker *w) { return w->job; }
int hgrid_num_groups(const hgrid_worker *w) { return w->num_groups; }
const char *hgrid_module_name(const hgrid_worker *w) { return hg_module_name(w->coords.module); }
bool hgrid_assigned(const hgrid_worker *w) { return w->assigned; }
bool hgrid_assignment_only(const hgrid_worker *w) { return w->assignment_only; }
int hgrid_module_index(const hgrid_worker *w) { return (int)w->coords.module; }

int hgrid_coord(const hgrid_worker *w, const char *dim)
{
    const hg_coords *c = &w->coords;
    const struct { const char *name; int value; } dims[] = {
        {"tp", c->tp}, {"cp", c->cp}, {"dp", c->dp}, {"pp", c->pp},
        {"ep", c->ep}, {"expt_tp", c->expt_tp}, {"expt_dp", c->expt_dp},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (!strcmp(dims[i].name, dim))
            return dims[i].value;
    return -1;
}
int hgrid_num_bridge_peers(const hgrid_worker *w) { return w->num_peers; }

const hgrid_group *hgrid_group_at(const hgrid_worker *w, int i)
{
    return i >= 0 && i < w->num_groups ? &w->groups[i].pub : NULL;
}

const hgrid_group *hgrid_group_find(const hgrid_worker *w, const char *name)
{
    for (int i = 0; i < w->num_groups; i++)
        if (strcmp(w->groups[i].pub.name, name) == 0)
            return &w->groups[i].pub;
    return NULL;
}

const hgrid_bridge_peer *hgrid_bridge_peer_at(const hgrid_worker *w, int i)
{
    return i >= 0 && i < w->num_peers ? &w->peers[i] : NULL;
}
