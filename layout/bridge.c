// The encoder -> LLM bridges: one leader per dp lane and the fan-in/out
// edges, one bridge per encoder.
#include "layout/layout.h"

int hg_plan_num_bridges(const hg_plan *plan)
{
    return plan->colocated ? 0 : plan->num_encoders;
}

bool hg_plan_has_bridge(const hg_plan *plan)
{
    return hg_plan_num_bridges(plan) > 0;
}

static const hg_module_grid *llm_of(const hg_plan *plan)
{
    return &plan->modules[plan->num_modules - 1];
}

static int dp_of(const hg_module_grid *m)
{
    return m->dense[HG_DIM_DP];
}

hg_fan hg_bridge_fan(const hg_plan *plan, int b)
{
    int enc = dp_of(&plan->modules[b]), llm = dp_of(llm_of(plan));
    return enc == llm ? HG_FAN_EQUAL : enc > llm ? HG_FAN_IN : HG_FAN_OUT;
}

// Encoder leaders sit on the last pp stage, LLM leaders on the first; both
// at tp rank 0 (and cp rank 0) of their dp lane.
int hg_module_bridge_leader(const hg_module_grid *m, int dp_lane)
{
    int tp = m->dense[HG_DIM_TP], cp = m->dense[HG_DIM_CP], dp = m->dense[HG_DIM_DP];
    int pp_stage = m->id == HG_MODULE_ENCODER ? m->dense[HG_DIM_PP] - 1 : 0;
    return m->rank_offset + tp * cp * (dp_lane + dp * pp_stage);
}

int hg_bridge_leader(const hg_plan *plan, hg_module_id module, int dp_lane)
{
    return hg_module_bridge_leader(hg_plan_module(plan, module), dp_lane);
}

int hg_bridge_size(const hg_plan *plan, int b)
{
    return dp_of(&plan->modules[b]) + dp_of(llm_of(plan));
}

int hg_bridge_member(const hg_plan *plan, int b, int index)
{
    int enc_dp = dp_of(&plan->modules[b]);
    if (index < enc_dp)
        return hg_module_bridge_leader(&plan->modules[b], index);
    return hg_module_bridge_leader(llm_of(plan), index - enc_dp);
}

// The dp lane rank leads in module m, or -1.
static int leader_lane(const hg_module_grid *m, int rank)
{
    if (rank < m->rank_offset || rank >= m->rank_offset + m->num_ranks)
        return -1;
    hg_coords c;
    hg_module_coords(m, rank, &c);
    int leader_stage = m->id == HG_MODULE_ENCODER ? m->dense[HG_DIM_PP] - 1 : 0;
    return c.tp == 0 && c.cp == 0 && c.pp == leader_stage ? c.dp : -1;
}

int hg_bridge_index_of_rank(const hg_plan *plan, int b, int rank)
{
    if (b < 0 || b >= hg_plan_num_bridges(plan))
        return -1;
    const hg_module_grid *enc = &plan->modules[b];
    int lane = leader_lane(enc, rank);
    if (lane >= 0)
        return lane;
    lane = leader_lane(llm_of(plan), rank);
    return lane >= 0 ? dp_of(enc) + lane : -1;
}

int hg_bridge_num_edges(const hg_plan *plan, int b)
{
    int enc = dp_of(&plan->modules[b]), llm = dp_of(llm_of(plan));
    return enc > llm ? enc : llm;
}

// With k = max(dp) / min(dp): fan-in sends encoder lane e to LLM lane e / k;
// fan-out sends encoder lane e / k to LLM lane e.
void hg_bridge_edge(const hg_plan *plan, int b, int e, int *encoder_rank, int *llm_rank)
{
    int enc = dp_of(&plan->modules[b]), llm = dp_of(llm_of(plan));
    int enc_lane = e, llm_lane = e;
    if (enc > llm)
        llm_lane = e / (enc / llm);
    else if (llm > enc)
        enc_lane = e / (llm / enc);
    *encoder_rank = hg_module_bridge_leader(&plan->modules[b], enc_lane);
    *llm_rank = hg_module_bridge_leader(llm_of(plan), llm_lane);
}

// A leader's lane meets k lanes of the other side when the other side has
// k times more (lanes [lane*k, (lane+1)*k)), else the one lane lane/k.
int hg_bridge_peers(const hg_plan *plan, int b, int rank, hg_bridge_peer *out, int max)
{
    int index = hg_bridge_index_of_rank(plan, b, rank);
    if (index < 0)
        return 0;
    int enc = dp_of(&plan->modules[b]), llm = dp_of(llm_of(plan));
    bool encoder = index < enc;
    int lane = encoder ? index : index - enc;
    int mine = encoder ? enc : llm, theirs = encoder ? llm : enc;
    int first = lane, count = 1;
    if (theirs > mine) {
        count = theirs / mine;
        first = lane * count;
    } else if (theirs < mine) {
        first = lane / (mine / theirs);
    }
    const hg_module_grid *other = encoder ? llm_of(plan) : &plan->modules[b];
    for (int i = 0; i < count && i < max; i++)
        out[i] = (hg_bridge_peer){hg_module_bridge_leader(other, first + i),
                                  encoder ? enc + first + i : first + i, encoder};
    return count;
}
