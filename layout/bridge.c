// The encoder -> LLM bridge: one leader per dp lane and the fan-in/out edges.
#include "layout/layout.h"

bool hg_plan_has_bridge(const hg_plan *plan)
{
    return plan->num_modules == 2;
}

hg_fan hg_bridge_fan(const hg_plan *plan)
{
    int enc = plan->modules[0].dense[HG_DIM_DP], llm = plan->modules[1].dense[HG_DIM_DP];
    return enc == llm ? HG_FAN_EQUAL : enc > llm ? HG_FAN_IN : HG_FAN_OUT;
}

// Encoder leaders sit on the last pp stage, LLM leaders on the first; both
// at tp rank 0 (and cp rank 0) of their dp lane.
int hg_bridge_leader(const hg_plan *plan, hg_module_id module, int dp_lane)
{
    const hg_module_grid *m = hg_plan_module(plan, module);
    int tp = m->dense[HG_DIM_TP], cp = m->dense[HG_DIM_CP], dp = m->dense[HG_DIM_DP];
    int pp_stage = module == HG_MODULE_ENCODER ? m->dense[HG_DIM_PP] - 1 : 0;
    return m->rank_offset + tp * cp * (dp_lane + dp * pp_stage);
}

int hg_bridge_size(const hg_plan *plan)
{
    return plan->modules[0].dense[HG_DIM_DP] + plan->modules[1].dense[HG_DIM_DP];
}

int hg_bridge_member(const hg_plan *plan, int index)
{
    int enc_dp = plan->modules[0].dense[HG_DIM_DP];
    if (index < enc_dp)
        return hg_bridge_leader(plan, HG_MODULE_ENCODER, index);
    return hg_bridge_leader(plan, HG_MODULE_LLM, index - enc_dp);
}

int hg_bridge_index_of_rank(const hg_plan *plan, int rank)
{
    if (!hg_plan_has_bridge(plan))
        return -1;
    hg_coords c;
    hg_rank_coords(plan, rank, &c);
    const hg_module_grid *m = hg_plan_module(plan, c.module);
    int leader_stage = c.module == HG_MODULE_ENCODER ? m->dense[HG_DIM_PP] - 1 : 0;
    if (c.tp != 0 || c.cp != 0 || c.pp != leader_stage)
        return -1;
    return c.module == HG_MODULE_ENCODER ? c.dp : plan->modules[0].dense[HG_DIM_DP] + c.dp;
}

int hg_bridge_num_edges(const hg_plan *plan)
{
    int enc = plan->modules[0].dense[HG_DIM_DP], llm = plan->modules[1].dense[HG_DIM_DP];
    return enc > llm ? enc : llm;
}

// With k = max(dp) / min(dp): fan-in sends encoder lane e to LLM lane e / k;
// fan-out sends encoder lane e / k to LLM lane e.
void hg_bridge_edge(const hg_plan *plan, int e, int *encoder_rank, int *llm_rank)
{
    int enc = plan->modules[0].dense[HG_DIM_DP], llm = plan->modules[1].dense[HG_DIM_DP];
    int enc_lane = e, llm_lane = e;
    if (enc > llm)
        llm_lane = e / (enc / llm);
    else if (llm > enc)
        enc_lane = e / (llm / enc);
    *encoder_rank = hg_bridge_leader(plan, HG_MODULE_ENCODER, enc_lane);
    *llm_rank = hg_bridge_leader(plan, HG_MODULE_LLM, llm_lane);
}
