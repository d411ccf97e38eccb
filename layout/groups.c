// Rank, coordinate and process-group enumeration in HyperCommGrid order.
#include "layout/layout.h"

#include <stdio.h>
#include <string.h>

#define DIM(d) (1u << (d))

// Which view a group kind lives in and which of that view's dims it spans.
typedef struct {
    const char *name;
    bool expert_view;
    unsigned dims;
    bool llm_only;
} group_kind_info;

static const group_kind_info kinds[HG_NUM_GROUP_KINDS] = {
    [HG_GROUP_TP] = {"tp", false, DIM(HG_DIM_TP), false},
    [HG_GROUP_CP] = {"cp", false, DIM(HG_DIM_CP), false},
    [HG_GROUP_DP] = {"dp", false, DIM(HG_DIM_DP), false},
    [HG_GROUP_PP] = {"pp", false, DIM(HG_DIM_PP), false},
    [HG_GROUP_TP_CP] = {"tp_cp", false, DIM(HG_DIM_TP) | DIM(HG_DIM_CP), false},
    [HG_GROUP_DP_CP] = {"dp_cp", false, DIM(HG_DIM_CP) | DIM(HG_DIM_DP), false},
    [HG_GROUP_TP_DP] = {"tp_dp", false, DIM(HG_DIM_TP) | DIM(HG_DIM_DP), false},
    [HG_GROUP_TP_DP_CP] = {"tp_dp_cp", false, DIM(HG_DIM_TP) | DIM(HG_DIM_CP) | DIM(HG_DIM_DP),
                           false},
    [HG_GROUP_MP] = {"mp", false, DIM(HG_DIM_TP) | DIM(HG_DIM_PP), false},
    [HG_GROUP_MODULE] = {"module", false, 0xf, false},
    // embd / pos_embd are subsets of the pp groups (handled below).
    [HG_GROUP_EMBD] = {"embd", false, DIM(HG_DIM_PP), true},
    [HG_GROUP_POS_EMBD] = {"pos_embd", false, DIM(HG_DIM_PP), true},
    [HG_GROUP_EP] = {"ep", true, DIM(HG_XDIM_EP), true},
    [HG_GROUP_EXPT_TP] = {"expt_tp", true, DIM(HG_XDIM_TP), true},
    [HG_GROUP_EXPT_DP] = {"expt_dp", true, DIM(HG_XDIM_DP), true},
    [HG_GROUP_TP_EP] = {"tp_ep", true, DIM(HG_XDIM_TP) | DIM(HG_XDIM_EP), true},
    [HG_GROUP_TP_EP_PP] = {"tp_ep_pp", true, DIM(HG_XDIM_TP) | DIM(HG_XDIM_EP) | DIM(HG_XDIM_PP),
                           true},
};

const char *hg_module_name(hg_module_id id)
{
    return id == HG_MODULE_ENCODER ? "encoder" : "llm";
}

const char *hg_group_name(hg_group_kind kind)
{
    return kinds[kind].name;
}

bool hg_group_applies(const hg_module_grid *m, hg_group_kind kind)
{
    return !kinds[kind].llm_only || m->id == HG_MODULE_LLM;
}

static const int *view_sizes(const hg_module_grid *m, hg_group_kind kind)
{
    return kinds[kind].expert_view ? m->expert : m->dense;
}

static bool is_embedding_kind(hg_group_kind kind)
{
    return kind == HG_GROUP_EMBD || kind == HG_GROUP_POS_EMBD;
}

// Product of the view's sizes over the dims in (or not in) mask.
static int span(const int *sizes, unsigned mask, bool inside)
{
    int n = 1;
    for (int d = 0; d < 4; d++)
        if (((mask >> d) & 1) == inside)
            n *= sizes[d];
    return n;
}

int hg_group_count(const hg_module_grid *m, hg_group_kind kind)
{
    return span(view_sizes(m, kind), kinds[kind].dims, false);
}

int hg_group_size(const hg_module_grid *m, hg_group_kind kind)
{
    int pp = m->dense[HG_DIM_PP];
    if (kind == HG_GROUP_EMBD)
        return pp > 1 ? 2 : 1;
    if (kind == HG_GROUP_POS_EMBD)
        return 1;
    return span(view_sizes(m, kind), kinds[kind].dims, true);
}

// Splits index over the sizes of the dims selected by `inside`, first dim
// fastest, into coord.
static void split_index(int index, const int *sizes, unsigned mask, bool inside, int *coord)
{
    for (int d = 0; d < 4; d++) {
        if (((mask >> d) & 1) != inside)
            continue;
        coord[d] = index % sizes[d];
        index /= sizes[d];
    }
}

