// One worker's Assignment, built on the stack from the layout engine: its
// rank, module, coordinates, groups with the NCCL ids of its communicators
// (once each) and bridge peers.
#include <stdlib.h>

#include "daemon/assignment.h"

#include "daemon/hostlink.h"

static void set_id(const job *j, Hgrid__Group *g, int id)
{
    if (id < 0)
        return; // one-rank group: no communicator
    g->kept = !rebuild_id_changed(&j->rebuild, id);
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

int assignment_build(const job *j, int rank, assignment_buf *b)
{
    const hg_plan *p = &j->plan;
    const hg_module_grid *m = hg_plan_module_of_rank(p, rank);
    int mi = m == &p->modules[0] ? 0 : 1; // index into j->mint's tables
    hg_coords co;
    hg_rank_coords(p, rank, &co);
    Hgrid__Coordinates *coords = &b->coords;
    hgrid__coordinates__init(coords);
    coords->tp = (uint32_t)co.tp;
    coords->cp = (uint32_t)co.cp;
    coords->dp = (uint32_t)co.dp;
    coords->pp = (uint32_t)co.pp;
    coords->ep = (uint32_t)co.ep;
    coords->expt_tp = (uint32_t)co.expt_tp;
    coords->expt_dp = (uint32_t)co.expt_dp;

    size_t n = 0;
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
        int g, rank_in_group;
        if (!hg_group_applies(m, (hg_group_kind)k) ||
            !hg_group_of_rank(m, (hg_group_kind)k, rank, &g, &rank_in_group))
            continue;
        Hgrid__Group *grp = &b->groups[n];
        hgrid__group__init(grp);
        grp->name = (char *)hg_group_name((hg_group_kind)k);
        grp->size = (uint32_t)hg_group_size(m, (hg_group_kind)k);
        grp->rank_in_group = (uint32_t)rank_in_group;
        grp->index = (uint32_t)g;
        // A kind sharing its canonical kind's communicator carries no id:
        // the worker's layout engine knows which earlier group holds it.
        // A canonical kind's group g has id id_base + g (mint.h).
        int base = j->mint.id_base[mi][k];
        if (j->mint.canonical[mi][k] == (hg_group_kind)k)
            set_id(j, grp, base >= 0 ? base + g : -1);
        b->group_ptrs[n] = grp;
        n++;
    }
    b->peers = b->stack_peers;
    b->peer_ptrs = b->stack_peer_ptrs;
    int num_peers = 0;
    int bridge_index = hg_bridge_index_of_rank(p, rank);
    if (bridge_index >= 0) {
        Hgrid__Group *grp = &b->groups[n];
        hgrid__group__init(grp);
        grp->name = "bridge";
        grp->size = (uint32_t)hg_bridge_size(p);
        grp->rank_in_group = (uint32_t)bridge_index;
        set_id(j, grp, j->mint.bridge_id);
        b->group_ptrs[n] = grp;
        n++;
        num_peers = bridge_peers(p, bridge_index, b->peers, ASSIGNMENT_STACK_PEERS);
        if (num_peers < 0) { // a wide fan-out: more peers than the buffer holds
            int max = p->world_size;
            b->peers = malloc(sizeof *b->peers * (size_t)max);
            b->peer_ptrs = malloc(sizeof *b->peer_ptrs * (size_t)max);
            if (!b->peers || !b->peer_ptrs) {
                assignment_buf_free(b);
                return -1;
            }
            num_peers = bridge_peers(p, bridge_index, b->peers, max);
        }
        for (int i = 0; i < num_peers; i++)
            b->peer_ptrs[i] = &b->peers[i];
    }

    Hgrid__Assignment *a = &b->a;
    hgrid__assignment__init(a);
    a->generation = j->rec.generation;
    a->layout = (Hgrid__Layout *)&j->layout;
    a->rank = (uint32_t)rank;
    a->world_size = (uint32_t)p->world_size;
    a->module = m->id == HG_MODULE_ENCODER ? HGRID__MODULE__MODULE_ENCODER
                                           : HGRID__MODULE__MODULE_LLM;
    a->coordinates = coords;
    a->n_groups = n;
    a->groups = b->group_ptrs;
    a->n_bridge_peers = (size_t)num_peers;
    a->bridge_peers = b->peer_ptrs;
    a->job = (char *)j->rec.name;
    return 0;
}

void assignment_buf_free(assignment_buf *b)
{
    if (b->peers != b->stack_peers)
        free(b->peers);
    if (b->peer_ptrs != b->stack_peer_ptrs)
        free(b->peer_ptrs);
    b->peers = b->stack_peers;
    b->peer_ptrs = b->stack_peer_ptrs;
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
