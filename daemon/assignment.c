// One worker's Assignment, built on the stack from the layout engine: its
// rank, module(s), coordinates, groups with the NCCL ids of its
// communicators (once each) and bridge peers.
#include <stdint.h>
#include <stdlib.h>

#include "daemon/assignment.h"

#define STACK_PEERS 64

static void set_id(const job *j, Hgrid__Group *g, int id)
{
    if (id < 0)
        return; // one-rank group: no communicator
    g->nccl_id.data = j->ids + (size_t)id * MINT_ID_BYTES;
    g->nccl_id.len = MINT_ID_BYTES;
}

// One module's coordinates and groups of rank, in the engine's order.
typedef struct {
    Hgrid__Coordinates coords;
    Hgrid__Group groups[HG_MAX_RANK_GROUPS], *group_ptrs[HG_MAX_RANK_GROUPS];
    char names[HG_MAX_RANK_GROUPS][HG_GROUP_NAME_LEN];
    hg_rank_group rank_groups[HG_MAX_RANK_GROUPS];
    size_t n;
} module_part;

static void fill_module(const job *j, const hg_module_grid *m, int rank, module_part *out)
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
static void fill_peers(const job *j, const module_part *part, int rank, Hgrid__BridgePeer *peers,
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
static int count_peers(const job *j, const module_part *part, int rank)
{
    int total = 0;
    for (size_t i = 0; i < part->n; i++)
        if (part->rank_groups[i].kind == HG_GROUP_BRIDGE)
            total += hg_bridge_peers(&j->plan, part->rank_groups[i].bridge, rank, NULL, 0);
    return total;
}

int assignment_send(job *j, int rank, conn *c)
{
    const hg_plan *p = &j->plan;
    const hg_module_grid *mods[2];
    int nm = hg_plan_modules_of_rank(p, rank, mods);
    module_part parts[2];
    for (int i = 0; i < nm; i++)
        fill_module(j, mods[i], rank, &parts[i]);

    // Peers: one per edge touching rank, on the stack unless a wide fan-out.
    int num_peers = count_peers(j, &parts[0], rank);
    Hgrid__BridgePeer stack_peers[STACK_PEERS], *peers = stack_peers;
    Hgrid__BridgePeer *stack_ptrs[STACK_PEERS], **peer_ptrs = stack_ptrs;
    hg_bridge_peer stack_scratch[STACK_PEERS], *scratch = stack_scratch;
    if (num_peers > STACK_PEERS) {
        peers = malloc(sizeof *peers * (size_t)num_peers);
        peer_ptrs = malloc(sizeof *peer_ptrs * (size_t)num_peers);
        scratch = malloc(sizeof *scratch * (size_t)num_peers);
        if (!peers || !peer_ptrs || !scratch) {
            free(peers);
            free(peer_ptrs);
            free(scratch);
            conn_close(c, "out of memory for bridge peers");
            return -1;
        }
    }
    fill_peers(j, &parts[0], rank, peers, scratch);
    for (int i = 0; i < num_peers; i++)
        peer_ptrs[i] = &peers[i];

    Hgrid__ModuleAssignment colocated, *colocated_ptrs[1] = {&colocated};
    if (nm == 2) {
        hgrid__module_assignment__init(&colocated);
        colocated.module_index = (uint32_t)mods[1]->index;
        colocated.module = mods[1]->id == HG_MODULE_ENCODER ? HGRID__MODULE__MODULE_ENCODER
                                                            : HGRID__MODULE__MODULE_LLM;
        colocated.coordinates = &parts[1].coords;
        colocated.n_groups = parts[1].n;
        colocated.groups = parts[1].group_ptrs;
    }
    Hgrid__Assignment a;
    hgrid__assignment__init(&a);
    a.generation = j->rec.generation;
    a.layout = &j->wire.layout;
    a.rank = (uint32_t)rank;
    a.world_size = (uint32_t)p->world_size;
    a.module = mods[0]->id == HG_MODULE_ENCODER ? HGRID__MODULE__MODULE_ENCODER
                                                : HGRID__MODULE__MODULE_LLM;
    a.module_index = (uint32_t)mods[0]->index;
    a.coordinates = &parts[0].coords;
    a.n_groups = parts[0].n;
    a.groups = parts[0].group_ptrs;
    a.n_bridge_peers = (size_t)num_peers;
    a.bridge_peers = peer_ptrs;
    a.n_colocated_modules = nm == 2 ? 1 : 0;
    a.colocated_modules = colocated_ptrs;
    a.job = j->rec.name;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_ASSIGNMENT;
    env.assignment = &a;
    int rc = conn_send(c, &env);
    if (peers != stack_peers) {
        free(peers);
        free(peer_ptrs);
        free(scratch);
    }
    return rc;
}
