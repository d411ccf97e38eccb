// One worker's Assignment, built on the stack from the layout engine: its
// rank, module(s), coordinates, groups with the NCCL ids of its
// communicators (once each) and bridge peers.
#include <stdint.h>
#include <stdlib.h>

#include "daemon/assignment.h"

#include "daemon/hostlink.h"

static void set_id(const job *j, Hgrid__Group *g, int id)
{
    if (id < 0 || j->assignment_only)
        return; // one-rank group: no communicator
    g->kept = !rebuild_id_changed(&j->rebuild, id);
    g->nccl_id.data = j->ids + (size_t)id * MINT_ID_BYTES;
    g->nccl_id.len = MINT_ID_BYTES;
}

static void fill_module(const job *j, const hg_module_grid *m, int rank, assignment_module *out)
{
    const hg_plan *p = &j->plan;
    hg_coords co;
    hg_module_coords(m, rank, &co);
    hgrid__coordinates__init(&out->coords);
    out->coords.tp = (uint32_t)co.tp;
    out->coords.cp = (uint32_t)co.cp;
    out->coords.dp = (uint32_t)co.dp;
    out->coords.pp = (uint32_t)co.pp;
    out->coords.ep = (uint32_t)co.ep;
    out->coords.expt_tp = (uint32_t)co.expt_tp;
    out->coords.expt_dp = (uint32_t)co.expt_dp;
    int n = hg_rank_groups(p, &j->mint.canonical, m, rank, out->rank_groups);
    for (int i = 0; i < n; i++) {
        const hg_rank_group *rg = &out->rank_groups[i];
        Hgrid__Group *grp = &out->groups[i];
        hgrid__group__init(grp);
        grp->name = (char *)hg_rank_group_name(p, rg, out->names[i], sizeof out->names[i]);
        grp->size = (uint32_t)rg->size;
        grp->rank_in_group = (uint32_t)rg->rank_in_group;
        grp->index = (uint32_t)rg->index;
        // A kind sharing its canonical kind's communicator carries no id:
        // the worker's layout engine knows which earlier group holds it.
        if (rg->canonical == rg->kind)
            set_id(j, grp, mint_rank_group_id(&j->mint, m, rank, rg));
        out->group_ptrs[i] = grp;
    }
    out->n = (size_t)n;
}

// The bridge peers of rank over its bridges (in group order) into peers,
// which holds as many as the edges touching rank.
static void fill_peers(const job *j, const assignment_module *part, int rank, Hgrid__BridgePeer *peers,
                       hg_bridge_peer *scratch)
{
    int total = 0;
    for (size_t i = 0; i < part->n; i++) {
        const hg_rank_group *rg = &part->rank_groups[i];
        if (rg->kind != HG_GROUP_BRIDGE)
            continue;
        int count = hg_bridge_peers(&j->plan, rg->bridge, rank, scratch, INT32_MAX);
        for (int k = 0; k < count; k++, total++) {
            hgrid__bridge_peer__init(&peers[total]);
            peers[total].rank = (uint32_t)scratch[k].rank;
            peers[total].rank_in_bridge = (uint32_t)scratch[k].rank_in_bridge;
            peers[total].send = scratch[k].send;
            peers[total].bridge = (uint32_t)rg->bridge;
        }
    }
}

// How many bridge edges touch rank.
static int count_peers(const job *j, const assignment_module *part, int rank)
{
    int total = 0;
    for (size_t i = 0; i < part->n; i++)
        if (part->rank_groups[i].kind == HG_GROUP_BRIDGE)
            total += hg_bridge_peers(&j->plan, part->rank_groups[i].bridge, rank, NULL, 0);
    return total;
}

int assignment_build(const job *j, int rank, assignment_buf *b)
{
    const hg_plan *p = &j->plan;
    const hg_module_grid *mods[2];
    int nm = hg_plan_modules_of_rank(p, rank, mods);
    for (int i = 0; i < nm; i++)
        fill_module(j, mods[i], rank, &b->parts[i]);

    // Peers: one per edge touching rank, in b unless a wide fan-out.
    int num_peers = count_peers(j, &b->parts[0], rank);
    b->peers = b->stack_peers;
    b->peer_ptrs = b->stack_peer_ptrs;
    b->scratch = b->stack_scratch;
    if (num_peers > ASSIGNMENT_STACK_PEERS) {
        b->peers = malloc(sizeof *b->peers * (size_t)num_peers);
        b->peer_ptrs = malloc(sizeof *b->peer_ptrs * (size_t)num_peers);
        b->scratch = malloc(sizeof *b->scratch * (size_t)num_peers);
        if (!b->peers || !b->peer_ptrs || !b->scratch) {
            assignment_buf_free(b);
            return -1;
        }
    }
    fill_peers(j, &b->parts[0], rank, b->peers, b->scratch);
    for (int i = 0; i < num_peers; i++)
        b->peer_ptrs[i] = &b->peers[i];

    Hgrid__ModuleAssignment *colocated = &b->colocated;
    b->colocated_ptrs[0] = colocated;
    if (nm == 2) {
        hgrid__module_assignment__init(colocated);
        colocated->module_index = (uint32_t)mods[1]->index;
        colocated->module = mods[1]->id == HG_MODULE_ENCODER ? HGRID__MODULE__MODULE_ENCODER
                                                             : HGRID__MODULE__MODULE_LLM;
        colocated->coordinates = &b->parts[1].coords;
        colocated->n_groups = b->parts[1].n;
        colocated->groups = b->parts[1].group_ptrs;
    }
    Hgrid__Assignment *a = &b->a;
    hgrid__assignment__init(a);
    a->generation = j->rec.generation;
    a->layout = (Hgrid__Layout *)&j->wire.layout;
    a->rank = (uint32_t)rank;
    a->world_size = (uint32_t)p->world_size;
    a->module = mods[0]->id == HG_MODULE_ENCODER ? HGRID__MODULE__MODULE_ENCODER
                                                 : HGRID__MODULE__MODULE_LLM;
    a->module_index = (uint32_t)mods[0]->index;
    a->coordinates = &b->parts[0].coords;
    a->n_groups = b->parts[0].n;
    a->groups = b->parts[0].group_ptrs;
    a->n_bridge_peers = (size_t)num_peers;
    a->bridge_peers = b->peer_ptrs;
    a->n_colocated_modules = nm == 2 ? 1 : 0;
    a->colocated_modules = b->colocated_ptrs;
    a->job = (char *)j->rec.name;
    a->assignment_only = j->assignment_only;
    return 0;
}

void assignment_buf_free(assignment_buf *b)
{
    if (b->peers != b->stack_peers)
        free(b->peers);
    if (b->peer_ptrs != b->stack_peer_ptrs)
        free(b->peer_ptrs);
    if (b->scratch != b->stack_scratch)
        free(b->scratch);
    b->peers = b->stack_peers;
    b->peer_ptrs = b->stack_peer_ptrs;
    b->scratch = b->stack_scratch;
}

int assignment_send(job *j, int rank, conn *c)
{
    if (c->kind == CONN_REMOTE)
        return hostlink_assign(c, rank);
    assignment_buf b;
    if (assignment_build(j, rank, &b)) {
        conn_close(c, "out of memory for bridge peers");
        return -1;
    }
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_ASSIGNMENT;
    env.assignment = &b.a;
    int rc = conn_send(c, &env);
    assignment_buf_free(&b);
    return rc;
}