// Flattens coordinates of the dims selected by `inside`, first dim fastest.
static int join_index(const int *coord, const int *sizes, unsigned mask, bool inside)
{
    int index = 0, stride = 1;
    for (int d = 0; d < 4; d++) {
        if (((mask >> d) & 1) != inside)
            continue;
        index += coord[d] * stride;
        stride *= sizes[d];
    }
    return index;
}

static int rank_of(const hg_module_grid *m, const int *sizes, const int *coord)
{
    return m->rank_offset + join_index(coord, sizes, 0xf, true);
}

void hg_group_members(const hg_module_grid *m, hg_group_kind kind, int g, int *ranks)
{
    const int *sizes = view_sizes(m, kind);
    unsigned mask = kinds[kind].dims;
    int coord[4] = {0};
    split_index(g, sizes, mask, false, coord);
    if (is_embedding_kind(kind)) {
        int pp = sizes[HG_DIM_PP];
        coord[HG_DIM_PP] = 0;
        ranks[0] = rank_of(m, sizes, coord);
        if (kind == HG_GROUP_EMBD && pp > 1) {
            coord[HG_DIM_PP] = pp - 1;
            ranks[1] = rank_of(m, sizes, coord);
        }
        return;
    }
    int n = span(sizes, mask, true);
    for (int j = 0; j < n; j++) {
        split_index(j, sizes, mask, true, coord);
        ranks[j] = rank_of(m, sizes, coord);
    }
}

// The group of `kind` holding the rank at coord (its coordinates in the
// kind's view) and its rank in it; false if it is in none (embedding).
static bool group_of_coords(hg_group_kind kind, const int *sizes, const int *coord, int *g,
                            int *rank_in_group)
{
    unsigned mask = kinds[kind].dims;
    *g = join_index(coord, sizes, mask, false);
    if (is_embedding_kind(kind)) {
        int pp = sizes[HG_DIM_PP], stage = coord[HG_DIM_PP];
        *rank_in_group = stage == 0 ? 0 : 1;
        if (stage == 0)
            return true;
        return kind == HG_GROUP_EMBD && stage == pp - 1;
    }
    *rank_in_group = join_index(coord, sizes, mask, true);
    return true;
}

bool hg_group_of_rank(const hg_module_grid *m, hg_group_kind kind, int rank, int *g,
                      int *rank_in_group)
{
    const int *sizes = view_sizes(m, kind);
    int coord[4];
    split_index(rank - m->rank_offset, sizes, 0xf, true, coord);
    return group_of_coords(kind, sizes, coord, g, rank_in_group);
}

void hg_module_coords(const hg_module_grid *m, int rank, hg_coords *out)
{
    int dense[4], expert[4];
    split_index(rank - m->rank_offset, m->dense, 0xf, true, dense);
    split_index(rank - m->rank_offset, m->expert, 0xf, true, expert);
    out->module = m->id;
    out->module_index = m->index;
    out->tp = dense[HG_DIM_TP];
    out->cp = dense[HG_DIM_CP];
    out->dp = dense[HG_DIM_DP];
    out->pp = dense[HG_DIM_PP];
    out->expt_tp = expert[HG_XDIM_TP];
    out->ep = expert[HG_XDIM_EP];
    out->expt_dp = expert[HG_XDIM_DP];
}

void hg_rank_coords(const hg_plan *plan, int rank, hg_coords *out)
{
    hg_module_coords(hg_plan_module_of_rank(plan, rank), rank, out);
}

const hg_module_grid *hg_plan_module(const hg_plan *plan, hg_module_id id)
{
    for (int i = 0; i < plan->num_modules; i++)
        if (plan->modules[i].id == id)
            return &plan->modules[i];
    return NULL;
}

static bool holds(const hg_module_grid *m, int rank)
{
    return rank >= m->rank_offset && rank < m->rank_offset + m->num_ranks;
}

const hg_module_grid *hg_plan_module_of_rank(const hg_plan *plan, int rank)
{
    for (int i = 0; i < plan->num_modules; i++)
        if (holds(&plan->modules[i], rank))
            return &plan->modules[i];
    return NULL;
}

int hg_plan_modules_of_rank(const hg_plan *plan, int rank, const hg_module_grid *out[2])
{
    int n = 0;
    for (int i = 0; i < plan->num_modules && n < 2; i++)
        if (holds(&plan->modules[i], rank))
            out[n++] = &plan->modules[i];
    return n;
}

