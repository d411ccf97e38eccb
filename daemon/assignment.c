// One worker's Assignment, built on the stack from the layout engine: its
// rank, module, coordinates, groups with the NCCL ids of its communicators
// (once each) and bridge peers.
#include <stdlib.h>

#include "daemon/assignment.h"

#define STACK_PEERS 64

static void set_id(const job *j, Hgrid__Group *g, int id)
{
    if (id < 0 || j->assignment_only)
        return; // one-rank group: no communicator
    g->nccl_id.data = j->ids + (size_t)id * MINT_ID_BYTES;
    g->nccl_id.len = MINT_ID_BYTES;
}

// The bridge edges touching a leader: encoder lane e feeds LLM lanes
// [e*k, (e+1)*k) on fan-out, lane e/k on fan-in (k = the dp ratio).
static int bridge_peers(const hg_plan *p, int index, Hgrid__BridgePeer *peers, int max)
{
    int enc = p->modules[0].dense[HG_DIM_DP], llm = p->modules[1].dense[HG_DIM_DP];
    bool encoder = index < enc;
    int lane = encoder ? index : index - enc;
    int mine = encoder ? enc : llm, theirs = encoder ? llm : enc;
    int first = lane, count = 1;
    if (theirs > mine) { // each of my lanes meets k of theirs
        count = theirs / mine;
        first = lane * count;
    } else if (theirs < mine) {
        first = lane / (mine / theirs);
    }
    if (count > max)
        return -1;
    hg_module_id other = encoder ? HG_MODULE_LLM : HG_MODULE_ENCODER;
    for (int i = 0; i < count; i++) {
        hgrid__bridge_peer__init(&peers[i]);
        peers[i].rank = (uint32_t)hg_bridge_leader(p, other, first + i);
        peers[i].rank_in_bridge = (uint32_t)(encoder ? enc + first + i : first + i);
        peers[i].send = encoder;
    }
    return count;
}

int assignment_send(job *j, int rank, conn *c)
{
    const hg_plan *p = &j->plan;
    const hg_module_grid *m = hg_plan_module_of_rank(p, rank);
    int mi = m == &p->modules[0] ? 0 : 1; // index into j->mint's tables
    hg_coords co;
    hg_rank_coords(p, rank, &co);
    Hgrid__Coordinates coords;
    hgrid__coordinates__init(&coords);
    coords.tp = (uint32_t)co.tp;
    coords.cp = (uint32_t)co.cp;
    coords.dp = (uint32_t)co.dp;
    coords.pp = (uint32_t)co.pp;
    coords.ep = (uint32_t)co.ep;
    coords.expt_tp = (uint32_t)co.expt_tp;
    coords.expt_dp = (uint32_t)co.expt_dp;

    Hgrid__Group groups[HG_NUM_GROUP_KINDS + 1], *group_ptrs[HG_NUM_GROUP_KINDS + 1];
    size_t n = 0;
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
        int g, rank_in_group;
        if (!hg_group_applies(m, (hg_group_kind)k) ||
            !hg_group_of_rank(m, (hg_group_kind)k, rank, &g, &rank_in_group))
            continue;
        Hgrid__Group *grp = &groups[n];
        hgrid__group__init(grp);
        grp->name = (char *)hg_group_name((hg_group_kind)k);
        grp->size = (uint32_t)hg_group_size(m, (hg_group_kind)k);
        grp->rank_in_group = (uint32_t)rank_in_group;
        grp->index = (uint32_t)g;
        // A kind sharing its canonical kind's communicator carries no id:
        // the worker's layout engine knows which earlier group holds it.
        if (j->mint.canonical[mi][k] == (hg_group_kind)k)
            set_id(j, grp, mint_group_id(&j->mint, rank, (hg_group_kind)k));
        group_ptrs[n] = grp;
        n++;
    }
    Hgrid__BridgePeer stack_peers[STACK_PEERS], *peers = stack_peers;
    Hgrid__BridgePeer *peer_ptrs_stack[STACK_PEERS], **peer_ptrs = peer_ptrs_stack;
    int num_peers = 0;
    int bridge_index = hg_bridge_index_of_rank(p, rank);
    if (bridge_index >= 0) {
        Hgrid__Group *grp = &groups[n];
        hgrid__group__init(grp);
        grp->name = "bridge";
        grp->size = (uint32_t)hg_bridge_size(p);
        grp->rank_in_group = (uint32_t)bridge_index;
        set_id(j, grp, j->mint.bridge_id);
        group_ptrs[n] = grp;
        n++;
        num_peers = bridge_peers(p, bridge_index, peers, STACK_PEERS);
        if (num_peers < 0) { // a wide fan-out: more peers than the stack holds
            int max = p->world_size;
            peers = malloc(sizeof *peers * (size_t)max);
            peer_ptrs = malloc(sizeof *peer_ptrs * (size_t)max);
            if (!peers || !peer_ptrs) {
                free(peers);
                free(peer_ptrs);
                conn_close(c, "out of memory for bridge peers");
                return -1;
            }
            num_peers = bridge_peers(p, bridge_index, peers, max);
        }
        for (int i = 0; i < num_peers; i++)
            peer_ptrs[i] = &peers[i];
    }

    Hgrid__Assignment a;
    hgrid__assignment__init(&a);
    a.generation = j->rec.generation;
    a.layout = &j->layout;
    a.rank = (uint32_t)rank;
    a.world_size = (uint32_t)p->world_size;
    a.module = m->id == HG_MODULE_ENCODER ? HGRID__MODULE__MODULE_ENCODER
                                          : HGRID__MODULE__MODULE_LLM;
    a.coordinates = &coords;
    a.n_groups = n;
    a.groups = group_ptrs;
    a.n_bridge_peers = (size_t)num_peers;
    a.bridge_peers = peer_ptrs;
    a.job = j->rec.name;
    a.assignment_only = j->assignment_only;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_ASSIGNMENT;
    env.assignment = &a;
    int rc = conn_send(c, &env);
    if (peers != stack_peers) {
        free(peers);
        free(peer_ptrs);
    }
    return rc;
}