// Member 0 of group g.
static int group_leader(const hg_module_grid *m, hg_group_kind kind, int g)
{
    const int *sizes = view_sizes(m, kind);
    int coord[4] = {0};
    split_index(g, sizes, kinds[kind].dims, false, coord);
    return rank_of(m, sizes, coord);
}

// Two kinds can share communicators when every rank sits at the same
// position of a group with the same leader in both.
static bool same_groups(const hg_module_grid *m, hg_group_kind a, hg_group_kind b)
{
    if (hg_group_count(m, a) != hg_group_count(m, b) || hg_group_size(m, a) != hg_group_size(m, b))
        return false;
    // One-rank groups covering every rank: each rank leads its own group in
    // both kinds (no O(world size) scan for the huge one-rank-group layouts).
    if (hg_group_size(m, a) == 1 && hg_group_count(m, a) == m->num_ranks)
        return true;
    for (int r = m->rank_offset; r < m->rank_offset + m->num_ranks; r++) {
        int ga, ja, gb, jb;
        bool in_a = hg_group_of_rank(m, a, r, &ga, &ja);
        bool in_b = hg_group_of_rank(m, b, r, &gb, &jb);
        if (in_a != in_b)
            return false;
        if (in_a && (ja != jb || group_leader(m, a, ga) != group_leader(m, b, gb)))
            return false;
    }
    return true;
}

hg_group_kind hg_group_canonical(const hg_module_grid *m, hg_group_kind kind)
{
    for (int k = 0; k < (int)kind; k++)
        if (hg_group_applies(m, (hg_group_kind)k) && same_groups(m, (hg_group_kind)k, kind))
            return (hg_group_kind)k;
    return kind;
}

void hg_canonical_kinds_build(const hg_plan *plan, hg_canonical_kinds *out)
{
    for (int i = 0; i < HG_MAX_MODULES; i++)
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
            out->kind[i][k] = i < plan->num_modules &&
                                      hg_group_applies(&plan->modules[i], (hg_group_kind)k)
                                  ? hg_group_canonical(&plan->modules[i], (hg_group_kind)k)
                                  : (hg_group_kind)k;
}

int hg_rank_groups(const hg_plan *plan, const hg_canonical_kinds *canonical,
                   const hg_module_grid *m, int rank, hg_rank_group *out)
{
    int n = 0, dense[4], expert[4]; // rank's coordinates in each view, split once
    split_index(rank - m->rank_offset, m->dense, 0xf, true, dense);
    split_index(rank - m->rank_offset, m->expert, 0xf, true, expert);
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
        int g, j;
        const int *sizes = view_sizes(m, (hg_group_kind)k);
        if (!hg_group_applies(m, (hg_group_kind)k) ||
            !group_of_coords((hg_group_kind)k, sizes, sizes == m->expert ? expert : dense, &g, &j))
            continue;
        int same = canonical ? (int)canonical->kind[m->index][k] : k;
        out[n++] = (hg_rank_group){k, -1, same, g, hg_group_size(m, (hg_group_kind)k), j};
    }
    for (int b = 0; b < hg_plan_num_bridges(plan); b++) {
        if (m->id == HG_MODULE_ENCODER && m->index != b)
            continue;
        int j = hg_bridge_index_of_rank(plan, b, rank);
        if (j >= 0)
            out[n++] = (hg_rank_group){HG_GROUP_BRIDGE, b, HG_GROUP_BRIDGE, 0,
                                       hg_bridge_size(plan, b), j};
    }
    return n;
}

void hg_rank_group_members(const hg_plan *plan, const hg_module_grid *m, const hg_rank_group *g,
                           int *ranks)
{
    if (g->kind != HG_GROUP_BRIDGE) {
        hg_group_members(m, (hg_group_kind)g->kind, g->index, ranks);
        return;
    }
    for (int i = 0; i < g->size; i++)
        ranks[i] = hg_bridge_member(plan, g->bridge, i);
}

const char *hg_rank_group_name(const hg_plan *plan, const hg_rank_group *g, char *buf, size_t len)
{
    if (g->kind != HG_GROUP_BRIDGE)
        return hg_group_name((hg_group_kind)g->kind);
    if (plan->num_encoders == 1)
        return "bridge";
    snprintf(buf, len, "bridge:%s", plan->modules[g->bridge].name);
    return buf;
}
